"""Issue 11, device side: one bad device message is its own dead letter and never stops ingestion.

Against the session's broker (real PostgreSQL, real Mosquitto, the aiohttp server): a message the
edge refuses (nested deeper than NGSI_MAX_JSON_DEPTH), or whose data the database refuses (a NUL
in a string), is answered 400 over HTTP (ETSI GS CIM 009 V1.9.1 clause 5.5.2, ProblemDetails of
type BadRequestData), kept as a dead letter with the reason, acknowledged over MQTT, and the next
message of the device is stored (clause 5.6.3, Append Entity Attributes, is what it becomes).
"""

from __future__ import annotations

import base64
import copy
import secrets
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from adapters.wiring import MQTT
from tests.conftest import Api, database_url, eventually
from tests.integration.test_device_ingest import (
    SDM_ENVIRONMENT,
    SDM_TRANSPORTATION,
    dev_eui,
    entity_when,
    flood_id,
    gauge,
    mqtt_send,
    provision,
    tts_message,
    uplink,
)

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def nested(depth: int) -> bytes:
    """{"x": [[[ ... 1 ... ]]]}: ``depth`` levels of arrays and objects (orjson writes at most 255)."""
    return b'{"x": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


async def sensor(api: Api, *devices: str) -> tuple[str, list[str]]:
    """Provision IoT Agent JSON sensors (default: 's1') under one new apikey; (apikey, entity ids)."""
    apikey = f"fault{secrets.token_hex(4)}"
    ids = [f"urn:ngsi-ld:Sensor:{secrets.token_hex(4)}" for _ in devices or ("s1",)]
    await provision(
        api,
        *(
            {"device_id": device, "entity_name": entity_id, "entity_type": "Sensor", "apikey": apikey}
            for device, entity_id in zip(devices or ("s1",), ids, strict=True)
        ),
        groups=[{"apikey": apikey, "entity_type": "Sensor", "resource": "/iot/json"}],
    )
    return apikey, ids


async def letters_of(origin: str) -> list[dict[str, Any]]:
    """The dead letters of the messages that arrived on ``origin`` (any tenant)."""
    conn = await asyncpg.connect(database_url())
    try:
        rows = await conn.fetch(
            "SELECT tenant, device, reason, raw FROM dead_letters WHERE origin = $1 ORDER BY id", origin
        )
    finally:
        await conn.close()
    return [dict(row) for row in rows]


async def refused(response: Any, detail_part: str) -> None:
    body = await response.json(content_type=None)
    assert response.status == 400, body
    assert body["type"] == ERRORS + "BadRequestData", body
    assert detail_part in body["detail"], body


# --------------------------------------------------------------------------- defect 1: nesting depth


async def test_a_body_nested_300_deep_over_http_is_a_dead_letter_and_the_next_message_is_stored(
    api: Api,
) -> None:
    """Issue 11 defect 1 (HTTP): the storing task ended on orjson's recursion error."""
    apikey, (entity_id,) = await sensor(api)
    path = f"/iot/json?k={apikey}&i=s1"

    await refused(await api.request("POST", path, raw=nested(300)), "deeper than 64 levels")

    response = await api.request("POST", path, {"n": 1})
    assert response.status == 200, await response.text()
    entity = await entity_when(api, entity_id, within=0.5)
    assert entity["n"]["value"] == 1
    (letter,) = await letters_of(path)
    assert letter["tenant"] == api.tenant  # read before its parser: the device is in the origin
    assert "NGSI_MAX_JSON_DEPTH" in letter["reason"]


async def test_a_deep_body_for_an_unknown_device_is_refused_and_ingestion_goes_on(api: Api) -> None:
    """Issue 11 defect 1 as reported: any key, any id; the dead letter's redaction met the depth."""
    apikey, (entity_id,) = await sensor(api)
    path = f"/iot/json?k=nokey{secrets.token_hex(4)}&i=nobody"

    await refused(await api.request("POST", path, raw=nested(300)), "deeper than")

    (letter,) = await letters_of(path)
    assert "deeper than" in letter["reason"]
    response = await api.request("POST", f"/iot/json?k={apikey}&i=s1", {"n": 2})
    assert response.status == 200, await response.text()
    assert (await entity_when(api, entity_id, within=0.5))["n"]["value"] == 2


