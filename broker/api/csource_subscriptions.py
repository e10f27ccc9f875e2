"""Registration subscriptions: /ngsi-ld/v1/csourceSubscriptions[/{subscriptionId}]
(clauses 5.11.2-5.11.6, HTTP binding 6.12-6.13).

Bodies are Subscriptions (5.2.12) checked, stored and rendered as /subscriptions' are; their
CSourceNotifications (5.3.2) are queued with each registration change that concerns them
and delivered from the csource outbox (broker.federation.notifier).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web

from broker.api.keys import CSOURCE_SUBSCRIPTIONS, NOTIFIER, POOL, SETTINGS, TENANTS
from broker.api.paging import page_links, paging
from broker.api.representation import accepted, json_response, no_content, options
from broker.api.request import link_context, term_map
from broker.api.subscriptions import one_url, read_object, render_subscription
from broker.edge import tenant_of
from broker.errors import BadRequestData, NotImplementedYet, ResourceNotFound
from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextRef
from broker.model.parse import check_uri
from broker.notify.body import merge, recompact, with_defaults
from broker.notify.endpoints import check_endpoint
from broker.notify.parse import compile_subscription
from broker.notify.service import Prepared
from broker.store import csource_subscriptions as rows
from broker.store.subscriptions import StoredSubscription

routes = web.RouteTableDef()
CSOURCE_SUBSCRIPTIONS_PATH = "/ngsi-ld/v1/csourceSubscriptions"
CSOURCE_SUBSCRIPTION_PATH = CSOURCE_SUBSCRIPTIONS_PATH + "/{subscription_id}"
# Members of an entity subscription that mean nothing for registrations, or are not built for them.
_NOT_FOR_REGISTRATIONS = ("timeInterval", "throttling", "scopeQ", "datasetId", "lang")


def _path_id(request: web.Request) -> str:
    return check_uri(request.match_info["subscription_id"], "subscription id in the path")


async def _compile(
    request: web.Request, tenant: str, subscription_id: str, body: dict[str, object], tm: TermMap,
    context: ContextRef, now: datetime | None,
) -> Prepared:  # fmt: skip
    not_built = [member for member in _NOT_FOR_REGISTRATIONS if member in body]
    if not_built:
        raise NotImplementedYet(f"registration subscriptions: {', '.join(not_built)} not implemented yet")
    compiled = compile_subscription(tenant, subscription_id, dict(body), tm, context, now=now)
    await check_endpoint(request.app[NOTIFIER].guard, compiled.endpoint.uri)  # 400 if refused
    wanted = body.get("jsonldContext")
    if isinstance(wanted, str):
        await term_map(request, wanted)  # 503 LdContextNotAvailable now rather than no notifications later
    return Prepared(compiled, dict(body), context)


@routes.post(CSOURCE_SUBSCRIPTIONS_PATH)
@routes.post(CSOURCE_SUBSCRIPTIONS_PATH + "/")
async def create_csource_subscription(request: web.Request) -> web.Response:
    """5.11.2 Create Context Source Registration Subscription (HTTP binding 6.12.3.1): 201 with
    Location, 409 if the id exists; the registrations matching now are notified (newlyMatching)."""
    tenant = tenant_of(request)
    data, context, tm = await read_object(request)
    subscription_id = (
        check_uri(data["id"], "id") if "id" in data else f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
    )
    body = with_defaults({"id": subscription_id, **data})
    prepared = await _compile(request, tenant, subscription_id, body, tm, context, datetime.now(UTC))

    async def host(inline: ContextRef) -> str:
        return await one_url(request, inline)

    await request.app[CSOURCE_SUBSCRIPTIONS].create(prepared, host)
    location = f"{CSOURCE_SUBSCRIPTIONS_PATH}/{quote(subscription_id, safe=':')}"
    return no_content(request, 201, {"Location": location})


@routes.get(CSOURCE_SUBSCRIPTIONS_PATH)
@routes.get(CSOURCE_SUBSCRIPTIONS_PATH + "/")
async def query_csource_subscriptions(request: web.Request) -> web.Response:
    """5.11.5 Query Context Source Registration Subscriptions (HTTP binding 6.12.3.2): paging, count."""
    media_type = accepted(request)
    context = link_context(request)
    tm = await term_map(request, context)
    sys_attrs = "sysAttrs" in options(request)
    page = paging(request, request.app[SETTINGS].max_page)
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    found = await rows.all_of(pool, tenant)
    window = found[page.offset : page.offset + page.limit]
    body = [await render_subscription(request, s, context, tm, sys_attrs=sys_attrs) for s in window]
    headers = {"NGSILD-Results-Count": str(len(found))} if page.count else {}
    links = page_links(request, page, page.offset + page.limit < len(found), media_type=media_type)
    return json_response(request, body, context=context, media_type=media_type, headers=headers, links=links)


@routes.get(CSOURCE_SUBSCRIPTION_PATH)
async def retrieve_csource_subscription(request: web.Request) -> web.Response:
    """5.11.4 Retrieve Context Source Registration Subscription (HTTP binding 6.13.3.1)."""
    subscription_id = _path_id(request)
    media_type = accepted(request)
    context = link_context(request)
    tm = await term_map(request, context)
    sys_attrs = "sysAttrs" in options(request)
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    stored = await rows.fetch(pool, tenant, subscription_id)
    if stored is None:
        raise ResourceNotFound(f"subscription {subscription_id} does not exist")
    body = await render_subscription(request, stored, context, tm, sys_attrs=sys_attrs)
    return json_response(request, body, context=context, media_type=media_type)


@routes.patch(CSOURCE_SUBSCRIPTION_PATH)
async def update_csource_subscription(request: web.Request) -> web.Response:
    """5.11.3 Update Context Source Registration Subscription (HTTP binding 6.13.3.2): members given
    replace the stored ones, ``notification`` merged one level down; invalid: 400, nothing changes."""
    subscription_id = _path_id(request)
    tenant = tenant_of(request)
    fragment, _, tm = await read_object(request)
    if not fragment:
        raise BadRequestData("the Subscription fragment is empty: nothing to update")
    if "id" in fragment and fragment["id"] != subscription_id:
        raise BadRequestData(f"the fragment's id {fragment['id']} differs from the path's {subscription_id}")
    now = datetime.now(UTC) if "expiresAt" in fragment else None

    async def revise(stored: StoredSubscription) -> Prepared:
        stored_tm = await term_map(request, stored.context)
        moved = recompact(fragment, tm, stored_tm, strict_q=True)
        merged = with_defaults(merge(stored.body, moved))
        return await _compile(request, tenant, subscription_id, merged, stored_tm, stored.context, now)

    await request.app[CSOURCE_SUBSCRIPTIONS].update(tenant, subscription_id, revise)
    return no_content(request)


@routes.delete(CSOURCE_SUBSCRIPTION_PATH)
async def delete_csource_subscription(request: web.Request) -> web.Response:
    """5.11.6 Delete Context Source Registration Subscription (HTTP binding 6.13.3.3): 204, or 404."""
    await request.app[CSOURCE_SUBSCRIPTIONS].delete(tenant_of(request), _path_id(request))
    return no_content(request)
