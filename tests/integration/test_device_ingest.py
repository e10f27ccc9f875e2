"""Device messages end to end: real Mosquitto publishes and HTTP webhooks in, NGSI-LD entities out.

Each test provisions its devices through the IoT Agent API in a fresh tenant, sends the
reference samples (tests/fixtures/uplinks) with ids of its own, and reads the result through the
NGSI-LD API, the dead-letter API and the database.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import secrets
from typing import Any

import asyncpg
import orjson
import paho.mqtt.publish as publish
import pytest

from adapters.codecs import cayenne
from adapters.store import commands as commands_store
from tests.conftest import Api, database_url, eventually, fixture_json
from tests.integration.test_delivery import MQTT_HOST, MQTT_PORT, MqttListener, Receiver, serving

pytestmark = pytest.mark.asyncio

ENTITY = "/ngsi-ld/v1/entities/"
SDM_ENVIRONMENT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"
)
SDM_TRANSPORTATION = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld"
)
SDM_DEVICE = "https://raw.githubusercontent.com/smart-data-models/dataModel.Device/master/context.jsonld"


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


def uplink(name: str) -> dict[str, Any]:
    return copy.deepcopy(fixture_json(f"uplinks/{name}"))


async def mqtt_send(topic: str, payload: bytes | str) -> None:
    """Publish with QoS 1 and wait for Mosquitto's PUBACK."""
    await asyncio.to_thread(publish.single, topic, payload, qos=1, hostname=MQTT_HOST, port=MQTT_PORT)


async def provision(api: Api, *devices: dict[str, Any], groups: list[dict[str, Any]] | None = None) -> None:
    headers = {"fiware-service": api.tenant, "fiware-servicepath": "/"}
    if groups:
        response = await api.request("POST", "/iot/services", {"services": groups}, headers=headers)
        assert response.status == 201, await response.text()
    if devices:
        response = await api.request("POST", "/iot/devices", {"devices": list(devices)}, headers=headers)
        assert response.status == 201, await response.text()


async def entity_when(
    api: Api, entity_id: str, ready: Any = None, *, context: str | None = None, within: float = 10.0
) -> dict[str, Any]:
    """GET the entity until it exists and ``ready(entity)`` holds."""
    headers = link(context) if context else None

    async def check() -> dict[str, Any]:
        response = await api.get(entity_id, headers=headers)
        if response.status != 200:
            return {}
        entity: dict[str, Any] = await response.json(content_type=None)
        return entity if ready is None or ready(entity) else {}

    return await eventually(check, within=within, what=f"entity {entity_id} as expected")


async def dead_letters(api: Api, *, at_least: int = 1, within: float = 10.0) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]]:
        response = await api.request("GET", "/admin/deadletters", headers={"fiware-service": api.tenant})
        if response.status != 200:
            return []
        letters: list[dict[str, Any]] = await response.json(content_type=None)
        return letters if len(letters) >= at_least else []

    return await eventually(check, within=within, what=f"at least {at_least} dead letters")


def dev_eui() -> str:
    return secrets.token_hex(8)


def gauge(eui: str, entity_id: str, **params: Any) -> dict[str, Any]:
    """A TTS water-level gauge reporting its level in mm relative to the bank top on analog_in_1."""
    model_params = {
        "levelMode": "bankRelative",
        "levelMeasure": "analog_in_1",
        "bankHeight": 2.0,
        "referenceLevel": 4.2,
        "alertLevel": 1.4,
        "dangerLevel": 2.0,
        "floodModeMeasure": "digital_in_3",
        "location": {"type": "Point", "coordinates": [134.0631, 34.3335]},
    }
    model_params.update(params)
    return {
        "device_id": f"wl-{eui[:6]}",
        "dev_eui": eui,
        "entity_name": entity_id,
        "entity_type": "FloodMonitoring",
        "protocol": "tts",
        "codec": None,
        "model": "FloodMonitoring",
        "model_params": model_params,
    }


