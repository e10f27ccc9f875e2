"""The IoT Agent provisioning API (iotagent-node-lib): /iot/services (or /iot/groups) and /iot/devices.

Existing provisioning scripts work unchanged: fiware-service names the tenant (NGSILD-Tenant is
accepted too), fiware-servicepath the path ("/" by default; "/*" lists every path); 201 on
create, 200 on list and read, 204 on update and delete, 409 DUPLICATE_GROUP or
DUPLICATE_DEVICE_ID, 404, 400 for a wrong field (nothing of that request is stored). Errors are
NGSI-LD ProblemDetails carrying the IoT Agent error ``name``. Differences from the IoT Agents:
attribute types come back in NGSI-LD terms where NGSI-LD was given, entity names are URIs (see
adapters.provisioning.model), JEXL expressions are refused rather than evaluated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from adapters import deadletters
from adapters.deadletters import DeadLetters
from adapters.keys import DEAD_LETTERS, DEVICES, HOST, POOL, SETTINGS
from adapters.provisioning import Registry
from adapters.provisioning.fields import WRONG_SYNTAX
from adapters.provisioning.model import (
    Device,
    ServiceGroup,
    check_service_path,
    device_json,
    group_json,
    parse_device,
    parse_group,
)
from adapters.provisioning.store import ALL_PATHS
from broker import edge
from broker.errors import BadRequestData, ResourceNotFound

routes = web.RouteTableDef()
SERVICES = ("/iot/services", "/iot/groups")
DEVICES_PATH = "/iot/devices"
DEVICE_PATH = DEVICES_PATH + "/{device_id}"


async def provisioning_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the provisioning registry and the dead letters (after the broker's database)."""
    supervisor = app[HOST].supervisor
    registry = Registry(app[POOL], clock=supervisor.clock)
    await registry.start(supervisor)
    app[DEVICES] = registry
    app[DEAD_LETTERS] = DeadLetters(app[POOL], max_raw_bytes=app[SETTINGS].device_max_bytes)
    yield
    await registry.stop()


def add_routes(app: web.Application) -> None:
    """The provisioning and dead-letter routes."""
    app.router.add_routes(routes)
    app.router.add_routes(deadletters.routes)


def _scope(request: web.Request, *, listing: bool = False) -> tuple[str, str]:
    """(tenant, service path) named by the headers."""
    path = request.headers.get("Fiware-ServicePath")
    if listing and path is not None and path.strip() == ALL_PATHS:
        return edge.tenant_of(request), ALL_PATHS
    return edge.tenant_of(request), check_service_path(path)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    return edge.decode_json(raw, request.app[SETTINGS].max_json_depth, name=WRONG_SYNTAX)


async def _entries(request: web.Request, key: str) -> list[Any]:
    body = await _body(request)
    if not isinstance(body, dict) or not isinstance(body.get(key), list) or not body[key]:
        raise BadRequestData(
            f'the body must be {{"{key}": [...]}} with at least one entry', name=WRONG_SYNTAX
        )
    return list(body[key])


async def _fragment(request: web.Request) -> dict[str, Any]:
    body = await _body(request)
    if not isinstance(body, dict):
        raise BadRequestData("the body must be a JSON object", name=WRONG_SYNTAX)
    return body


def _page(request: web.Request) -> tuple[int, int]:
    page = edge.paging(request, request.app[SETTINGS].max_page)
    return page.limit, page.offset


def _group_key(request: web.Request) -> tuple[str, str]:
    apikey = request.query.get("apikey")
    if not apikey:
        raise BadRequestData(
            "the apikey (and resource) query parameters name the group", name="MISSING_PARAMETERS"
        )
    return request.query.get("resource", ""), apikey


def _collection(request: web.Request) -> str:
    return "groups" if request.path.startswith("/iot/groups") else "services"


# --- service groups -----------------------------------------------------------------------------


async def create_groups(request: web.Request) -> web.Response:
    """POST /iot/services {"services": [...]}: 201, all or none (409 DUPLICATE_GROUP)."""
    tenant, path = _scope(request)
    groups = [parse_group(data, tenant, path) for data in await _entries(request, _collection(request))]
    keys = [(g.resource, g.apikey) for g in groups]
    if len(set(keys)) != len(keys):
        raise BadRequestData("the same resource and apikey appear twice in the request", name=WRONG_SYNTAX)
    registry = request.app[DEVICES]
    await registry.store.add_groups(groups)
    await registry.reload(tenant)
    return web.Response(status=201)


async def list_groups(request: web.Request) -> web.Response:
    """GET /iot/services: {"count": n, "services": [...]} of the tenant and path (limit, offset)."""
    tenant, path = _scope(request, listing=True)
    limit, offset = _page(request)
    apikey = request.query.get("apikey")
    store = request.app[DEVICES].store
    if apikey:  # the IoT Agents' look-up of one group by its apikey (and resource)
        groups = [
            g
            for g in await store.groups_by_apikey(tenant, path, apikey)
            if g.resource == request.query.get("resource", g.resource)
        ]
        total = len(groups)
    else:
        groups, total = await store.groups(tenant, path, limit, offset)
    shown = [_redacted(group_json(g), apikey) for g in groups]
    return edge.json_reply({"count": total, _collection(request): shown})


def redact_key(apikey: str) -> str:
    """An apikey as listed: its first 4 characters when it is long enough to keep a secret, then ***."""
    return f"{apikey[:4]}***" if len(apikey) >= 12 else "***"


