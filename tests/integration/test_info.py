"""GET /ngsi-ld/v1/info/sourceIdentity (clause 5.15.1, HTTP binding 6.33.3.1; data type 5.2.40)."""

from __future__ import annotations

import re

from tests.conftest import Api, new_id
from tests.integration.helpers import CORE_V19, body_of, thing

INFO = "/ngsi-ld/v1/info/sourceIdentity"
DURATION = re.compile(r"^P\d+DT\d+H\d+M\d+S$")


async def test_the_source_identity_names_the_broker_its_uptime_and_time(api: Api) -> None:
    """Table 5.2.40-1: id, type, contextSourceAlias, contextSourceUptime, contextSourceTimeAt (all 1)."""
    response = await api.request("GET", INFO)
    body = await body_of(response)
    assert response.status == 200, body
    assert body["type"] == "ContextSourceIdentity"
    assert body["id"].startswith("urn:ngsi-ld:ContextSourceIdentity:")
    assert body["contextSourceAlias"]
    assert DURATION.match(body["contextSourceUptime"]), body
    assert body["contextSourceTimeAt"].endswith("Z")
    assert body["contextSourceExtras"]["ngsiLdVersion"] == "1.9.1"
    assert CORE_V19 in response.headers["Link"]


async def test_the_alias_identifies_the_tenant_and_the_id_the_broker(api: Api) -> None:
    """Table 5.2.40-1: in the multi-tenancy case the alias identifies a tenant of the source."""
    mine = await body_of(await api.request("GET", INFO))
    default = await body_of(await api.client.get(INFO))
    assert mine["contextSourceAlias"] != default["contextSourceAlias"]
    assert mine["id"] == default["id"]


async def test_with_accept_ld_json_the_identity_carries_the_core_context(api: Api) -> None:
    response = await api.request("GET", INFO, headers={"Accept": "application/ld+json"})
    assert (await body_of(response))["@context"] == CORE_V19


async def test_geojson_answers_carry_the_context_member(api: Api) -> None:
    """Clause 4.5.16 (GeoJSON representation): the Feature and the FeatureCollection carry @context."""
    entity_id = new_id("Gauge")
    gauge = thing(
        entity_id,
        "Gauge",
        location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.0, 34.3]}},
    )
    assert (await api.create(gauge)).status == 201
    geo = {"Accept": "application/geo+json"}
    feature = await body_of(await api.get(entity_id, headers=geo))
    assert feature["type"] == "Feature"
    assert feature["@context"] == CORE_V19
    response = await api.request("GET", "/ngsi-ld/v1/entities", params={"type": "Gauge"}, headers=geo)
    collection = await body_of(response)
    assert collection["type"] == "FeatureCollection"
    assert collection["@context"] == CORE_V19
