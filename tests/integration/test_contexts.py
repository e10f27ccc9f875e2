"""@context handling: Link header / inline contexts (6.3.5), Accept negotiation (6.3.6), /jsonldContexts (5.13)."""

from __future__ import annotations

import ipaddress
from importlib import resources
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.config import Settings
from broker.errors import LdContextNotAvailable
from broker.jsonld.fetch import ContextFetcher, context_policy
from broker.netguard import Address, AddressPolicy
from tests.conftest import CONTEXT_REL, Api, new_id, problem
from tests.dns import StubDns
from tests.integration.helpers import (
    CONTEXTS,
    CORE_UNVERSIONED,
    CORE_V19,
    DEFAULT_VOCAB,
    assert_absent,
    batch,
    body_of,
    context_server,
    ensure_tenant,
    host_context,
    local_path,
    thing,
    with_link,
)

ONTOLOGY = "https://example.org/ontology#"
TERMS = {"Gauge": ONTOLOGY + "Gauge", "waterLevel": ONTOLOGY + "waterLevel", "site": ONTOLOGY + "site"}
LD_JSON = {"Accept": "application/ld+json"}


def gauge(entity_id: str, level: float = 1.5) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "Gauge",
        "waterLevel": {"type": "Property", "value": level, "unitCode": "MTR"},
        "site": {"type": "Relationship", "object": "urn:ngsi-ld:Site:one"},
    }


def context_document() -> web.Response:
    return web.Response(body=orjson.dumps({"@context": TERMS}), content_type="application/ld+json")


def broken() -> web.Response:
    return web.Response(status=500, text="boom")


async def list_contexts(api: Api, **params: str) -> Any:
    response = await api.request("GET", CONTEXTS, params=params or None)
    assert response.status == 200, await response.text()
    return await body_of(response)


# --- Link header and inline @context ----------------------------------------------------------------


async def test_a_hosted_context_in_the_link_header_expands_on_write_and_compacts_on_read(api: Api) -> None:
    url = await host_context(api, TERMS)
    entity_id = new_id("Gauge")
    response = await api.create(gauge(entity_id), headers=with_link(url))
    assert response.status == 201, await response.text()

    compacted = await api.get_json(entity_id, headers=with_link(url, LD_JSON))
    assert compacted["@context"] == url
    assert compacted["type"] == "Gauge"
    assert compacted["waterLevel"] == {"type": "Property", "value": 1.5, "unitCode": "MTR"}
    assert compacted["site"] == {"type": "Relationship", "object": "urn:ngsi-ld:Site:one"}

    expanded = await api.get_json(entity_id, headers=LD_JSON)
    assert expanded["type"] == ONTOLOGY + "Gauge"
    assert expanded[ONTOLOGY + "waterLevel"]["value"] == 1.5
    assert ONTOLOGY + "site" in expanded
    assert "waterLevel" not in expanded


async def test_a_default_vocabulary_name_is_not_compacted_to_a_user_term_that_means_another_iri(
    api: Api,
) -> None:
    url = await host_context(api, TERMS)
    entity_id = new_id()
    assert (await api.create(thing(entity_id, waterLevel=2))).status == 201
    # The user context maps waterLevel to another IRI, so the stored default-vocabulary IRI must not
    # be compacted to "waterLevel" (JSON-LD IRI compaction): full IRI or the core's "ngsi-ld:" prefix.
    read_with_user_context = await api.get_json(entity_id, headers=with_link(url))
    assert "waterLevel" not in read_with_user_context
    names = {DEFAULT_VOCAB + "waterLevel", "ngsi-ld:default-context/waterLevel"}
    assert len(names & set(read_with_user_context)) == 1, read_with_user_context
    assert (await api.get_json(entity_id))["waterLevel"]["value"] == 2


async def test_an_inline_context_with_ld_json_expands_the_names(api: Api) -> None:
    url = await host_context(api, TERMS)
    entity_id = new_id("Gauge")
    payload = {**gauge(entity_id, 3.25), "@context": [TERMS, CORE_V19]}
    response = await api.create(payload, content_type="application/ld+json")
    assert response.status == 201, await response.text()
    expanded = await api.get_json(entity_id)
    assert expanded["type"] == ONTOLOGY + "Gauge"
    assert expanded[ONTOLOGY + "waterLevel"]["value"] == 3.25
    compacted = await api.get_json(entity_id, headers=with_link(url))
    assert compacted["waterLevel"]["value"] == 3.25