def tts_message(eui: str, device_id: str, level: float, *, f_cnt: int, flood: int = 0) -> dict[str, Any]:
    sample = uplink("tts_v3_uplink_waterlevel.json")["message"]
    sample["end_device_ids"]["dev_eui"] = eui.upper()
    sample["end_device_ids"]["device_id"] = device_id
    measures = {"analog_in_1": level, "analog_in_2": 3.61, "digital_in_3": flood}
    sample["uplink_message"]["decoded_payload"] = measures
    sample["uplink_message"]["frm_payload"] = base64.b64encode(cayenne.encode(measures)).decode()
    sample["uplink_message"]["f_cnt"] = f_cnt
    return sample  # type: ignore[no-any-return]


def tts_topic(device_id: str) -> str:
    return f"v3/takamatsu-flood@ttn/devices/{device_id}/up"


def flood_id() -> str:
    return f"urn:ngsi-ld:FloodMonitoring:{secrets.token_hex(5)}"


# ---------------------------------------------------------------------------- The Things Stack


async def test_a_tts_uplink_over_mqtt_becomes_a_flood_monitoring_entity_with_units_and_observed_at(
    api: Api,
) -> None:
    eui, entity_id = dev_eui(), flood_id()
    await provision(api, gauge(eui, entity_id))
    await mqtt_send(
        tts_topic(f"wl-{eui[:6]}"), orjson.dumps(tts_message(eui, f"wl-{eui[:6]}", -1.23, f_cnt=7))
    )

    entity = await entity_when(api, entity_id, context=SDM_ENVIRONMENT)

    assert entity["type"] == "FloodMonitoring"
    assert entity["currentLevel"]["value"] == pytest.approx(0.77)  # bank 2.0 m + (-1.23 m)
    assert entity["currentLevel"]["unitCode"] == "MTR"
    assert entity["currentLevel"]["observedAt"] == "2025-09-01T01:00:03.205Z"
    assert entity["measuredDistance"]["value"] == pytest.approx(3.43)  # reference 4.2 - 0.77
    assert entity["floodLevelStatus"]["value"] == "Normal"
    assert entity["location"]["value"]["coordinates"] == [134.0631, 34.3335]


async def test_a_tts_webhook_post_is_stored_like_the_mqtt_uplink_and_answers_after_the_commit(
    api: Api,
) -> None:
    eui, entity_id = dev_eui(), flood_id()
    device_id = f"wl-{eui[:6]}"
    await provision(api, gauge(eui, entity_id))

    response = await api.request("POST", "/adapters/tts", tts_message(eui, device_id, 0.1, f_cnt=1, flood=1))

    assert response.status == 200, await response.text()
    entity = await entity_when(api, entity_id, context=SDM_ENVIRONMENT, within=0.5)
    assert entity["currentLevel"]["value"] == pytest.approx(2.1)
    assert entity["floodLevelStatus"]["value"] == "Danger"


async def test_a_subscription_on_the_danger_level_fires_for_a_device_message(api: Api) -> None:
    eui, entity_id = dev_eui(), flood_id()
    device_id = f"wl-{eui[:6]}"
    await provision(api, gauge(eui, entity_id))
    async with serving() as receiver:
        await subscribe_danger(api, receiver)
        await mqtt_send(tts_topic(device_id), orjson.dumps(tts_message(eui, device_id, -1.5, f_cnt=1)))
        await mqtt_send(tts_topic(device_id), orjson.dumps(tts_message(eui, device_id, 0.25, f_cnt=2)))
        notes = await receiver.wait("flood", 1, within=10)

    data = notes[0].body["data"][0]
    assert data["id"] == entity_id
    assert data["currentLevel"]["value"] == pytest.approx(2.25)
    assert len(receiver.at("flood")) == 1  # the first reading (0.5 m) is below the danger level


