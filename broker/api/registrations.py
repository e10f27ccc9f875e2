"""Context source registrations: /ngsi-ld/v1/csourceRegistrations[/{registrationId}]
(clauses 5.9.2-5.9.4 and 5.10.1-5.10.2, HTTP binding 6.8-6.9).

A body is checked and its names expanded with the request's @context before anything is
stored (broker.federation.parse); readers get it compacted with theirs. Registrations are
recorded and matched only: no request is forwarded to a registered source yet.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web

from broker.api.keys import POOL, REGISTRATIONS, SETTINGS, TENANTS
from broker.api.paging import page_links, paging
from broker.api.representation import accepted, json_response, no_content, options
from broker.api.request import csv_param, link_context, term_map
from broker.api.subscriptions import read_object
from broker.edge import tenant_of
from broker.errors import BadRequestData, ResourceNotFound
from broker.federation.match import RegistrationQuery, check_simple_q
from broker.federation.model import Registration
from broker.federation.parse import compile_registration, expand_body
from broker.federation.service import rendered
from broker.jsonld.context import TermMap
from broker.model.parse import check_name, check_uri
from broker.notify.body import merge
from broker.query.geo import parse_geo_query
from broker.query.qlang import parse_q
from broker.query.qregex import translate_regex
from broker.query.types import parse_type_expr
from broker.store.registrations import StoredRegistration

routes = web.RouteTableDef()
REGISTRATIONS_PATH = "/ngsi-ld/v1/csourceRegistrations"
REGISTRATION_PATH = REGISTRATIONS_PATH + "/{registration_id}"


def _path_id(request: web.Request) -> str:
    return check_uri(request.match_info["registration_id"], "registration id in the path")


@routes.post(REGISTRATIONS_PATH)
@routes.post(REGISTRATIONS_PATH + "/")
async def create_registration(request: web.Request) -> web.Response:
    """5.9.2 Register Context Source (HTTP binding 6.8.3.1): 201 with Location; 409 if the id is
    taken or an exclusive registration would overlap another (4.3.6.3)."""
    tenant = tenant_of(request)
    data, _, tm = await read_object(request)
    registration_id = (
        check_uri(data["id"], "id")
        if "id" in data
        else f"urn:ngsi-ld:ContextSourceRegistration:{uuid.uuid4()}"
    )
    # Clause 5.2.9's defaults, shown on retrieval.
    stored = expand_body(
        {"mode": "inclusive", "operations": ["federationOps"], **data, "id": registration_id}, tm
    )
    registration = compile_registration(tenant, registration_id, stored, now=datetime.now(UTC))
    await request.app[REGISTRATIONS].create(registration)
    location = f"{REGISTRATIONS_PATH}/{quote(registration_id, safe=':')}"
    return no_content(request, 201, {"Location": location})


@routes.get(REGISTRATIONS_PATH)
@routes.get(REGISTRATIONS_PATH + "/")
async def query_registrations(request: web.Request) -> web.Response:
    """5.10.2 Query Context Source Registrations (HTTP binding 6.8.3.2): id, idPattern, type,
    attrs, q and csf (where simple), geo-query on location; limit/offset paging, count."""
    media_type = accepted(request)
    context = link_context(request)
    tm = await term_map(request, context)
    selection = _selection(request, tm)
    sys_attrs = "sysAttrs" in options(request)
    page = paging(request, request.app[SETTINGS].max_page)
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    now = datetime.now(UTC)
    found = [
        (r, s)
        for r, s in await request.app[REGISTRATIONS].registrations(None, tenant)
        if not r.expired(now) and selection.selects(r, tm)
    ]
    window = found[page.offset : page.offset + page.limit]
    body = [rendered(r, s if sys_attrs else None, tm) for r, s in window]
    headers = {"NGSILD-Results-Count": str(len(found))} if page.count else {}
    more = page.offset + page.limit < len(found)
    links = page_links(request, page, more, media_type=media_type)
    return json_response(request, body, context=context, media_type=media_type, headers=headers, links=links)


def _selection(request: web.Request, tm: TermMap) -> RegistrationQuery:
    """The query parameters of 6.8.3.2, checked (400 BadRequestData naming the wrong one)."""
    query = request.query
    ids = csv_param(request, "id")
    attrs = csv_param(request, "attrs")
    pattern = None
    if "idPattern" in query:
        try:
            regex = translate_regex(query["idPattern"])
        except ValueError as exc:
            raise BadRequestData(f"idPattern is not a supported regular expression: {exc}") from None
        pattern = re.compile(regex.python, re.DOTALL | (re.IGNORECASE if regex.ignore_case else 0))
    geoproperty = query.get("geoproperty")
    if geoproperty is not None and geoproperty != "location":
        raise BadRequestData("registrations are geo-queried on their location only (geoproperty=location)")
    geo = parse_geo_query(query.get("georel"), query.get("geometry"), query.get("coordinates"), None)
    return RegistrationQuery(
        ids=frozenset(check_uri(i, "id") for i in ids) if ids is not None else None,
        id_pattern=pattern,
        types=parse_type_expr(query["type"], tm) if "type" in query else None,
        attrs=frozenset(tm.expand(check_name(a, "attrs entry")) for a in attrs)
        if attrs is not None
        else None,
        geo=geo,
        q=check_simple_q(parse_q(query["q"]), "q") if "q" in query else None,
        csf=check_simple_q(parse_q(query["csf"]), "csf") if "csf" in query else None,
    )


@routes.get(REGISTRATION_PATH)
async def retrieve_registration(request: web.Request) -> web.Response:
    """5.10.1 Retrieve Context Source Registration (HTTP binding 6.9.3.1): 404 if there is none."""
    registration_id = _path_id(request)
    media_type = accepted(request)
    context = link_context(request)
    tm = await term_map(request, context)
    sys_attrs = "sysAttrs" in options(request)
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    found = [
        (r, s)
        for r, s in await request.app[REGISTRATIONS].registrations(None, tenant)
        if r.id == registration_id
    ]
    if not found:
        raise ResourceNotFound(f"registration {registration_id} does not exist")
    registration, stored = found[0]
    body = rendered(registration, stored if sys_attrs else None, tm)
    return json_response(request, body, context=context, media_type=media_type)


@routes.patch(REGISTRATION_PATH)
async def update_registration(request: web.Request) -> web.Response:
    """5.9.3 Update Context Source Registration (HTTP binding 6.9.3.2): the fragment's members
    replace the stored ones (``management`` merged one level down), NGSI-LD Null removes one;
    the merged registration must be valid, else 400 and nothing changes."""
    registration_id = _path_id(request)
    tenant = tenant_of(request)
    fragment, _, tm = await read_object(request)
    if not fragment:
        raise BadRequestData("the registration fragment is empty: nothing to update")
    if "id" in fragment and fragment["id"] != registration_id:
        raise BadRequestData(f"the fragment's id {fragment['id']} differs from the path's {registration_id}")
    expanded = expand_body(fragment, tm)
    now = datetime.now(UTC) if "expiresAt" in fragment else None

    def revise(stored: StoredRegistration) -> Registration:
        merged = merge(stored.body, expanded, nested=frozenset({"management"}))
        return compile_registration(tenant, registration_id, merged, now=now)

    await request.app[REGISTRATIONS].update(tenant, registration_id, revise)
    return no_content(request)


@routes.delete(REGISTRATION_PATH)
async def delete_registration(request: web.Request) -> web.Response:
    """5.9.4 Delete Context Source Registration (HTTP binding 6.9.3.3): 204, 404 if there is none."""
    await request.app[REGISTRATIONS].delete(tenant_of(request), _path_id(request))
    return no_content(request)
