"""Roles, permissions and the identity a request carries (issue 12, items 1 and 2)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Role(StrEnum):
    """What a key or token is for. An operator's key has no tenant: it covers the whole instance."""

    OPERATOR = "operator"
    ADMIN = "admin"
    WRITER = "writer"
    READER = "reader"
    DEVICE = "device"
    # An add-on (e.g. roles [reader, personal]): may read the tenant's personal entity types.
    PERSONAL = "personal"


class Permission(StrEnum):
    """What a route needs (routes.PERMISSIONS says which)."""

    # Anyone, with or without credentials: liveness, readiness, hosted @context documents.
    PUBLIC = "public"
    # Authenticated by the IoT Agent apikey the request itself carries (the device pipeline checks it).
    APIKEY = "apikey"
    # Southbound webhooks of network servers (TTS, ChirpStack, Sigfox): a device key of the tenant.
    DEVICE = "device"
    READ = "read"
    WRITE = "write"
    # One tenant's settings: its keys, provisioning, retention, dead letters.
    ADMIN = "admin"
    # The whole instance: keys of any tenant.
    OPERATE = "operate"
    # Reading the entity types the tenant marks as personal (each read is audited).
    PERSONAL = "personal"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset(Permission),
    Role.ADMIN: frozenset({Permission.ADMIN, Permission.WRITE, Permission.READ, Permission.DEVICE}),
    Role.WRITER: frozenset({Permission.WRITE, Permission.READ}),
    Role.READER: frozenset({Permission.READ}),
    Role.DEVICE: frozenset({Permission.DEVICE}),
    Role.PERSONAL: frozenset({Permission.PERSONAL}),
}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request: ``kind`` "key", "token" or "anonymous", ``subject`` the key id or the
    token's ``sub`` (or "anonymous"), ``tenant`` the one tenant it acts in (None: every tenant, an
    operator's). A token may name several tenants: ``tenants`` holds them all (``tenant`` is then
    the first, never None) and the middleware narrows the identity to the one a request names
    (``within``), so a handler always sees one tenant."""

    kind: str
    subject: str
    tenant: str | None
    roles: frozenset[Role]
    tenants: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.tenants is not None and self.tenant not in self.tenants:
            raise ValueError("an identity of several tenants has one of them as its tenant")

    def may(self, permission: Permission) -> bool:
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles)

    def acts_in(self, tenant: str) -> bool:
        if self.tenants is not None:
            return tenant in self.tenants
        return self.tenant is None or self.tenant == tenant

    def within(self, tenant: str) -> Identity:
        """This identity bound to ``tenant`` alone (one it acts in)."""
        if not self.acts_in(tenant):
            raise ValueError(f"{self.kind} {self.subject} does not act in tenant {tenant!r}")
        if self.tenants is None:
            return self
        return replace(self, tenant=tenant, tenants=None)


ANONYMOUS = Identity("anonymous", "anonymous", None, frozenset())
# With NGSI_AUTH off every request acts as this: the whole instance, every permission.
UNCHECKED = Identity("unchecked", "auth-off", None, frozenset({Role.OPERATOR}))


class NoOperatorKey(RuntimeError):
    """Authentication is on and nobody could administer the instance: the broker does not start."""