async def test_a_sigfox_gauge_past_its_danger_level_notifies_the_subscriber(api: Api) -> None:
    sigfox_id = secrets.token_hex(3).upper()
    entity_id = flood_id()
    await provision(api, sigfox_gauge(sigfox_id, entity_id))
    body = {**uplink("sigfox_uplink_callback_waterlevel.json")["example_body"], "device": sigfox_id}
    async with serving() as receiver:
        await subscribe_danger(api, receiver)
        # +250 mm above the bank top: 2.25 m, past the danger level of 2.0 m
        response = await api.request("POST", "/adapters/sigfox/uplink", {**body, "data": "00fa0e1a01"})
        assert response.status == 200, await response.text()
        notes = await receiver.wait("flood", 1, within=10)

    assert notes[0].body["data"][0]["id"] == entity_id
    assert notes[0].body["data"][0]["currentLevel"]["value"] == pytest.approx(2.25)


async def subscribe_danger(api: Api, receiver: Receiver) -> None:
    subscription = {
        "type": "Subscription",
        "entities": [{"type": "FloodMonitoring"}],
        "watchedAttributes": ["currentLevel"],
        "q": "currentLevel>2.0",
        "notification": {"attributes": ["currentLevel"], "endpoint": {"uri": receiver.url("flood")}},
    }
    response = await api.request(
        "POST", "/ngsi-ld/v1/subscriptions", subscription, headers=link(SDM_ENVIRONMENT)
    )
    assert response.status == 201, await response.text()


async def test_a_redelivered_frame_changes_nothing_the_second_time(api: Api) -> None:
    eui, entity_id = dev_eui(), flood_id()
    device_id = f"wl-{eui[:6]}"
    await provision(api, gauge(eui, entity_id))
    first = orjson.dumps(tts_message(eui, device_id, -1.0, f_cnt=41))
    response = await api.request("POST", "/adapters/tts", raw=first)
    assert response.status == 200
    stored = await api.get_json(entity_id, params={"options": "sysAttrs"})

    again = await api.request("POST", "/adapters/tts", raw=first)

    assert again.status == 200
    assert (await again.json())["status"] == "duplicate"
    after = await api.get_json(entity_id, params={"options": "sysAttrs"})
    assert after["modifiedAt"] == stored["modifiedAt"]


# ---------------------------------------------------------------------------------- ChirpStack


async def test_a_chirpstack_uplink_over_mqtt_becomes_a_vehicle_with_speed_in_kmh(api: Api) -> None:
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
    message = uplink("chirpstack_v4_uplink_snowplow.json")["message"]
    message["deviceInfo"]["devEui"] = eui
    topic = f"application/{message['deviceInfo']['applicationId']}/device/{eui}/event/up"

    await mqtt_send(topic, orjson.dumps(message))

    vehicle = await entity_when(api, entity_id, context=SDM_TRANSPORTATION)
    assert vehicle["location"]["value"]["coordinates"][:2] == [139.9298, 37.4947]
    assert vehicle["speed"]["value"] == pytest.approx(12.5)
    assert vehicle["speed"]["unitCode"] == "KMH"
    assert vehicle["vehicleType"]["value"] == "constructionOrMaintenanceVehicle"
    assert vehicle["location"]["observedAt"] == "2025-01-15T21:40:20.512345Z"


# ------------------------------------------------------------------------------------- Sigfox


def sigfox_gauge(sigfox_id: str, entity_id: str) -> dict[str, Any]:
    """A Sigfox gauge sending i16 level in mm relative to the bank top, u16 battery mV, a flood-mode bit."""
    device = gauge("0" * 16, entity_id, levelMeasure="level", levelScale=0.001, floodModeMeasure="flood")
    device.pop("dev_eui")
    device.update(
        device_id=sigfox_id,
        protocol="sigfox",
        codec="layout",
        layout=[
            {"name": "level", "offset": 0, "length": 2, "signed": True},
            {"name": "battery_mv", "offset": 2, "length": 2},
            {"name": "flood", "offset": 4, "length": 1, "bits": [0, 1]},
        ],
    )
    return device


