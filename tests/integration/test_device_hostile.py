"""Issue 11: after each hostile device message, the next valid one is stored (no stuck pipeline).

Fuzz-style and reproducible (a fixed seed, a bounded table): for every southbound family, over
HTTP and MQTT, hostile bodies (nesting 300 and 2,000 deep, NUL escapes, 1e300 and 2^80, wrong
types, lone surrogates, invalid UTF-8, empty and oversize bodies), whole or put in place of a
member of a valid message, each followed by a valid message. A hostile message is answered
below 500 (400 with ProblemDetails, ETSI GS CIM 009 V1.9.1 clause 5.5.2, when refused), changes
nothing when refused, and the valid message after it is stored (clause 5.6.3).
"""

from __future__ import annotations

import itertools
import random
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from tests.conftest import Api, eventually, fixture_json
from tests.integration.test_device_ingest import dev_eui, mqtt_send, provision

SEED = 11
_MARK = b'"__hostile__"'
_COUNTER = itertools.count(1)

# Whole bodies and JSON fragments a hostile or broken gateway sends.
FRAGMENTS: tuple[bytes, ...] = (
    b"[" * 300 + b"1" + b"]" * 300,
    b"[" * 2000 + b"]" * 2000,
    b'{"a": ' * 100 + b"1" + b"}" * 100,
    b'"a\\u0000b"',
    b'{"k\\u0000": 1}',
    b"1e300",
    b"-1e400",
    b"1" + b"0" * 30,
    b'"\\ud800"',
    b'"\xf0\x9f\x8c\x8a \xe6\xb0\xb4\xe4\xbd\x8d"',
    b"null",
    b"[]",
    b"{}",
    b"true",
    b'"x"',
)
RAW: tuple[bytes, ...] = (b"", b"\xff\xfe\x00", b"{", b"x" * 70_000, b"|||", b"#|#")


@dataclass
class Family:
    """One southbound family: where its messages go and how a valid one of value ``n`` reads."""

    name: str
    valid: Callable[[int], bytes]
    http: str | None = None
    topic: str | None = None