def _redacted(data: dict[str, Any], known: str | None) -> dict[str, Any]:
    """A group or device as listed: its apikey cut to a prefix unless the request named it.

    Anyone who may read a tenant's provisioning need not learn the keys its gateways send with;
    an IoT Agent client that knows a key still finds its group (?apikey=) and sees it whole.
    """
    apikey = data.get("apikey")
    if isinstance(apikey, str) and apikey and apikey != known:
        data = {**data, "apikey": redact_key(apikey)}
    return data


async def _existing_group(request: web.Request) -> ServiceGroup:
    tenant, path = _scope(request)
    resource, apikey = _group_key(request)
    group = await request.app[DEVICES].store.group(tenant, path, resource, apikey)
    if group is None:
        raise ResourceNotFound(
            f"no service group with resource {resource!r} and apikey {apikey!r} in this service and path",
            name="DEVICE_GROUP_NOT_FOUND",
        )
    return group


async def update_group(request: web.Request) -> web.Response:
    """PUT /iot/services?resource=&apikey=: the fields given replace the stored ones; 204."""
    group = await _existing_group(request)
    merged = {**group_json(group), **await _fragment(request)}
    new = parse_group(merged, group.tenant, group.service_path)
    registry = request.app[DEVICES]
    await registry.store.replace_group(group, new)
    await registry.reload(group.tenant)
    return web.Response(status=204)


async def delete_group(request: web.Request) -> web.Response:
    """DELETE /iot/services?resource=&apikey=[&device=true]: 204; its devices go too with device=true."""
    group = await _existing_group(request)
    registry = request.app[DEVICES]
    await registry.store.delete_group(group, with_devices=edge.flag(request, "device"))
    await registry.reload(group.tenant)
    return web.Response(status=204)


for _path in SERVICES:
    routes.post(_path)(create_groups)
    routes.get(_path)(list_groups)
    routes.put(_path)(update_group)
    routes.delete(_path)(delete_group)


# --- devices ------------------------------------------------------------------------------------


@routes.post(DEVICES_PATH)
async def create_devices(request: web.Request) -> web.Response:
    """POST /iot/devices {"devices": [...]}: 201, all or none (409 DUPLICATE_DEVICE_ID)."""
    tenant, path = _scope(request)
    registry = request.app[DEVICES]
    groups = registry.groups(tenant)
    devices = [parse_device(data, tenant, path, groups) for data in await _entries(request, "devices")]
    await registry.store.add_devices(devices)
    await registry.reload(tenant)
    return web.Response(status=201)


@routes.get(DEVICES_PATH)
async def list_devices(request: web.Request) -> web.Response:
    """GET /iot/devices: {"count": n, "devices": [...]} of the tenant and path (limit, offset)."""
    tenant, path = _scope(request, listing=True)
    limit, offset = _page(request)
    devices, total = await request.app[DEVICES].store.devices(tenant, path, limit, offset)
    shown = [_redacted(device_json(d), request.query.get("apikey")) for d in devices]
    return edge.json_reply({"count": total, "devices": shown})


async def _existing_device(request: web.Request) -> Device:
    tenant, path = _scope(request)
    device_id = request.match_info["device_id"]
    apikey = request.query.get("apikey") or None
    store = request.app[DEVICES].store
    found = await store.device(tenant, path, device_id, apikey)
    if not found and device_id != device_id.upper():
        # Sigfox ids are stored upper-case; the Sigfox backend and operators may write them lower.
        found = [
            d
            for d in await store.device(tenant, path, device_id.upper(), apikey)
            if d.profile.protocol == "sigfox"
        ]
    if not found:
        raise ResourceNotFound(
            f"device {device_id!r} does not exist in this service and path", name="DEVICE_NOT_FOUND"
        )
    if len(found) > 1:
        raise BadRequestData(
            f"several devices {device_id!r} differ by apikey: name one with ?apikey=",
            name="MISSING_PARAMETERS",
        )
    return found[0]


@routes.get(DEVICE_PATH)
async def get_device(request: web.Request) -> web.Response:
    """GET /iot/devices/{id}: the device (its apikey cut unless named); 404 DEVICE_NOT_FOUND."""
    device = await _existing_device(request)
    return edge.json_reply(_redacted(device_json(device), request.query.get("apikey")))


@routes.put(DEVICE_PATH)
async def update_device(request: web.Request) -> web.Response:
    """PUT /iot/devices/{id}: the fields given replace the stored ones; 204."""
    device = await _existing_device(request)
    fragment = await _fragment(request)
    if fragment.get("device_id", device.device_id) != device.device_id:
        raise BadRequestData("device_id cannot be changed", name=WRONG_SYNTAX)
    registry = request.app[DEVICES]
    merged = {**device_json(device), **fragment}
    new = parse_device(merged, device.tenant, device.service_path, registry.groups(device.tenant))
    await registry.store.replace_device(device, new)
    await registry.reload(device.tenant)
    return web.Response(status=204)


@routes.delete(DEVICE_PATH)
async def delete_device(request: web.Request) -> web.Response:
    """DELETE /iot/devices/{id}: 204; the entity stays (as with the IoT Agents)."""
    device = await _existing_device(request)
    registry = request.app[DEVICES]
    await registry.store.delete_device(device)
    await registry.reload(device.tenant)
    return web.Response(status=204)
