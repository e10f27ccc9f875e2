"""Inputs found by review that once answered 500 or corrupted state: each must be a clean 4xx."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from broker.errors import LdContextNotAvailable
from broker.jsonld.fetch import ContextFetcher
from broker.jsonld.resolver import ContextResolver
from tests.conftest import Api, new_id, problem

ENTITIES = "/ngsi-ld/v1/entities"


class _NoCache:
    def is_hosted(self, url: str) -> bool:
        return False

    async def find(self, tenant: str, url: str) -> dict[str, Any] | None:
        return None

    async def remember(self, tenant: str, url: str, document: dict[str, Any]) -> None:
        raise AssertionError("nothing may be stored")

    async def keep_implicit(self, tenant: str, document: dict[str, Any]) -> str:
        raise AssertionError("nothing may be stored")

    async def count_uses(self, tenant: str, uses: Mapping[str, int]) -> None:
        pass


async def test_a_batch_that_stores_nothing_leaves_a_new_tenant_nonexistent_and_usable(api: Api) -> None:
    response = await api.request("POST", "/ngsi-ld/v1/entityOperations/upsert", [{"id": new_id(), "p": 1}])
    assert response.status == 207
    await problem(await api.request("GET", ENTITIES, params={"type": "T"}), 404, "NonexistentTenant")
    assert (await api.create({"id": new_id(), "type": "T"})).status == 201
    assert (await api.request("GET", ENTITIES, params={"type": "T"})).status == 200


@pytest.mark.parametrize(
    "geo_q",
    [
        {"georel": 5, "geometry": "Point", "coordinates": [134, 34]},
        {"georel": "within", "geometry": ["Polygon"], "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        {"georel": "near;maxDistance==5", "geometry": "Point", "coordinates": [134, 34], "geoproperty": 5},
    ],
)
async def test_post_query_with_mistyped_geo_members_is_400(api: Api, geo_q: dict[str, Any]) -> None:
    await api.create({"id": new_id(), "type": "T"})
    body = {"type": "Query", "entities": [{"type": "T"}], "geoQ": geo_q}
    await problem(
        await api.request("POST", "/ngsi-ld/v1/entityOperations/query", body), 400, "BadRequestData"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "urn:a:\\u0000", "type": "T"}',
        b'{"id": "urn:a:1", "type": "T", "scope": "/a\\u0000"}',
        b'{"id": "urn:a:1", "type": "T", "p": {"type": "Property", "value": "a\\u0000b"}}',
        b'{"id": "urn:a:1", "type": "T", "p": {"type": "Property", "value": {"k\\u0000": 1}}}',
    ],
)
async def test_a_nul_character_in_a_body_is_400_and_nothing_is_stored(api: Api, raw: bytes) -> None:
    await problem(await api.request("POST", ENTITIES, raw=raw), 400, "BadRequestData")


async def test_an_escaped_backslash_before_u0000_is_not_a_nul(api: Api) -> None:
    entity_id = new_id()
    raw = b'{"id": "%s", "type": "T", "p": "a\\\\u0000"}' % entity_id.encode()
    assert (await api.request("POST", ENTITIES, raw=raw)).status == 201
    assert (await api.get_json(entity_id))["p"]["value"] == "a\\u0000"


@pytest.mark.parametrize(
    "path",
    [
        f"{ENTITIES}/urn:a:%00",
        f"{ENTITIES}?type=T&idPattern=%00",
        "/ngsi-ld/v1/jsonldContexts/%00",
    ],
)
async def test_a_nul_character_in_the_path_or_a_parameter_is_400(api: Api, path: str) -> None:
    await api.create({"id": new_id(), "type": "T"})
    await problem(await api.request("GET", path), 400, "BadRequestData")


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-09:00", "0001-01-01T00:00:00+09:00", "2026-01-01"])
async def test_an_observed_at_that_is_no_representable_date_time_is_400(api: Api, moment: str) -> None:
    entity = {"id": new_id(), "type": "T", "p": {"type": "Property", "value": 1, "observedAt": moment}}
    await problem(await api.create(entity), 400, "BadRequestData")


async def test_a_q_date_before_year_one_in_utc_is_compared_not_failed(api: Api) -> None:
    """0001-01-01T00:00:00+09:00 is 15:00 on 31 December of year 0 in UTC: no Python datetime
    holds it, PostgreSQL does, so the comparison is answered (it was a 400, then a 500, before)."""
    entity = {
        "id": new_id(),
        "type": "T",
        "p": {"type": "Property", "value": 1, "observedAt": "2026-01-01T00:00:00Z"},
    }
    await api.create(entity)
    after = {"type": "T", "q": "p.observedAt>=0001-01-01T00:00:00+09:00"}
    response = await api.request("GET", ENTITIES, params=after)
    assert response.status == 200, await response.text()
    assert [e["id"] for e in await response.json()] == [entity["id"]]
    before = {"type": "T", "q": "p.observedAt<0001-01-01T00:00:00+09:00"}
    response = await api.request("GET", ENTITIES, params=before)
    assert response.status == 200, await response.text()
    assert await response.json() == []


async def test_a_q_date_past_year_9999_is_400(api: Api) -> None:
    await api.create({"id": new_id(), "type": "T"})
    params = {"type": "T", "q": "p.observedAt>=10000-01-01T00:00:00Z"}
    await problem(await api.request("GET", ENTITIES, params=params), 400, "BadRequestData")


@pytest.mark.parametrize("offset", ["99999999999999999999", "1e3", "²"])
async def test_an_offset_that_is_no_small_integer_is_400(api: Api, offset: str) -> None:
    await api.create({"id": new_id(), "type": "T"})
    await problem(
        await api.request("GET", ENTITIES, params={"type": "T", "offset": offset}), 400, "BadRequestData"
    )


@pytest.mark.parametrize(("pattern", "status"), [("(a+)+$", 403), ("x" * 300, 403), ("(a)\\1", 400)])
async def test_id_patterns_follow_the_q_regular_expression_rules(api: Api, pattern: str, status: int) -> None:
    await api.create({"id": new_id(), "type": "T"})
    response = await api.request("GET", ENTITIES, params={"idPattern": pattern})
    assert response.status == status, await response.text()


async def test_contexts_on_internal_addresses_are_not_fetched_by_default() -> None:
    fetcher = ContextFetcher(timeout=1, max_bytes=1000)
    resolver = ContextResolver(_NoCache(), fetcher)
    try:
        for url in (
            "http://127.0.0.1:9/context.jsonld",
            "http://[::1]:9/c.jsonld",
            "http://10.1.2.3/c.jsonld",
            "http://localhost:9/c.jsonld",
        ):
            with pytest.raises(LdContextNotAvailable, match="non-public address"):
                await resolver.term_map(url)
    finally:
        await fetcher.close()


def nested(levels: int) -> bytes:
    """JSON text of a number inside ``levels`` arrays (orjson writes no more than 255 levels)."""
    return b"[" * levels + b"1" + b"]" * levels


def with_value(entity_id: str, levels: int) -> bytes:
    return b'{"id": "%s", "type": "T", "p": {"type": "Property", "value": %s}}' % (
        entity_id.encode(),
        nested(levels),
    )


@pytest.mark.parametrize("levels", [63, 250, 300])
async def test_a_value_nested_deeper_than_the_limit_is_400_and_nothing_is_stored(
    api: Api, levels: int
) -> None:
    entity_id = new_id()
    # entity object, attribute object, then the value: 2 + levels > NGSI_MAX_JSON_DEPTH (64)
    response = await api.request("POST", ENTITIES, raw=with_value(entity_id, levels))
    problem_body = await problem(response, 400, "BadRequestData")
    assert "NGSI_MAX_JSON_DEPTH" in problem_body["detail"]
    await problem(await api.get(entity_id), 404, "NonexistentTenant")


async def test_a_value_nested_within_the_limit_is_stored_as_sent(api: Api) -> None:
    entity_id = new_id()
    assert (await api.request("POST", ENTITIES, raw=with_value(entity_id, 62))).status == 201
    assert (await api.get_json(entity_id))["p"]["value"] == orjson.loads(nested(62))


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/ngsi-ld/v1/entityOperations/upsert", b'[{"id": "urn:a:1", "type": "T", "p": %s}]' % nested(300)),
        ("/ngsi-ld/v1/jsonldContexts", b'{"@context": {"a": %s}}' % nested(300)),
        (
            "/ngsi-ld/v1/subscriptions",
            b'{"type": "Subscription", "entities": [{"type": "T"}], "q": %s}' % nested(300),
        ),
        (
            "/ngsi-ld/v1/temporal/entities",
            b'{"id": "urn:a:1", "type": "T", "p": {"value": %s}}' % nested(300),
        ),
    ],
)
async def test_every_json_body_nested_too_deep_is_400(api: Api, path: str, raw: bytes) -> None:
    await problem(await api.request("POST", path, raw=raw), 400, "BadRequestData")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"@context": {"a": "https://example.org/\\u0000"}}',
        b'{"@context": {"a\\u0000": "https://example.org/a"}}',
    ],
)
async def test_a_hosted_context_with_a_nul_character_is_400_and_not_listed(api: Api, raw: bytes) -> None:
    await problem(await api.request("POST", "/ngsi-ld/v1/jsonldContexts", raw=raw), 400, "BadRequestData")
    listed = await api.request("GET", "/ngsi-ld/v1/jsonldContexts")
    # Only the core @context, which every tenant lists (clause 5.13.3).
    assert await listed.json() == ["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"]