async def test_a_body_at_the_depth_limit_is_stored(api: Api) -> None:
    apikey, (entity_id,) = await sensor(api)

    body = b'{"n": 3, "deep": ' + nested(63) + b"}"
    response = await api.request("POST", f"/iot/json?k={apikey}&i=s1", raw=body)

    assert response.status == 200, await response.text()
    assert (await entity_when(api, entity_id, within=0.5))["n"]["value"] == 3


async def test_a_deep_mqtt_message_is_dead_lettered_and_acknowledged_and_the_next_one_stored(
    api: Api, client: TestClient[Any, Any]
) -> None:
    """Issue 11 defect 1 (MQTT): the poison message was never acknowledged, so redelivered forever."""
    apikey, (entity_id,) = await sensor(api)
    topic = f"/json/{apikey}/s1/attrs"
    ingest = client.app[MQTT]
    acknowledged = ingest.acknowledged

    await mqtt_send(topic, nested(300))
    await mqtt_send(topic, b'{"n": 4}')

    assert (await entity_when(api, entity_id))["n"]["value"] == 4
    await eventually(lambda: ingest.acknowledged >= acknowledged + 2, what="both messages acknowledged")
    (letter,) = await letters_of(topic)
    assert "deeper than 64 levels" in letter["reason"]


# ------------------------------------------------------------------ data the database refuses


async def test_a_string_with_a_nul_is_dead_lettered_not_retried_and_the_next_message_is_stored(
    api: Api,
) -> None:
    """Issue 11: jsonb refuses U+0000; the pipeline took that for an outage and retried forever."""
    apikey, (entity_id,) = await sensor(api)
    path = f"/iot/json?k={apikey}&i=s1"

    response = await api.request("POST", path, raw=b'{"label": "a\\u0000b"}', content_type="application/json")

    await refused(response, "cannot store")
    response = await api.request("POST", path, {"n": 5})
    assert response.status == 200, await response.text()
    entity = await entity_when(api, entity_id, within=0.5)
    assert entity["n"]["value"] == 5
    assert "label" not in entity
    (letter,) = await letters_of(path)
    assert "cannot store" in letter["reason"]
    assert letter["device"] == "s1"


async def test_a_nul_message_among_good_ones_over_mqtt_fails_alone(api: Api) -> None:
    """A batch of one tenant is one transaction: the refused message is split out, the rest stored."""
    apikey, (entity_id, other_entity) = await sensor(api, "s1", "s2")
    topic = f"/json/{apikey}/s1/attrs"

    await mqtt_send(topic, b'{"n": 6}')
    await mqtt_send(topic, b'{"label": "x\\u0000"}')
    await mqtt_send(f"/json/{apikey}/s2/attrs", b'{"n": 7}')
    await mqtt_send(topic, b'{"m": 8}')

    entity = await entity_when(api, entity_id, lambda e: "m" in e)
    assert (entity["n"]["value"], entity["m"]["value"]) == (6, 8)
    assert "label" not in entity
    assert (await entity_when(api, other_entity))["n"]["value"] == 7
    (letter,) = await letters_of(topic)
    assert "cannot store" in letter["reason"]


# ------------------------------------------------- defect 3: LoRaWAN redelivery keys (webhooks)


async def verdicts(api: Api, path: str, bodies: list[dict[str, Any]]) -> list[str]:
    """POST each body in turn to webhook ``path``; the pipeline's verdict of each."""
    statuses = []
    for body in bodies:
        response = await api.request("POST", path, body)
        assert response.status == 200, await response.text()
        statuses.append((await response.json())["status"])
    return statuses


async def test_tts_webhook_uplinks_under_a_field_mask_are_each_stored_and_a_redelivery_is_a_duplicate(
    api: Api,
) -> None:
    """Issue 11 defect 3: no f_cnt, no correlation ids, no received_at gave every uplink the key "0"."""
    eui, entity_id = dev_eui(), flood_id()
    device_id = f"wl-{eui[:6]}"
    await provision(api, gauge(eui, entity_id))

    def masked(level: float) -> dict[str, Any]:
        full = tts_message(eui, device_id, level, f_cnt=0)
        return {
            "end_device_ids": full["end_device_ids"],
            "uplink_message": {"decoded_payload": full["uplink_message"]["decoded_payload"]},
        }

    statuses = await verdicts(api, "/adapters/tts", [masked(-1.5), masked(-1.4), masked(-1.4), masked(-1.3)])

    assert statuses == ["accepted", "accepted", "duplicate", "accepted"]
    entity = await entity_when(api, entity_id, context=SDM_ENVIRONMENT, within=0.5)
    assert entity["currentLevel"]["value"] == pytest.approx(0.7)