async def test_an_inline_context_naming_a_hosted_context_url_is_resolved(api: Api) -> None:
    url = await host_context(api, TERMS)
    entity_id = new_id("Gauge")
    response = await api.create({**gauge(entity_id), "@context": url}, content_type="application/ld+json")
    assert response.status == 201, await response.text()
    assert (await api.get_json(entity_id))["type"] == ONTOLOGY + "Gauge"


async def test_a_link_header_together_with_ld_json_answers_400_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    url = await host_context(api, TERMS)
    entity_id = new_id("Gauge")
    payload = {**gauge(entity_id), "@context": url}
    response = await api.create(payload, headers=with_link(url), content_type="application/ld+json")
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_an_at_context_in_the_body_with_application_json_answers_400_and_stores_nothing(
    api: Api,
) -> None:
    await ensure_tenant(api)
    entity_id = new_id("Gauge")
    response = await api.create({**gauge(entity_id), "@context": CORE_V19}, content_type="application/json")
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_ld_json_without_an_at_context_answers_400_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    response = await api.create(thing(entity_id, level=1), content_type="application/ld+json")
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_the_core_context_urls_work_offline_as_link_headers(api: Api) -> None:
    for core in (CORE_UNVERSIONED, CORE_V19):
        entity_id = new_id()
        response = await api.create(thing(entity_id, level=1), headers=with_link(core))
        assert response.status == 201, (core, await response.text())
        read = await api.get(entity_id, headers=with_link(core))
        assert read.status == 200, await read.text()
        assert (await body_of(read))["level"]["value"] == 1
        assert f"<{core}>" in read.headers["Link"]


# --- remote contexts --------------------------------------------------------------------------------


async def test_a_remote_context_is_fetched_once_cached_in_the_database_and_used_offline(
    api: Api, settings: Settings
) -> None:
    first, second = new_id("Gauge"), new_id("Gauge")
    async with context_server({"/ctx.jsonld": context_document}) as server:
        url = server.url("/ctx.jsonld")
        response = await api.create(gauge(first), headers=with_link(url))
        assert response.status == 201, await response.text()
        response = await api.create(gauge(second, 2.5), headers=with_link(url))
        assert response.status == 201, await response.text()
        assert server.hits == {"/ctx.jsonld": 1}

    assert url in await list_contexts(api, kind="Cached")
    assert url not in await list_contexts(api, kind="Hosted")
    details = [d for d in await list_contexts(api, details="true") if d["URL"] == url]
    assert len(details) == 1
    assert details[0]["kind"] == "Cached"

    # The server is gone: this broker, and a fresh one (no in-memory cache), still resolve the URL.
    compacted = await api.get_json(first, headers=with_link(url))
    assert compacted["type"] == "Gauge"
    assert compacted["waterLevel"]["value"] == 1.5
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as fresh:
        third = new_id("Gauge")
        headers = {
            "NGSILD-Tenant": api.tenant,
            "Link": with_link(url)["Link"],
            "Content-Type": "application/json",
        }
        created = await fresh.post(
            "/ngsi-ld/v1/entities", data=orjson.dumps(gauge(third, 4.0)), headers=headers
        )
        assert created.status == 201, await created.text()
        read = await fresh.get(f"/ngsi-ld/v1/entities/{second}", headers=headers)
        assert read.status == 200, await read.text()
        assert (await read.json())["waterLevel"]["value"] == 2.5
    assert (await api.get_json(third))[ONTOLOGY + "waterLevel"]["value"] == 4.0


async def test_a_remote_context_answering_500_gives_503_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id("Gauge")
    async with context_server({"/ctx.jsonld": context_document, "/broken": broken}) as server:
        url = server.url("/broken")
        response = await api.create(gauge(entity_id), headers=with_link(url))
        await problem(response, 503, "LdContextNotAvailable")
        inline = await api.create({**gauge(entity_id), "@context": [url]}, content_type="application/ld+json")
        await problem(inline, 503, "LdContextNotAvailable")
    await assert_absent(api, entity_id)
    assert url not in await list_contexts(api)


