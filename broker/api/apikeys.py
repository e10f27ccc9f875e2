"""Administration of API keys over HTTP (issue 12): a tenant's admins manage its keys, operators any.

    POST   /admin/keys            {"roles": ["writer"], "label": "...", "expires": "P90D", "tenant": "..."}
                                  201 with the key itself, shown this once
    GET    /admin/keys            the keys of the request's tenant (an operator: ?tenant=, or every key)
    GET    /admin/keys/{keyId}    one key (never its secret or hash)
    DELETE /admin/keys/{keyId}    revoke it; 204

An admin's key makes keys of its own tenant only, and never an operator key; an operator key
(tenant-less, the whole instance) is made by an operator or the ``keys create`` command. Not
part of NGSI-LD, which leaves security to the implementation (clause 4.6 of ETSI GS CIM 009).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from broker.api.keys import KEYS
from broker.api.request import read_json
from broker.auth.middleware import identity_of
from broker.auth.model import Permission, Role
from broker.edge import json_reply, tenant_of
from broker.errors import BadRequestData, Forbidden, ResourceNotFound
from broker.model.entity import format_time
from broker.query.duration import parse_duration
from broker.store.apikeys import StoredKey
from broker.store.tenants import check_tenant_name

routes = web.RouteTableDef()
ADMIN = "/admin/keys"


def key_json(key: StoredKey) -> dict[str, Any]:
    """A key as listed: everything but its hash."""
    return {
        "id": key.id,
        "tenant": key.tenant,
        "label": key.label,
        "roles": list(key.roles),
        "createdAt": format_time(key.created_at),
        "lastUsedAt": format_time(key.last_used_at) if key.last_used_at else None,
        "expiresAt": format_time(key.expires_at) if key.expires_at else None,
        "revokedAt": format_time(key.revoked_at) if key.revoked_at else None,
    }


def parse_roles(raw: Any) -> list[Role]:
    if not isinstance(raw, list) or not raw or not all(isinstance(r, str) for r in raw):
        raise BadRequestData(f"roles must be a non-empty list of {', '.join(Role)}")
    unknown = sorted(set(raw) - set(Role))
    if unknown:
        raise BadRequestData(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(Role)}")
    roles = [Role(r) for r in raw]
    if Role.OPERATOR in roles and len(set(roles)) > 1:
        raise BadRequestData("an operator key holds the operator role alone (it covers every other)")
    return roles


def parse_expiry(raw: Any) -> timedelta | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise BadRequestData("expires must be an ISO 8601 duration such as P90D")
    try:
        lifetime = parse_duration(raw)
    except ValueError as exc:
        raise BadRequestData(f"expires: {exc}") from None
    if lifetime <= timedelta(0):
        raise BadRequestData("expires must be a positive duration")
    return lifetime


@routes.post(ADMIN)
async def create_key(request: web.Request) -> web.Response:
    """Make a key; the answer holds it under "key", the only time it is ever shown."""
    identity = identity_of(request)
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequestData("the body must be a JSON object")
    roles = parse_roles(data.get("roles"))
    label = data.get("label", "")
    if not isinstance(label, str) or len(label) > 200:
        raise BadRequestData("label must be a string of at most 200 characters")
    lifetime = parse_expiry(data.get("expires"))
    tenant: str | None
    if Role.OPERATOR in roles:
        if identity.tenant is not None or not identity.may(Permission.OPERATE):
            raise Forbidden("only an operator makes operator keys")
        if data.get("tenant") is not None:
            raise BadRequestData("an operator key covers the whole instance: it names no tenant")
        tenant = None
    else:
        named = data.get("tenant")
        if named is not None and not isinstance(named, str):
            raise BadRequestData("tenant must be a string")
        tenant = check_tenant_name(named) if named is not None else tenant_of(request)
        if not identity.acts_in(tenant):
            raise Forbidden("a tenant's admin makes keys of its own tenant only")
    keys = request.app[KEYS]
    expires_at = keys.clock.now() + lifetime if lifetime is not None else None
    stored, token = await keys.create(tenant, roles, label, expires_at)
    body = {**key_json(stored), "key": token}
    return json_reply(body, status=201, headers={"Location": f"{ADMIN}/{stored.id}"})


@routes.get(ADMIN)
async def list_keys(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if identity.tenant is None and "tenant" not in request.query and not _names_tenant(request):
        found = await request.app[KEYS].listing(None)
    else:
        tenant = (
            check_tenant_name(request.query["tenant"]) if "tenant" in request.query else tenant_of(request)
        )
        if not identity.acts_in(tenant):
            raise Forbidden("a tenant's admin lists keys of its own tenant only")
        found = await request.app[KEYS].listing(tenant)
    return json_reply([key_json(k) for k in found])


@routes.get(ADMIN + "/{key_id}")
async def get_key(request: web.Request) -> web.Response:
    return json_reply(key_json(await _existing(request)))


@routes.delete(ADMIN + "/{key_id}")
async def revoke_key(request: web.Request) -> web.Response:
    key = await _existing(request)
    await request.app[KEYS].revoke(key.id, None)
    return web.Response(status=204)


def _names_tenant(request: web.Request) -> bool:
    return "NGSILD-Tenant" in request.headers or "Fiware-Service" in request.headers


async def _existing(request: web.Request) -> StoredKey:
    """The key in the path, if the caller may see it (another tenant's key is not found, not 403)."""
    key_id = request.match_info["key_id"]
    key = await request.app[KEYS].get(key_id)
    identity = identity_of(request)
    if key is None or (identity.tenant is not None and key.tenant != identity.tenant):
        raise ResourceNotFound(f"no API key {key_id}")
    return key