async def test_a_tts_counter_reset_after_a_rejoin_is_stored_and_a_redelivery_after_it_is_a_duplicate(
    api: Api,
) -> None:
    eui, entity_id = dev_eui(), flood_id()
    device_id = f"wl-{eui[:6]}"
    await provision(api, gauge(eui, entity_id))
    bodies = []
    for f_cnt, received in ((41, "2025-09-01T01:00:03.205Z"), (1, "2025-09-01T01:20:00.100Z")):
        body = tts_message(eui, device_id, -1.0 + f_cnt / 100, f_cnt=f_cnt)
        del body["correlation_ids"]
        body["uplink_message"]["received_at"] = received
        bodies.append(body)
    # After the rejoin the device counts 1 again: the same counter as an uplink of its first session.
    old_one = copy.deepcopy(bodies[1])
    old_one["uplink_message"]["received_at"] = "2025-08-30T09:00:00.000Z"

    statuses = await verdicts(api, "/adapters/tts", [old_one, bodies[0], bodies[1], bodies[1]])

    assert statuses == ["accepted", "accepted", "accepted", "duplicate"]


async def test_chirpstack_uplinks_without_deduplication_id_are_each_stored_and_a_redelivery_is_a_duplicate(
    api: Api,
) -> None:
    eui = dev_eui()
    entity_id = f"urn:ngsi-ld:Vehicle:plow-{eui[:6]}"
    await provision(
        api,
        {
            "device_id": f"plow-{eui[:6]}",
            "dev_eui": eui,
            "entity_name": entity_id,
            "entity_type": "Vehicle",
            "protocol": "chirpstack",
            "model": "Vehicle",
            "model_params": {"speedMeasure": "analog_in_2"},
        },
    )
    bodies = []
    for n, (f_cnt, at) in enumerate(((1, "21:40:20.512Z"), (2, "21:40:40.300Z"), (1, "23:00:00.000Z"))):
        body = uplink("chirpstack_v4_uplink_snowplow.json")["message"]
        del body["deduplicationId"]
        body["deviceInfo"]["devEui"] = eui
        body["fCnt"] = f_cnt
        body["time"] = f"2025-01-15T{at}"
        body["object"]["analogInput"]["2"] = 10.0 + n
        bodies.append(body)

    # The third uplink is the first after a rejoin: it counts 1 again.
    statuses = await verdicts(api, "/adapters/chirpstack?event=up", [*bodies, bodies[1]])

    assert statuses == ["accepted", "accepted", "accepted", "duplicate"]
    vehicle = await entity_when(api, entity_id, context=SDM_TRANSPORTATION, within=0.5)
    assert vehicle["speed"]["value"] == pytest.approx(12.0)


# ------------------------------------------- nesting inside a payload the network encoded


async def test_a_json_payload_decoded_from_base64_is_held_to_the_depth_limit_too(api: Api) -> None:
    """The JSON codec reads frm_payload, which the edge saw only as base64 text."""
    eui = dev_eui()
    device_id = f"js-{eui[:6]}"
    entity_id = f"urn:ngsi-ld:Sensor:{secrets.token_hex(4)}"
    await provision(
        api,
        {
            "device_id": device_id,
            "dev_eui": eui,
            "entity_name": entity_id,
            "entity_type": "Sensor",
            "protocol": "tts",
            "codec": "json",
        },
    )

    def uplink_of(payload: bytes, f_cnt: int) -> dict[str, Any]:
        body = tts_message(eui, device_id, 0.0, f_cnt=f_cnt)
        del body["uplink_message"]["decoded_payload"]
        body["uplink_message"]["frm_payload"] = base64.b64encode(payload).decode()
        return body

    await refused(await api.request("POST", "/adapters/tts", uplink_of(nested(100), 1)), "decoded payload")
    response = await api.request("POST", "/adapters/tts", uplink_of(b'{"n": 9}', 2))
    assert response.status == 200, await response.text()
    assert (await entity_when(api, entity_id, within=0.5))["n"]["value"] == 9