async def test_an_unreachable_context_url_gives_503_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    response = await api.create(thing(entity_id, level=1), headers=with_link("http://127.0.0.1:9/x.jsonld"))
    await problem(response, 503, "LdContextNotAvailable")
    await assert_absent(api, entity_id)


async def test_reading_with_an_unreachable_context_url_gives_503(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await api.get(entity_id, headers=with_link("http://127.0.0.1:9/x.jsonld"))
    await problem(response, 503, "LdContextNotAvailable")


async def test_a_batch_upsert_with_an_unreachable_link_context_gives_503_and_stores_nothing(api: Api) -> None:
    """The request's own @context (Link header) cannot be retrieved: the request fails (6.3.5, 5.5.2)."""
    await ensure_tenant(api)
    ids = [new_id(), new_id()]
    response = await batch(
        api, "upsert", [thing(i, level=1) for i in ids], headers=with_link("http://127.0.0.1:9/x.jsonld")
    )
    await problem(response, 503, "LdContextNotAvailable")
    for entity_id in ids:
        await assert_absent(api, entity_id)


# --- /jsonldContexts --------------------------------------------------------------------------------


async def test_adding_a_context_answers_201_with_a_location_that_serves_it(api: Api) -> None:
    response = await api.request("POST", CONTEXTS, {"@context": TERMS})
    assert response.status == 201, await response.text()
    location = response.headers["Location"]
    assert "/ngsi-ld/v1/jsonldContexts/" in location
    served = await api.request("GET", local_path(location))
    assert served.status == 200, await served.text()
    assert served.content_type in ("application/ld+json", "application/json")
    assert await body_of(served) == {"@context": TERMS}


async def test_adding_a_context_with_ld_json_content_type_is_accepted(api: Api) -> None:
    response = await api.request("POST", CONTEXTS, {"@context": TERMS}, content_type="application/ld+json")
    assert response.status == 201, await response.text()
    served = await api.request("GET", local_path(response.headers["Location"]))
    assert await body_of(served) == {"@context": TERMS}


async def test_adding_a_body_without_at_context_answers_400(api: Api) -> None:
    """Clauses 6.29.3.1 and 5.5.2: a body that is no @context document is an InvalidRequest."""
    for body in ({"Gauge": ONTOLOGY + "Gauge"}, [{"@context": TERMS}], "ctx"):
        response = await api.request("POST", CONTEXTS, body)
        await problem(response, 400, "InvalidRequest")


async def test_listing_contexts_with_details_shows_a_hosted_one_with_its_metadata(api: Api) -> None:
    url = await host_context(api, TERMS)
    assert url in await list_contexts(api)
    assert url in await list_contexts(api, kind="Hosted")
    assert url not in await list_contexts(api, kind="Cached")
    found = [d for d in await list_contexts(api, details="true") if d["URL"] == url]
    assert len(found) == 1
    assert found[0]["kind"] == "Hosted"
    assert found[0]["localId"]
    assert found[0]["createdAt"]
    single = await api.request("GET", local_path(url), params={"details": "true"})
    assert single.status == 200, await single.text()
    assert (await body_of(single))["kind"] == "Hosted"
    assert (await body_of(single))["URL"] == url


async def test_listing_contexts_of_an_unknown_kind_answers_400(api: Api) -> None:
    await problem(await api.request("GET", CONTEXTS, params={"kind": "Bogus"}), 400, "BadRequestData")


async def test_deleting_a_hosted_context_answers_204_then_404(api: Api) -> None:
    url = await host_context(api, TERMS)
    path = local_path(url)
    response = await api.request("DELETE", path)
    assert response.status == 204, await response.text()
    await problem(await api.request("GET", path), 404, "ResourceNotFound")
    await problem(await api.request("DELETE", path), 404, "ResourceNotFound")
    assert url not in await list_contexts(api)


async def test_an_unknown_context_id_answers_404(api: Api) -> None:
    await problem(await api.request("GET", f"{CONTEXTS}/nosuchcontext"), 404, "ResourceNotFound")
    await problem(await api.request("DELETE", f"{CONTEXTS}/nosuchcontext"), 404, "ResourceNotFound")


async def test_reloading_a_hosted_context_answers_400_and_keeps_it(api: Api) -> None:
    url = await host_context(api, TERMS)
    response = await api.request("DELETE", local_path(url), params={"reload": "true"})
    await problem(response, 400, "BadRequestData")
    served = await api.request("GET", local_path(url))
    assert await body_of(served) == {"@context": TERMS}


async def test_serving_a_cached_context_content_answers_422_but_its_details_are_served(api: Api) -> None:
    async with context_server({"/ctx.jsonld": context_document}) as server:
        url = server.url("/ctx.jsonld")
        assert (await api.create(gauge(new_id("Gauge")), headers=with_link(url))).status == 201
    [details] = [d for d in await list_contexts(api, details="true") if d["URL"] == url]
    path = f"{CONTEXTS}/{details['localId']}"
    await problem(await api.request("GET", path), 422, "OperationNotSupported")
    meta = await api.request("GET", path, params={"details": "true"})
    assert meta.status == 200, await meta.text()
    assert (await body_of(meta))["kind"] == "Cached"


async def test_reloading_a_cached_context_refetches_it(api: Api) -> None:
    version = {"n": 1}

    def evolving() -> web.Response:
        terms = {**TERMS, "waterLevel": f"{ONTOLOGY}waterLevelV{version['n']}"}
        return web.Response(body=orjson.dumps({"@context": terms}), content_type="application/ld+json")

    async with context_server({"/ctx.jsonld": evolving}) as server:
        url = server.url("/ctx.jsonld")
        first = new_id("Gauge")
        assert (await api.create(gauge(first), headers=with_link(url))).status == 201
        [details] = [d for d in await list_contexts(api, details="true") if d["URL"] == url]
        version["n"] = 2
        response = await api.request("DELETE", f"{CONTEXTS}/{details['localId']}", params={"reload": "true"})
        assert response.status == 204, await response.text()
        assert server.hits["/ctx.jsonld"] == 2
        second = new_id("Gauge")
        assert (await api.create(gauge(second), headers=with_link(url))).status == 201
    assert ONTOLOGY + "waterLevelV1" in await api.get_json(first)
    assert ONTOLOGY + "waterLevelV2" in await api.get_json(second)
    assert url in await list_contexts(api, kind="Cached")


async def test_reloading_a_cached_context_whose_server_is_gone_answers_503(api: Api) -> None:
    async with context_server({"/ctx.jsonld": context_document}) as server:
        url = server.url("/ctx.jsonld")
        assert (await api.create(gauge(new_id("Gauge")), headers=with_link(url))).status == 201
    [details] = [d for d in await list_contexts(api, details="true") if d["URL"] == url]
    response = await api.request("DELETE", f"{CONTEXTS}/{details['localId']}", params={"reload": "true"})
    await problem(response, 503, "LdContextNotAvailable")
    assert url in await list_contexts(api, kind="Cached")


async def test_a_cached_context_can_be_deleted_by_its_original_url(api: Api) -> None:
    async with context_server({"/ctx.jsonld": context_document}) as server:
        url = server.url("/ctx.jsonld")
        assert (await api.create(gauge(new_id("Gauge")), headers=with_link(url))).status == 201
    response = await api.request("DELETE", f"{CONTEXTS}/{quote(url, safe='')}")
    assert response.status == 204, await response.text()
    assert url not in await list_contexts(api)


# --- Accept negotiation -----------------------------------------------------------------------------


async def test_accept_json_answers_with_a_link_header_naming_the_request_context(api: Api) -> None:
    url = await host_context(api, TERMS)
    entity_id = new_id("Gauge")
    assert (await api.create(gauge(entity_id), headers=with_link(url))).status == 201
    response = await api.get(entity_id, headers=with_link(url, {"Accept": "application/json"}))
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    link = response.headers["Link"]
    assert link.startswith(f"<{url}>")
    assert f'rel="{CONTEXT_REL}"' in link
    body = await body_of(response)
    assert "@context" not in body
    assert body["waterLevel"]["value"] == 1.5


async def test_accept_json_without_a_link_names_the_core_context(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await api.get(entity_id)
    assert response.status == 200
    assert "ngsi-ld-core-context" in response.headers["Link"]
    assert "@context" not in await body_of(response)


async def test_accept_ld_json_puts_the_context_in_the_body_and_no_link_header(api: Api) -> None:
    url = await host_context(api, TERMS)
    entity_id = new_id("Gauge")
    assert (await api.create(gauge(entity_id), headers=with_link(url))).status == 201
    response = await api.get(entity_id, headers=with_link(url, LD_JSON))
    assert response.status == 200, await response.text()
    assert response.content_type == "application/ld+json"
    assert "Link" not in response.headers
    body = await body_of(response)
    assert body["@context"] == url
    assert body["type"] == "Gauge"


async def test_accept_ld_json_on_a_query_gives_every_entity_its_context(api: Api) -> None:
    url = await host_context(api, TERMS)
    ids = sorted([new_id("Gauge"), new_id("Gauge")])
    for entity_id in ids:
        assert (await api.create(gauge(entity_id), headers=with_link(url))).status == 201
    response = await api.request(
        "GET", "/ngsi-ld/v1/entities", params={"type": "Gauge"}, headers=with_link(url, LD_JSON)
    )
    assert response.status == 200, await response.text()
    assert "Link" not in response.headers
    body = await body_of(response)
    assert sorted(e["id"] for e in body) == ids
    assert all(e["@context"] == url for e in body)


async def test_accept_text_csv_answers_406(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await api.get(entity_id, headers={"Accept": "text/csv"})
    body = await body_of(response)
    assert response.status == 406, body
    assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
    assert body["title"]
    assert body["detail"]


async def test_accept_with_quality_values_picks_the_preferred_supported_type(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await api.get(
        entity_id, headers={"Accept": "text/csv, application/json;q=0.5, application/ld+json;q=0.9"}
    )
    assert response.status == 200, await response.text()
    assert response.content_type == "application/ld+json"
    assert "@context" in await body_of(response)


async def test_names_outside_the_user_context_come_back_as_their_default_vocabulary_terms(api: Api) -> None:
    url = await host_context(api, TERMS)
    entity_id = new_id("Gauge")
    payload = {**gauge(entity_id), "level": {"type": "Property", "value": 9}}
    assert (await api.create(payload, headers=with_link(url))).status == 201
    compacted = await api.get_json(entity_id, headers=with_link(url))
    assert compacted["level"]["value"] == 9
    assert compacted["waterLevel"]["value"] == 1.5
    expanded = await api.get_json(entity_id)
    assert expanded["level"]["value"] == 9


async def test_a_link_header_whose_url_is_not_a_uri_answers_400(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    response = await api.create(thing(entity_id, level=1), headers=with_link("not a url"))
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_two_context_link_headers_answer_400(api: Api) -> None:
    await ensure_tenant(api)
    url = await host_context(api, TERMS)
    entity_id = new_id("Gauge")
    link = f"{with_link(url)['Link']}, {with_link(CORE_V19)['Link']}"
    response = await api.create(gauge(entity_id), headers={"Link": link})
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_a_link_header_with_another_rel_is_ignored(api: Api) -> None:
    entity_id = new_id()
    link = '<https://example.org/other>; rel="alternate"; type="text/html"'
    response = await api.create(thing(entity_id, level=1), headers={"Link": link})
    assert response.status == 201, await response.text()
    assert (await api.get_json(entity_id))["level"]["value"] == 1


async def test_content_types_with_a_charset_parameter_are_accepted(api: Api) -> None:
    plain, linked = new_id(), new_id()
    response = await api.create(thing(plain, level=1), content_type="application/json; charset=utf-8")
    assert response.status == 201, await response.text()
    payload = {**thing(linked, level=2), "@context": CORE_V19}
    response = await api.create(payload, content_type="application/ld+json; charset=utf-8")
    assert response.status == 201, await response.text()
    assert (await api.get_json(plain))["level"]["value"] == 1
    assert (await api.get_json(linked))["level"]["value"] == 2


# --- @contexts belong to their tenant (issue 11 defect 9) -------------------------------------------


def other_tenant(api: Api) -> Api:
    return Api(api.client, f"{api.tenant}-other")


async def test_another_tenant_neither_lists_reads_nor_deletes_a_hosted_context(api: Api) -> None:
    url = await host_context(api, TERMS)
    other = other_tenant(api)
    path = local_path(url)

    assert url not in await list_contexts(other)
    assert url not in await list_contexts(other, details="true")
    await problem(await other.request("GET", path), 404, "ResourceNotFound")
    await problem(await other.request("GET", path, params={"details": "true"}), 404, "ResourceNotFound")
    await problem(await other.request("DELETE", path), 404, "ResourceNotFound")
    await problem(await other.request("DELETE", f"{CONTEXTS}/{quote(url, safe='')}"), 404, "ResourceNotFound")

    # The owner still has it and can use it.
    assert await body_of(await api.request("GET", path)) == {"@context": TERMS}
    entity_id = new_id("Gauge")
    assert (await api.create(gauge(entity_id), headers=with_link(url))).status == 201
    assert (await api.get_json(entity_id))["type"] == ONTOLOGY + "Gauge"


async def test_another_tenant_cannot_use_a_hosted_context_url_and_stores_nothing(api: Api) -> None:
    url = await host_context(api, TERMS)
    other = other_tenant(api)
    await ensure_tenant(other)
    entity_id = new_id("Gauge")
    response = await other.create(gauge(entity_id), headers=with_link(url))
    await problem(response, 503, "LdContextNotAvailable")
    inline = await other.create({**gauge(entity_id), "@context": url}, content_type="application/ld+json")
    await problem(inline, 503, "LdContextNotAvailable")
    await assert_absent(other, entity_id)


async def test_a_remote_context_another_tenant_cached_is_shared_read_only_and_deleted_only_in_its_tenant(
    api: Api,
) -> None:
    other = other_tenant(api)
    async with context_server({"/ctx.jsonld": context_document}) as server:
        url = server.url("/ctx.jsonld")
        assert (await api.create(gauge(new_id("Gauge")), headers=with_link(url))).status == 201
        assert url not in await list_contexts(other)
        await problem(
            await other.request("DELETE", f"{CONTEXTS}/{quote(url, safe='')}"), 404, "ResourceNotFound"
        )

        # The other tenant uses the same URL: the document is not fetched again but copied.
        entity_id = new_id("Gauge")
        assert (await other.create(gauge(entity_id), headers=with_link(url))).status == 201
        assert server.hits == {"/ctx.jsonld": 1}
    assert (await other.get_json(entity_id))["type"] == ONTOLOGY + "Gauge"
    assert url in await list_contexts(other, kind="Cached")

    # Deleting its copy leaves the first tenant's.
    response = await other.request("DELETE", f"{CONTEXTS}/{quote(url, safe='')}")
    assert response.status == 204, await response.text()
    assert url not in await list_contexts(other)
    assert url in await list_contexts(api, kind="Cached")
    still = new_id("Gauge")
    assert (await api.create(gauge(still), headers=with_link(url))).status == 201
    assert (await api.get_json(still, headers=with_link(url)))["type"] == "Gauge"


# --- fetching remote @contexts: whole bodies, every redirect hop checked (issue 11 defect 10, 13.12) -----

SDM_CONTEXT = (
    resources.files("broker.jsonld").joinpath("bundled", "sdm-data-models.context.jsonld").read_bytes()
)
ZONE_CODE = "https://smart-data-models.github.io/data-models/terms.jsonld#/definitions/zoneCode"
# In the stub-resolver tests 127.0.0.1 plays the public internet: every other address is internal.
PUBLIC = ipaddress.ip_address("127.0.0.1")


def loopback_is_public(address: Address) -> bool:
    return address == PUBLIC


LOOPBACK_IS_PUBLIC = AddressPolicy(
    what="@context", setting="NGSI_CONTEXT_ALLOW_PRIVATE", public=loopback_is_public
)


class Remote:
    """A loopback HTTP server whose handlers stream bodies in pieces and redirect; counts hits per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.port = 0
        self.redirects: dict[str, str] = {}
        self._runner: web.AppRunner | None = None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        if request.path in self.redirects:
            raise web.HTTPFound(self.redirects[request.path])
        body = {"/sdm.jsonld": SDM_CONTEXT, "/ctx.jsonld": orjson.dumps({"@context": TERMS})}.get(
            request.path
        )
        if body is None:
            raise web.HTTPNotFound()
        response = web.StreamResponse(headers={"Content-Type": "application/ld+json"})
        await response.prepare(request)
        for start in range(0, len(body), 8192):
            await response.write(body[start : start + 8192])
        await response.write_eof()
        return response

    async def __aenter__(self) -> Remote:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def fetch(fetcher: ContextFetcher, url: str) -> bytes:
    try:
        return await fetcher.get(url)
    finally:
        await fetcher.close()


async def test_the_smart_data_models_context_of_126_kb_sent_in_pieces_loads_whole(api: Api) -> None:
    """Clause 6.3.5 (a Link header @context is dereferenced): read whole up to NGSI_CONTEXT_MAX_BYTES,
    not truncated at the first network chunk (issue 13 item 12)."""
    entity_id = new_id()
    async with Remote() as remote:
        url = remote.url("/sdm.jsonld")
        response = await api.create({"id": entity_id, "type": "T", "zoneCode": "Z1"}, headers=with_link(url))
        assert response.status == 201, await response.text()
    assert len(SDM_CONTEXT) > 120_000
    # zoneCode is the context's last term: only the whole document defines it.
    assert (await api.get_json(entity_id))[ZONE_CODE]["value"] == "Z1"
    assert (await api.get_json(entity_id, headers=with_link(url)))["zoneCode"]["value"] == "Z1"


async def test_a_context_larger_than_the_limit_is_refused_however_it_is_sent() -> None:
    async with Remote() as remote:
        fetcher = ContextFetcher(timeout=10, max_bytes=100_000, policy=context_policy(allow_private=True))
        with pytest.raises(LdContextNotAvailable, match="larger than 100000 bytes"):
            await fetch(fetcher, remote.url("/sdm.jsonld"))


async def test_a_redirect_is_followed_when_its_target_is_allowed(api: Api) -> None:
    entity_id = new_id("Gauge")
    async with Remote() as remote:
        remote.redirects["/old.jsonld"] = remote.url("/ctx.jsonld")
        response = await api.create(gauge(entity_id), headers=with_link(remote.url("/old.jsonld")))
        assert response.status == 201, await response.text()
        assert remote.hits == {"/old.jsonld": 1, "/ctx.jsonld": 1}
    assert (await api.get_json(entity_id))["type"] == ONTOLOGY + "Gauge"


async def test_a_redirect_loop_gives_503_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id("Gauge")
    async with Remote() as remote:
        remote.redirects["/a"] = "/b"
        remote.redirects["/b"] = "/a"
        response = await api.create(gauge(entity_id), headers=with_link(remote.url("/a")))
        await problem(response, 503, "LdContextNotAvailable")
        assert sum(remote.hits.values()) == 6
    await assert_absent(api, entity_id)


async def test_a_redirect_to_a_name_resolving_to_an_internal_address_is_refused_before_connecting() -> None:
    dns = StubDns({"inside.example": ["10.0.0.1"]})
    async with Remote() as remote:
        remote.redirects["/start"] = remote.url("/ctx.jsonld", host="inside.example")
        fetcher = ContextFetcher(timeout=10, max_bytes=1_000_000, policy=LOOPBACK_IS_PUBLIC, dns=dns)
        with pytest.raises(LdContextNotAvailable, match=r"non-public address 10\.0\.0\.1"):
            await fetch(fetcher, remote.url("/start"))
        assert remote.hits == {"/start": 1}
    assert dns.asked == ["inside.example"]


@pytest.mark.parametrize(
    "target", ["http://10.0.0.1/ctx.jsonld", "http://[::ffff:10.0.0.1]/c", "http://127.0.0.2/c"]
)
async def test_a_redirect_to_an_internal_address_literal_is_refused_without_connecting(target: str) -> None:
    dns = StubDns({})
    async with Remote() as remote:
        remote.redirects["/start"] = target
        fetcher = ContextFetcher(timeout=10, max_bytes=1_000_000, policy=LOOPBACK_IS_PUBLIC, dns=dns)
        with pytest.raises(LdContextNotAvailable, match="non-public address"):
            await fetch(fetcher, remote.url("/start"))
        assert remote.hits == {"/start": 1}
    assert dns.asked == []


async def test_a_name_resolving_to_an_internal_address_is_refused_at_the_first_hop() -> None:
    dns = StubDns({"inside.example": ["127.0.0.2"]})
    async with Remote() as remote:
        fetcher = ContextFetcher(timeout=10, max_bytes=1_000_000, policy=LOOPBACK_IS_PUBLIC, dns=dns)
        with pytest.raises(LdContextNotAvailable, match=r"non-public address 127\.0\.0\.2"):
            await fetch(fetcher, remote.url("/ctx.jsonld", host="inside.example"))
        assert remote.hits == {}


async def test_the_connection_goes_to_the_address_that_was_checked(api: Api) -> None:
    """A name answering a public address, then an internal one (DNS rebinding): resolved once, used once."""
    dns = StubDns({"ctx.example": ["127.0.0.1", "10.0.0.1"]})
    async with Remote() as remote:
        fetcher = ContextFetcher(timeout=10, max_bytes=1_000_000, policy=LOOPBACK_IS_PUBLIC, dns=dns)
        body = await fetch(fetcher, remote.url("/ctx.jsonld", host="ctx.example"))
        assert orjson.loads(body) == {"@context": TERMS}
        assert remote.hits == {"/ctx.jsonld": 1}
    assert dns.asked == ["ctx.example"]


async def test_with_allow_private_a_name_on_loopback_is_fetched() -> None:
    dns = StubDns({"ctx.example": ["127.0.0.1"]})
    async with Remote() as remote:
        remote.redirects["/start"] = remote.url("/ctx.jsonld", host="ctx.example")
        fetcher = ContextFetcher(
            timeout=10, max_bytes=1_000_000, policy=context_policy(allow_private=True), dns=dns
        )
        assert orjson.loads(await fetch(fetcher, remote.url("/start"))) == {"@context": TERMS}


# --- issue 13: core @context, ImplicitlyCreated, numberOfHits/lastUsage, relative Location ----------


async def test_the_core_context_is_listed_served_and_refused_on_delete(api: Api) -> None:
    """Clauses 5.13.3-5.13.5: the core @context is listed, served with its details, and not deletable."""
    assert CORE_V19 in await list_contexts(api)
    assert CORE_V19 in await list_contexts(api, kind="Cached")
    [core] = [d for d in await list_contexts(api, details="true") if d["URL"] == CORE_V19]
    assert core["kind"] == "Cached"
    path = f"{CONTEXTS}/{core['localId']}"
    details = await api.request("GET", path, params={"details": "true"})
    assert details.status == 200, await details.text()
    assert (await body_of(details))["URL"] == CORE_V19
    served = await api.request("GET", path)
    assert served.status == 200, await served.text()
    assert "@context" in await body_of(served)
    await problem(await api.request("DELETE", path), 400, "BadRequestData")
    await problem(await api.request("DELETE", path, params={"reload": "true"}), 400, "BadRequestData")
    assert CORE_V19 in await list_contexts(api)


async def test_adding_a_context_answers_a_relative_location(api: Api) -> None:
    """Clause 6.29.3.1: Location holds the path of the created @context resource."""
    response = await api.request("POST", CONTEXTS, {"@context": TERMS})
    assert response.status == 201, await response.text()
    location = response.headers["Location"]
    assert location.startswith(CONTEXTS + "/")
    assert (await api.request("GET", location)).status == 200


async def test_an_inline_context_is_kept_as_implicitly_created_once(api: Api) -> None:
    """Clause 5.13.1: an inline @context of a request is stored as ImplicitlyCreated, listed and served."""
    for _ in range(2):
        entity = {**gauge(new_id("Gauge")), "@context": [TERMS, CORE_V19]}
        assert (await api.create(entity)).status == 201
    implicit = [d for d in await list_contexts(api, details="true") if d["kind"] == "ImplicitlyCreated"]
    assert len(implicit) == 1
    assert await list_contexts(api, kind="ImplicitlyCreated") == [implicit[0]["URL"]]
    served = await api.request("GET", f"{CONTEXTS}/{implicit[0]['localId']}")
    assert await body_of(served) == {"@context": [TERMS, CORE_V19]}
    assert implicit[0]["numberOfHits"] == 2
    assert implicit[0]["lastUsage"]


async def test_using_a_hosted_context_counts_its_hits_and_sets_its_last_usage(api: Api) -> None:
    """Clause 5.13.3 (the @context details of 5.2.35): numberOfHits and lastUsage follow the uses."""
    url = await host_context(api, TERMS)
    [before] = [d for d in await list_contexts(api, details="true") if d["URL"] == url]
    assert before["numberOfHits"] == 0
    assert "lastUsage" not in before
    for _ in range(3):
        assert (await api.create(gauge(new_id("Gauge")), headers=with_link(url))).status == 201
    single = await api.request("GET", local_path(url), params={"details": "true"})
    details = await body_of(single)
    assert details["numberOfHits"] == 3
    assert details["lastUsage"] >= details["createdAt"]