def hostile_versions(valid: bytes, rng: random.Random) -> Iterator[bytes]:
    """The raw hostile bodies, each fragment whole, and each put in place of one member of ``valid``."""
    yield from RAW
    document = orjson.loads(valid)
    paths = list(_paths(document))
    for fragment in FRAGMENTS:
        yield fragment
        path = rng.choice(paths)
        yield orjson.dumps(_replaced(document, path)).replace(_MARK, fragment)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _replaced(node: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return "__hostile__"
    head, *rest = path
    if isinstance(node, dict):
        return {k: _replaced(v, tuple(rest)) if k == head else v for k, v in node.items()}
    return [_replaced(v, tuple(rest)) if i == head else v for i, v in enumerate(node)]


async def families(api: Api) -> tuple[list[Family], dict[str, str]]:
    """Provision one device per family in the api's tenant; the families and their entity ids."""
    key, ul_key = f"hj{secrets.token_hex(4)}", f"hu{secrets.token_hex(4)}"
    tts_eui, cs_eui, sigfox_id = dev_eui(), dev_eui(), secrets.token_hex(3).upper()
    tts_device = f"tts-{tts_eui[:6]}"
    ids = {
        name: f"urn:ngsi-ld:Sensor:{name}-{secrets.token_hex(3)}"
        for name in ("json", "ul", "tts", "cs", "sf")
    }
    await provision(
        api,
        {"device_id": "j1", "entity_name": ids["json"], "entity_type": "Sensor", "apikey": key},
        {
            "device_id": "u1",
            "entity_name": ids["ul"],
            "entity_type": "Sensor",
            "apikey": ul_key,
            "protocol": "iota-ul",
        },
        {
            "device_id": tts_device,
            "dev_eui": tts_eui,
            "entity_name": ids["tts"],
            "entity_type": "Sensor",
            "protocol": "tts",
        },
        {
            "device_id": f"cs-{cs_eui[:6]}",
            "dev_eui": cs_eui,
            "entity_name": ids["cs"],
            "entity_type": "Sensor",
            "protocol": "chirpstack",
        },
        {
            "device_id": sigfox_id,
            "entity_name": ids["sf"],
            "entity_type": "Sensor",
            "protocol": "sigfox",
            "codec": "layout",
            "layout": [{"name": "n", "offset": 0, "length": 2}],
        },
        groups=[
            {"apikey": key, "entity_type": "Sensor", "resource": "/iot/json"},
            {"apikey": ul_key, "entity_type": "Sensor", "resource": "/iot/d"},
        ],
    )
    tts_sample = fixture_json("uplinks/tts_v3_uplink_waterlevel.json")["message"]
    cs_sample = fixture_json("uplinks/chirpstack_v4_uplink_snowplow.json")["message"]
    sigfox_sample = fixture_json("uplinks/sigfox_uplink_callback_waterlevel.json")["example_body"]

    def tts(n: int) -> bytes:
        body = dict(tts_sample)
        body["end_device_ids"] = {**tts_sample["end_device_ids"], "device_id": tts_device, "dev_eui": tts_eui}
        body["correlation_ids"] = [f"as:up:{uuid.uuid4().hex}"]
        uplink = {k: v for k, v in tts_sample["uplink_message"].items() if k != "frm_payload"}
        body["uplink_message"] = {**uplink, "f_cnt": next(_COUNTER), "decoded_payload": {"n": n}}
        return orjson.dumps(body)

    def chirpstack(n: int) -> bytes:
        body = {k: v for k, v in cs_sample.items() if k != "data"}
        body["deviceInfo"] = {**cs_sample["deviceInfo"], "devEui": cs_eui}
        body.update(deduplicationId=str(uuid.uuid4()), fCnt=next(_COUNTER), object={"n": n})
        return orjson.dumps(body)

    def sigfox(n: int) -> bytes:
        return orjson.dumps(
            {**sigfox_sample, "device": sigfox_id, "data": f"{n:04x}", "seqNumber": next(_COUNTER)}
        )

    cs_topic = f"application/{cs_sample['deviceInfo']['applicationId']}/device/{cs_eui}/event/up"
    return [
        Family("json", lambda n: orjson.dumps({"n": n}), f"/iot/json?k={key}&i=j1", f"/json/{key}/j1/attrs"),
        Family("ul", lambda n: f"n|{n}".encode(), f"/iot/d?k={ul_key}&i=u1", f"/ul/{ul_key}/u1/attrs"),
        Family("tts", tts, "/adapters/tts", f"v3/app@ttn/devices/{tts_device}/up"),
        Family("cs", chirpstack, "/adapters/chirpstack?event=up", cs_topic),
        Family("sf", sigfox, "/adapters/sigfox/uplink"),
    ], ids


async def value_of(api: Api, entity_id: str) -> Any:
    response = await api.get(entity_id)
    if response.status != 200:
        return None
    return (await response.json())["n"]["value"]


async def test_after_each_hostile_http_message_the_next_valid_one_is_stored(api: Api) -> None:
    rng = random.Random(SEED)
    kinds, ids = await families(api)
    value = 100
    for family in kinds:
        assert family.http is not None
        valid = family.valid(1)
        for hostile in hostile_versions(valid if family.name != "ul" else b'{"n": 1}', rng):
            before = await value_of(api, ids[family.name])
            response = await api.request("POST", family.http, raw=hostile, content_type="application/json")
            assert response.status < 500, (family.name, hostile[:80], await response.text())
            if response.status == 400:
                assert await value_of(api, ids[family.name]) == before, (family.name, hostile[:80])
            value += 1
            response = await api.request(
                "POST", family.http, raw=family.valid(value), content_type="application/json"
            )
            assert response.status == 200, (family.name, hostile[:80], await response.text())
            assert await value_of(api, ids[family.name]) == value, (family.name, hostile[:80])


async def test_after_each_hostile_mqtt_message_the_next_valid_one_is_stored(api: Api) -> None:
    rng = random.Random(SEED + 1)
    kinds, ids = await families(api)
    value = 100
    for family in kinds:
        if family.topic is None:
            continue
        for hostile in hostile_versions(family.valid(1) if family.name != "ul" else b'{"n": 1}', rng):
            value += 1
            await mqtt_send(family.topic, hostile)
            await mqtt_send(family.topic, family.valid(value))
            stored = partial(_has, api, ids[family.name], value)
            await eventually(stored, what=f"{family.name} after {hostile[:60]!r}")


async def _has(api: Api, entity_id: str, value: int) -> bool:
    stored: Any = await value_of(api, entity_id)
    return bool(stored == value)


def test_a_member_replaced_by_a_fragment_keeps_the_rest_of_the_message() -> None:
    valid = orjson.dumps({"a": {"b": 1}, "c": 2})
    replaced = list(hostile_versions(valid, random.Random(0)))[len(RAW) + 1 :: 2]
    assert len(replaced) == len(FRAGMENTS)
    assert all(version.startswith(b'{"a":') for version in replaced)