async def test_a_sigfox_callback_decodes_its_declared_layout_into_a_gauge_reading(api: Api) -> None:
    sigfox_id = secrets.token_hex(3).upper()
    entity_id = flood_id()
    await provision(api, sigfox_gauge(sigfox_id, entity_id))
    body = uplink("sigfox_uplink_callback_waterlevel.json")["example_body"]
    body["device"] = sigfox_id

    response = await api.request("POST", "/adapters/sigfox/uplink", body)

    assert response.status == 200, await response.text()
    entity = await entity_when(api, entity_id, context=SDM_ENVIRONMENT)
    assert entity["currentLevel"]["value"] == pytest.approx(2.0 - 1.23)  # fb32 = -1230 mm
    assert entity["currentLevel"]["observedAt"] == "2025-09-01T01:00:00Z"
    assert entity["observationMode"]["value"] == "flood"


# --------------------------------------------------------------------------- IoT Agent JSON / UL


async def test_iot_agent_json_over_mqtt_and_http_maps_object_ids_to_attributes(api: Api) -> None:
    apikey = f"key{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Thermometer:{secrets.token_hex(4)}"
    await provision(
        api,
        {
            "device_id": "th01",
            "entity_name": entity_id,
            "entity_type": "Thermometer",
            "attributes": [{"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"}],
        },
        groups=[{"apikey": apikey, "entity_type": "Thermometer", "resource": "/iot/json"}],
    )

    await mqtt_send(f"/json/{apikey}/th01/attrs", b'{"t": 21.5, "TimeInstant": "2025-10-03T15:41:12+09:00"}')
    entity = await entity_when(api, entity_id)
    assert entity["temperature"]["value"] == 21.5
    assert entity["temperature"]["unitCode"] == "CEL"
    assert entity["temperature"]["observedAt"] == "2025-10-03T06:41:12Z"

    response = await api.request("POST", f"/iot/json?k={apikey}&i=th01", {"t": 22.0})
    assert response.status == 200, await response.text()
    entity = await entity_when(api, entity_id, lambda e: e["temperature"]["value"] == 22.0, within=0.5)


async def test_ultralight_over_mqtt_and_http_reaches_the_entity(api: Api) -> None:
    apikey = f"ul{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Room:{secrets.token_hex(4)}"
    await provision(
        api,
        {"device_id": "r1", "entity_name": entity_id, "entity_type": "Room", "protocol": "iota-ul"},
        groups=[{"apikey": apikey, "entity_type": "Room", "resource": "/iot/d"}],
    )

    await mqtt_send(f"/ul/{apikey}/r1/attrs", "t|15|h|45")
    entity = await entity_when(api, entity_id)
    assert (entity["t"]["value"], entity["h"]["value"]) == (15, 45)

    response = await api.request("POST", f"/iot/d?k={apikey}&i=r1", raw=b"t|16", content_type="text/plain")
    assert response.status == 200, await response.text()
    await entity_when(api, entity_id, lambda e: e["t"]["value"] == 16, within=0.5)


async def test_an_autoprovisioning_group_creates_the_device_on_its_first_message(api: Api) -> None:
    apikey = f"auto{secrets.token_hex(4)}"
    await provision(api, groups=[{"apikey": apikey, "entity_type": "Sensor", "resource": "/iot/json"}])

    response = await api.request("POST", f"/iot/json?k={apikey}&i=s77", {"x": 1})

    assert response.status == 200, await response.text()
    entity = await entity_when(api, "urn:ngsi-ld:Sensor:s77", within=0.5)
    assert entity["x"]["value"] == 1


# ---------------------------------------------------------------------------------- watch-tags


