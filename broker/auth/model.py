"""Roles, permissions and the identity a request carries (issue 12, items 1 and 2)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a key or token is for. An operator's key has no tenant: it covers the whole instance."""

    OPERATOR = "operator"
    ADMIN = "admin"
    WRITER = "writer"
    READER = "reader"
    DEVICE = "device"


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


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset(Permission),
    Role.ADMIN: frozenset({Permission.ADMIN, Permission.WRITE, Permission.READ, Permission.DEVICE}),
    Role.WRITER: frozenset({Permission.WRITE, Permission.READ}),
    Role.READER: frozenset({Permission.READ}),
    Role.DEVICE: frozenset({Permission.DEVICE}),
}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request: ``kind`` "key" or "anonymous", ``subject`` the key id (or "anonymous"),
    ``tenant`` the one tenant it acts in (None: every tenant, an operator's)."""

    kind: str
    subject: str
    tenant: str | None
    roles: frozenset[Role]

    def may(self, permission: Permission) -> bool:
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles)

    def acts_in(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


ANONYMOUS = Identity("anonymous", "anonymous", None, frozenset())
# With NGSI_AUTH off every request acts as this: the whole instance, every permission.
UNCHECKED = Identity("unchecked", "auth-off", None, frozenset({Role.OPERATOR}))


class NoOperatorKey(RuntimeError):
    """Authentication is on and nobody could administer the instance: the broker does not start."""
