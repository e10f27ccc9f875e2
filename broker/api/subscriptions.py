"""Subscriptions: /ngsi-ld/v1/subscriptions[/{subscriptionId}] (clauses 5.8.1-5.8.5, HTTP binding 6.10-6.11).

A body is validated and compiled (broker.notify.parse) before anything is stored; the
SubscriptionService stores it compacted with its @context and puts it in this process's
registry once committed; the other processes reload it on the NOTIFY of the same commit.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from broker.api import visibility
from broker.api.keys import CONTEXTS, NOTIFIER, POOL, REGISTRY, SETTINGS, TENANTS
from broker.api.paging import page_links, paging
from broker.api.representation import accepted, json_response, no_content, options
from broker.api.request import link_context, read_body, term_map
from broker.edge import tenant_of
from broker.errors import BadRequestData, Forbidden, ResourceNotFound
from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextRef
from broker.model.entity import format_time
from broker.model.parse import check_uri
from broker.notify.body import align_names, merge, recompact, with_defaults
from broker.notify.endpoints import check_endpoint
from broker.notify.model import Subscription
from broker.notify.parse import compile_subscription
from broker.notify.redact import redact_body, restore_body
from broker.notify.service import Prepared, SubscriptionService
from broker.query.types import TypeExpr, TypeName
from broker.store import subscriptions as rows
from broker.store.subscriptions import StoredSubscription

routes = web.RouteTableDef()
SUBSCRIPTIONS = "/ngsi-ld/v1/subscriptions"
SUBSCRIPTION = SUBSCRIPTIONS + "/{subscription_id}"


def _service(request: web.Request) -> SubscriptionService:
    app = request.app
    return SubscriptionService(app[POOL], app[TENANTS], app[REGISTRY])


def _path_id(request: web.Request) -> str:
    return check_uri(request.match_info["subscription_id"], "subscription id in the path")


async def read_object(request: web.Request) -> tuple[dict[str, Any], ContextRef, TermMap]:
    """The body as a JSON object without its @context, the @context, and its term map."""
    body = await read_body(request, allow_merge_patch=request.method == "PATCH")
    if not isinstance(body.data, dict):
        raise BadRequestData("the body must be a JSON object")
    data = {key: value for key, value in body.data.items() if key != "@context"}
    return data, body.context, await term_map(request, body.context)


async def _compile_for_storage(
    request: web.Request,
    tenant: str,
    subscription_id: str,
    body: dict[str, Any],
    tm: TermMap,
    context: ContextRef,
    now: datetime | None,
) -> Prepared:
    """Validate ``body`` and compile it, with the term map of its jsonldContext if it names one.

    The body is stored with the @context it was written in, so that its names and its q
    keep their meaning; jsonldContext (clause 5.2.12) only decides how notifications are
    compacted and which @context they name. Returns the compiled subscription with the body
    and @context to store.
    """
    compiled = compile_subscription(tenant, subscription_id, body, tm, context, now=now)
    await check_endpoint(request.app[NOTIFIER].guard, compiled.endpoint.uri)  # 400 if refused
    await _refuse_personal(request, compiled)
    wanted = body.get("jsonldContext")
    if isinstance(wanted, str):
        notify_tm = await term_map(request, wanted)  # 503 LdContextNotAvailable when unreachable
        compiled = replace(compiled, notify_tm=notify_tm)
    return Prepared(compiled, body, context)


def _names(expr: TypeExpr) -> set[str]:
    if isinstance(expr, TypeName):
        return {expr.iri}
    return set().union(*(_names(part) for part in expr.parts))


async def _refuse_personal(request: web.Request, compiled: Subscription) -> None:
    """403 when the subscription may select personal-type entities the request may not read: its
    notifications would carry them. A selector without types, or no selector, may select any type."""
    hidden = (await visibility.personal_view(request)).hidden
    if not hidden:
        return
    selectors = compiled.entities
    if not selectors or any(s.types is None or not hidden.isdisjoint(_names(s.types)) for s in selectors):
        raise Forbidden(
            "the subscription may select entities of a personal type, which this credential may not read"
            " (name its entity types, none of them personal)"
        )


async def one_url(request: web.Request, context: ContextRef) -> str:
    """One URL standing for an inline @context (object or array), which notifications can link.

    A one-URL array is that URL; anything else is hosted (clause 5.13.2), like a client's POST.
    """
    if isinstance(context, list) and len(context) == 1 and isinstance(context[0], str):
        return context[0]
    stored = await request.app[CONTEXTS].host(tenant_of(request), {"@context": context})
    return stored.url


@routes.post(SUBSCRIPTIONS)
@routes.post(SUBSCRIPTIONS + "/")
async def create_subscription(request: web.Request) -> web.Response:
    """5.8.1 Create Subscription (HTTP binding 6.10.3.1): 201 with Location, 409 if the id exists."""
    tenant = tenant_of(request)
    data, context, tm = await read_object(request)
    subscription_id = (
        check_uri(data["id"], "id") if "id" in data else f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
    )
    body = with_defaults({"id": subscription_id, **data})
    now = datetime.now(UTC)
    prepared = await _compile_for_storage(request, tenant, subscription_id, body, tm, context, now)

    async def host(inline: ContextRef) -> str:
        return await one_url(request, inline)

    await _service(request).create(prepared, host)
    location = f"{SUBSCRIPTIONS}/{quote(subscription_id, safe=':')}"
    return no_content(request, 201, {"Location": location})


@routes.get(SUBSCRIPTIONS)
@routes.get(SUBSCRIPTIONS + "/")
async def query_subscriptions(request: web.Request) -> web.Response:
    """5.8.4 Query Subscriptions (HTTP binding 6.10.3.2): limit/offset paging, count."""
    media_type = accepted(request)
    context = link_context(request)
    tm = await term_map(request, context)
    sys_attrs = "sysAttrs" in options(request)
    page = paging(request, request.app[SETTINGS].max_page)
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    found, more, total = await rows.page(pool, tenant, limit=page.limit, offset=page.offset, count=page.count)
    rendered = [
        await render_subscription(request, stored, context, tm, sys_attrs=sys_attrs) for stored in found
    ]
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
    links = page_links(request, page, more, media_type=media_type)
    return json_response(
        request, rendered, context=context, media_type=media_type, headers=headers, links=links
    )


@routes.get(SUBSCRIPTION)
async def retrieve_subscription(request: web.Request) -> web.Response:
    """5.8.3 Retrieve Subscription (HTTP binding 6.11.3.1), with its status and delivery state."""
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


@routes.patch(SUBSCRIPTION)
async def update_subscription(request: web.Request) -> web.Response:
    """5.8.2 Update Subscription (HTTP binding 6.11.3.2): members given replace the stored ones.

    ``notification`` is merged one level down; NGSI-LD Null (or JSON null) removes a member.
    The merged subscription must compile, else 400 and nothing changes.
    """
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
        merged = with_defaults(merge(stored.body, align_names(moved, stored.body)))
        merged = restore_body(merged, stored.body)
        return await _compile_for_storage(
            request, tenant, subscription_id, merged, stored_tm, stored.context, now
        )

    await _service(request).update(tenant, subscription_id, revise)
    return no_content(request)


@routes.delete(SUBSCRIPTION)
async def delete_subscription(request: web.Request) -> web.Response:
    """5.8.5 Delete Subscription (HTTP binding 6.11.3.3): 204, 404 if there is none."""
    subscription_id = _path_id(request)
    tenant = tenant_of(request)
    await _service(request).delete(tenant, subscription_id)
    return no_content(request)


async def render_subscription(
    request: web.Request, stored: StoredSubscription, context: ContextRef, tm: TermMap, *, sys_attrs: bool
) -> dict[str, Any]:
    """The stored body compacted for the request's @context, with the members the broker keeps."""
    body = stored.body
    if stored.context != context:
        body = recompact(body, await term_map(request, stored.context), tm, strict_q=False)
    body = redact_body(body)
    body["status"] = _status(stored)
    if isinstance(body.get("notification"), dict):
        body["notification"] = {**body["notification"], **_delivery(stored)}
    if sys_attrs:
        body["createdAt"] = format_time(stored.created_at)
        body["modifiedAt"] = format_time(stored.modified_at)
    return body


def _status(stored: StoredSubscription) -> str:
    """5.2.12 status: paused when inactive, expired once expiresAt has passed, else active."""
    if not stored.is_active:
        return "paused"
    if stored.expires_at is not None and stored.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"


def _delivery(stored: StoredSubscription) -> dict[str, Any]:
    """The NotificationParams members of 5.2.14 the notifiers record; timestamps only once set."""
    out: dict[str, Any] = {"timesSent": stored.times_sent, "timesFailed": stored.times_failed}
    for member, moment in (
        ("lastNotification", stored.last_notification),
        ("lastSuccess", stored.last_success),
        ("lastFailure", stored.last_failure),
    ):
        if moment is not None:
            out[member] = format_time(moment)
    if stored.last_notification is not None:
        failed = stored.last_failure is not None and (
            stored.last_success is None or stored.last_failure >= stored.last_success
        )
        out["status"] = "failed" if failed else "ok"
    if stored.consecutive_errors:
        out["consecutiveErrors"] = stored.consecutive_errors
    if stored.last_error_reason is not None:
        out["lastErrorReason"] = stored.last_error_reason
    return out