async def test_ble_sightings_become_tag_devices_by_pseudonym_and_no_raw_tag_id_is_stored(api: Api) -> None:
    apikey = f"tags{secrets.token_hex(4)}"
    sample = uplink("ble_detection_mqtt.json")
    detector = sample["detector_static"]
    await provision_detector(api, apikey, detector)
    raw_tags = [s["tag"] for s in sample["message"]]

    await mqtt_send(f"/json/{apikey}/{detector['detectorId']}/attrs", orjson.dumps(sample["message"]))

    tags = await query_until(api, "Device", lambda found: len([e for e in found if "tag-" in e["id"]]) == 2)
    for entity in tags:
        assert entity["location"]["value"] == detector["location"]
    for raw in raw_tags:
        assert await rows_mentioning(api.tenant, raw) == 0


async def rows_mentioning(tenant: str, text: str) -> int:
    """Rows of the tenant's entities and dead letters that contain ``text`` anywhere."""
    conn = await asyncpg.connect(database_url())
    try:
        pattern = f"%{text}%"
        entities = await conn.fetchval(
            "SELECT count(*) FROM entities WHERE tenant = $1 AND (id LIKE $2 OR attrs::text LIKE $2)",
            tenant,
            pattern,
        )
        letters = await conn.fetchval(
            "SELECT count(*) FROM dead_letters WHERE tenant = $1 AND position($2::bytea IN raw) > 0",
            tenant,
            text.encode(),
        )
    finally:
        await conn.close()
    return int(entities) + int(letters)


async def provision_detector(api: Api, apikey: str, detector: dict[str, Any]) -> None:
    """A fixed BLE detector (the sample's) in an IoT Agent JSON group of its own."""
    await provision(
        api,
        {
            "device_id": detector["detectorId"],
            "entity_type": "Device",
            "model": "BeaconDetector",
            "model_params": {"location": detector["location"]},
        },
        groups=[{"apikey": apikey, "entity_type": "Device", "resource": "/iot/json"}],
    )


async def query_until(api: Api, kind: str, ready: Any, within: float = 10.0) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]]:
        response = await api.request(
            "GET", "/ngsi-ld/v1/entities", params={"type": kind, "limit": "100"}, headers=link(SDM_DEVICE)
        )
        if response.status != 200:
            return []
        found: list[dict[str, Any]] = await response.json(content_type=None)
        return found if ready(found) else []

    return await eventually(check, within=within, what=f"entities of type {kind} as expected")


# ----------------------------------------------------------------------------------- bad input


async def assert_dead_lettered(api: Api, reason_part: str, *, origin_part: str = "") -> dict[str, Any]:
    letters = await dead_letters(api)
    match = [x for x in letters if reason_part in x["reason"] and origin_part in x["origin"]]
    assert match, [x["reason"] for x in letters]
    return match[0]


async def send_bad_tts(api: Api, change: Any) -> tuple[str, str]:
    """Provision a gauge (CayenneLPP codec), publish its uplink altered by ``change``; (device, entity)."""
    eui, entity_id = dev_eui(), flood_id()
    device_id = f"wl-{eui[:6]}"
    await provision(api, {**gauge(eui, entity_id), "codec": "cayennelpp"})
    message = tts_message(eui, device_id, -1.0, f_cnt=3)
    change(message["uplink_message"])
    await mqtt_send(tts_topic(device_id), orjson.dumps(message))
    return device_id, entity_id


async def test_a_truncated_cayenne_frame_is_a_dead_letter_of_its_device_and_changes_nothing(api: Api) -> None:
    def truncate(uplink: dict[str, Any]) -> None:
        uplink.pop("decoded_payload")
        uplink["frm_payload"] = "AQL/"

    device_id, entity_id = await send_bad_tts(api, truncate)

    letter = await assert_dead_lettered(api, "truncated")
    assert letter["device"] == device_id
    assert (await api.get(entity_id)).status == 404


async def test_a_level_that_is_not_a_number_is_a_dead_letter_and_changes_nothing(api: Api) -> None:
    device_id, entity_id = await send_bad_tts(
        api, lambda u: u.update(decoded_payload={"analog_in_1": "high"})
    )

    letter = await assert_dead_lettered(api, "analog_in_1")
    assert letter["device"] == device_id
    assert (await api.get(entity_id)).status == 404


