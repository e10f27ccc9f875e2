"""Inputs found by review that once answered 500 or corrupted state: each must be a clean 4xx."""

from __future__ import annotations

from typing import Any

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


async def test_a_q_date_out_of_postgresql_range_is_400(api: Api) -> None:
    await api.create(
        {
            "id": new_id(),
            "type": "T",
            "p": {"type": "Property", "value": 1, "observedAt": "2026-01-01T00:00:00Z"},
        }
    )
    params = {"type": "T", "q": "p.observedAt>=0001-01-01T00:00:00+09:00"}
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