async def test_a_non_json_uplink_is_a_dead_letter_with_the_parser_reason(api: Api) -> None:
    topic = tts_topic(f"wl-{secrets.token_hex(3)}")

    await mqtt_send(topic, b"{not json")

    letters = await wait_letters_anywhere(topic)
    assert "not JSON" in letters[0]["reason"]


async def wait_letters_anywhere(origin: str, within: float = 10.0) -> list[dict[str, Any]]:
    """Dead letters of an unknown tenant ('' : the message could not be read far enough to say)."""

    async def check() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url())
        try:
            rows = await conn.fetch("SELECT reason, tenant FROM dead_letters WHERE origin = $1", origin)
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    return await eventually(check, within=within, what=f"a dead letter for {origin}")


async def test_an_unknown_apikey_is_refused_over_http_with_the_reason_and_kept_as_a_dead_letter(
    api: Api,
) -> None:
    response = await api.request(
        "POST", "/iot/json?k=nosuchkey&i=d1", {"t": 1}, headers={"fiware-service": api.tenant}
    )

    body = await response.json(content_type=None)
    assert response.status == 400
    assert "unknown device" in body["detail"]
    letter = await assert_dead_lettered(api, "unknown device")
    assert letter["origin"] == "/iot/json?k=nosuchkey&i=d1"


async def test_null_coordinates_from_a_tracker_are_refused_and_the_vehicle_keeps_its_position(
    api: Api,
) -> None:
    apikey = f"gps{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Vehicle:{secrets.token_hex(4)}"
    await provision(
        api,
        {"device_id": "p1", "entity_name": entity_id, "entity_type": "Vehicle", "model": "Vehicle"},
        groups=[{"apikey": apikey, "entity_type": "Vehicle", "resource": "/iot/json"}],
    )
    good = {"location": {"type": "Point", "coordinates": [139.93, 37.49]}, "speed": 20}
    assert (await api.request("POST", f"/iot/json?k={apikey}&i=p1", good)).status == 200

    bad = {"location": {"type": "Point", "coordinates": [None, None]}, "speed": 25}
    response = await api.request("POST", f"/iot/json?k={apikey}&i=p1", bad)

    assert response.status == 400
    await assert_dead_lettered(api, "coordinates")
    vehicle = await api.get_json(entity_id, headers=link(SDM_TRANSPORTATION))
    assert vehicle["location"]["value"]["coordinates"] == [139.93, 37.49]
    assert vehicle["speed"]["value"] == 20


async def test_an_oversized_message_is_a_dead_letter_and_the_adapter_keeps_running(api: Api) -> None:
    apikey = f"big{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Sensor:{secrets.token_hex(4)}"
    await provision(
        api,
        {"device_id": "b1", "entity_name": entity_id, "entity_type": "Sensor"},
        groups=[{"apikey": apikey, "entity_type": "Sensor", "resource": "/iot/json"}],
    )
    huge = orjson.dumps({"blob": "x" * 70_000})

    await mqtt_send(f"/json/{apikey}/b1/attrs", huge)
    await mqtt_send(f"/json/{apikey}/b1/attrs", b'{"n": 1}')

    entity = await entity_when(api, entity_id)
    assert entity["n"]["value"] == 1
    assert "blob" not in entity
    letters = await wait_letters_anywhere(f"/json/{apikey}/b1/attrs")
    assert "bytes" in letters[0]["reason"]


async def test_a_dead_letter_replayed_after_the_device_is_provisioned_is_stored(api: Api) -> None:
    apikey = f"late{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Sensor:{secrets.token_hex(4)}"
    headers = {"fiware-service": api.tenant}
    response = await api.request("POST", f"/iot/json?k={apikey}&i=late1", {"v": 5}, headers=headers)
    assert response.status == 400
    letter = await assert_dead_lettered(api, "unknown device")

    await provision(
        api,
        {"device_id": "late1", "entity_name": entity_id, "entity_type": "Sensor"},
        groups=[{"apikey": apikey, "entity_type": "Sensor", "resource": "/iot/json", "autoprovision": False}],
    )
    replay = await api.request("POST", f"/admin/deadletters/{letter['id']}/replay", headers=headers)

    assert replay.status == 200, await replay.text()
    assert (await replay.json())["result"] == "accepted"
    entity = await entity_when(api, entity_id, within=1.0)
    assert entity["v"]["value"] == 5


# ------------------------------------------------------------------------------------ commands


async def test_a_patched_command_reaches_the_device_and_its_reply_completes_it(api: Api) -> None:
    apikey = f"cmd{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Gauge:{secrets.token_hex(4)}"
    await provision(
        api,
        {
            "device_id": "g1",
            "entity_name": entity_id,
            "entity_type": "Gauge",
            "commands": [{"name": "switchMode", "type": "command"}],
        },
        groups=[{"apikey": apikey, "entity_type": "Gauge", "resource": "/iot/json"}],
    )
    assert (await api.request("POST", f"/iot/json?k={apikey}&i=g1", {"level": 0.4})).status == 200
    born = await api.get_json(entity_id)
    assert born["switchMode"]["value"] == ""

    async with MqttListener(f"/{apikey}/g1/cmd") as device:
        response = await api.request(
            "PATCH", f"{ENTITY}{entity_id}/attrs/switchMode", {"type": "Property", "value": "flood"}
        )
        assert response.status == 204, await response.text()
        received = await device.wait(1, within=10)

    assert orjson.loads(received[0].payload) == {"switchMode": "flood"}
    await entity_when(api, entity_id, lambda e: e.get("switchMode_status", {}).get("value") == "SENT")

    await mqtt_send(f"/json/{apikey}/g1/cmdexe", b'{"switchMode": "flood mode on"}')

    done = await entity_when(api, entity_id, lambda e: e.get("switchMode_status", {}).get("value") == "OK")
    assert done["switchMode_info"]["value"] == "flood mode on"
    assert await command_states(api.tenant, "g1") == ["OK"]


async def test_a_sigfox_command_waits_for_the_next_bidir_callback_and_rides_its_reply(api: Api) -> None:
    sigfox_id = secrets.token_hex(3).upper()
    entity_id = f"urn:ngsi-ld:Gauge:{secrets.token_hex(4)}"
    await provision(
        api,
        {
            "device_id": sigfox_id,
            "entity_name": entity_id,
            "entity_type": "Gauge",
            "protocol": "sigfox",
            "codec": "layout",
            "layout": [{"name": "level", "offset": 0, "length": 2, "signed": True}],
            "commands": [{"name": "interval", "type": "command"}],
        },
    )
    body = {**uplink("sigfox_uplink_callback_waterlevel.json")["example_body"], "device": sigfox_id}
    first = await api.request("POST", "/adapters/sigfox/uplink", {**body, "ack": True})
    assert first.status == 204  # BIDIR, nothing queued
    response = await api.request(
        "PATCH", f"{ENTITY}{entity_id}/attrs/interval", {"type": "Property", "value": "0102025800000000"}
    )
    assert response.status == 204

    reply = await api.request("POST", "/adapters/sigfox/uplink", {**body, "seqNumber": 2212, "ack": True})

    assert reply.status == 200
    assert await reply.json() == {sigfox_id: {"downlinkData": "0102025800000000"}}
    assert await command_states(api.tenant, sigfox_id) == ["SENT"]


async def command_states(tenant: str, device_id: str) -> list[str]:
    conn = await asyncpg.connect(database_url())
    try:
        rows = await conn.fetch(
            "SELECT status FROM device_commands WHERE tenant = $1 AND device_id = $2 ORDER BY id",
            tenant,
            device_id,
        )
    finally:
        await conn.close()
    return [row["status"] for row in rows]


async def test_a_refused_sighting_batch_is_kept_without_tag_ids_and_is_not_replayed(api: Api) -> None:
    apikey = f"tagsbad{secrets.token_hex(4)}"
    sample = uplink("ble_detection_mqtt.json")
    detector = sample["detector_static"]
    await provision_detector(api, apikey, detector)
    sightings = [{**s, "ts": "not a time"} for s in sample["message"]]
    headers = {"fiware-service": api.tenant}

    response = await api.request("POST", f"/iot/json?k={apikey}&i={detector['detectorId']}", sightings)

    assert response.status == 400
    letter = await assert_dead_lettered(api, "ts")
    for raw in (s["tag"] for s in sample["message"]):
        assert await rows_mentioning(api.tenant, raw) == 0
    replay = await api.request("POST", f"/admin/deadletters/{letter['id']}/replay", headers=headers)
    assert (await replay.json())["result"].startswith("not replayable")


async def test_device_messages_sent_while_every_database_connection_is_cut_are_all_stored_once(
    api: Api,
) -> None:
    eui, entity_id = dev_eui(), flood_id()
    device_id = f"wl-{eui[:6]}"
    await provision(api, gauge(eui, entity_id))
    bodies = [orjson.dumps(tts_message(eui, device_id, -2.0 + n / 1000, f_cnt=n)) for n in range(1, 201)]

    async def cut_connections() -> int:
        """Terminate every other connection to the database once some messages are stored; how many were stored then."""
        conn = await asyncpg.connect(database_url())
        try:
            stored = 0
            while stored == 0:
                await asyncio.sleep(0.005)
                stored = await frames_stored(conn)
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()"
            )
            return stored
        finally:
            await conn.close()

    async def frames_stored(conn: asyncpg.Connection) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM device_frames WHERE tenant = $1 AND device = $2", api.tenant, device_id
            )
        )

    sends = [api.request("POST", "/adapters/tts", raw=body) for body in bodies]
    cut = asyncio.ensure_future(cut_connections())
    responses = await asyncio.gather(*sends)
    stored_at_cut = await cut

    assert [r.status for r in responses] == [200] * 200
    conn = await asyncpg.connect(database_url())
    try:
        assert await frames_stored(conn) == 200
    finally:
        await conn.close()
    assert stored_at_cut < 200, "the connections were cut after everything was stored: nothing was shown"


async def test_a_bidir_callback_waits_for_the_dispatchers_lock_instead_of_missing_the_command(
    api: Api,
) -> None:
    # The dispatcher's claim locks every PENDING command for a moment, Sigfox ones too (it leaves
    # them for the reply); a callback arriving then skipped the row and answered without it.
    sigfox_id = secrets.token_hex(3).upper()
    entity_id = f"urn:ngsi-ld:Gauge:{secrets.token_hex(4)}"
    await provision(
        api,
        {
            "device_id": sigfox_id,
            "entity_name": entity_id,
            "entity_type": "Gauge",
            "protocol": "sigfox",
            "commands": [{"name": "interval", "type": "command"}],
        },
    )
    holder = await asyncpg.connect(database_url())
    claimer = await asyncpg.connect(database_url())
    try:
        await commands_store.queue(
            holder, api.tenant, [commands_store.NewCommand(sigfox_id, entity_id, "interval", '"0102"')]
        )
        lock = holder.transaction()
        await lock.start()
        # As the dispatcher's claim does (it waits here if the dispatcher itself holds the row).
        await holder.execute(
            "SELECT id FROM device_commands WHERE tenant = $1 AND device_id = $2 FOR UPDATE",
            api.tenant,
            sigfox_id,
        )
        claiming = asyncio.ensure_future(commands_store.claim_for_device(claimer, api.tenant, sigfox_id))
        waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"
        await eventually(lambda: holder.fetchval(waiting, claimer.get_server_pid()), what="the claim waiting")
        await lock.commit()
        claimed = await claiming
        assert claimed is not None
        assert claimed.command == "interval"  # (a plain connection reads the value as JSON text)
    finally:
        await holder.close()
        await claimer.close()
