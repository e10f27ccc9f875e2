"""Hypothesis strategies for hostile device messages, one channel per endpoint and topic family (issue 11).

A channel is one way a device message enters: an HTTP southbound path or an MQTT topic family
(adapters/http.py, adapters/iotagent.py TOPICS, adapters/lorawan.py TTS_TOPICS/CHIRPSTACK_TOPICS).
``provision`` gives every channel a device of its own in one tenant; each channel then knows a
valid message of value ``n`` for its device (the message sent after each hostile one, which must
be stored) and a strategy of hostile messages: the valid message mutated (fuzz_inputs.mutated),
a body that is no message at all, UltraLight text built from its own separators, a form with odd
fields, or an odd topic level or query parameter (attribute name, device id, time).
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from hypothesis import strategies as st

from tests.conftest import Api, fixture_json
from tests.integration.fuzz_inputs import RAW_BODIES, hostile, keys, values
from tests.integration.test_device_ingest import dev_eui, provision

HTTP, MQTT = "http", "mqtt"
JSON, FORM, TEXT = "application/json", "application/x-www-form-urlencoded", "text/plain"
_COUNTER = itertools.count(1)


@dataclass(frozen=True)
class Message:
    """Where a message goes (path with query, or topic), its body and its content type."""

    where: str
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Channel:
    """One entrance: its transport, the entity its device writes, its valid and hostile messages."""

    name: str
    transport: str
    entity_id: str
    valid: Callable[[int], Message]
    hostile: st.SearchStrategy[Message]


# --- bodies that are not a valid message of any family ----------------------------------------------

_UL_TOKENS = st.one_of(
    st.sampled_from(["|", "|", "#", "@", ",", "=", ";", "\n", "\x00", " ", "n", "t", "TimeInstant", "ping"]),
    st.sampled_from(["1", "-1", "1e400", "9" * 30, "nan", "inf", "0x1f", "2026-11-22T01:00:00+09:00"]),
    st.text(max_size=4),
)
# UltraLight 2.0 text from its own separators, odd values and stray bytes.
ultralight: st.SearchStrategy[bytes] = st.one_of(
    st.lists(_UL_TOKENS, max_size=14).map(lambda parts: "".join(parts).encode()),
    st.binary(max_size=40),
    st.sampled_from([*RAW_BODIES, b"n|" + b"9" * 70_000, b"|" * 5000, b"#" * 5000, b"\xc3\x28|1"]),
)
# A name where a topic level goes: MQTT forbids NUL and Mosquitto control characters and
# non-characters in a topic (it drops the connection), and + # / would change the topic itself.
_level = st.one_of(
    st.sampled_from(["", "id", "type", "@context", "@id", "location", "TimeInstant", "n_status", "x" * 300]),
    st.text(
        st.characters(exclude_characters="/+#\ufffe\uffff", exclude_categories=["Cs", "Cc", "Co", "Cn"]),
        max_size=12,
    ),
)
# What a gateway may put in the tenant and service-path headers (HTTP allows no NUL or newline).
_header = st.one_of(
    st.sampled_from(["", " ", "x" * 200, "../..", "/", "//", "/a/b/", "/*", "a b", "-x", "Tenant", "水位"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
)
_headers = st.lists(
    st.tuples(st.sampled_from(["fiware-service", "fiware-servicepath", "NGSILD-Tenant"]), _header),
    min_size=1,
    max_size=3,
).map(tuple)
_time = st.one_of(
    st.sampled_from(["", "x", "2026-13-45T00:00:00Z", "1e400", "-1", "99999999999999", "\x00", "P1D"]),
    st.text(max_size=10),
)


def _form(fields: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """A form of ``fields`` with odd values, members added or dropped, or broken escapes."""
    odd_values = st.dictionaries(st.sampled_from(sorted(fields)), st.text(max_size=12), max_size=3)
    extra = st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2)

    def build(changes: tuple[dict[str, str], dict[str, str], list[str]]) -> bytes:
        odd, more, dropped = changes
        form = {k: str(v) for k, v in fields.items() if k not in dropped} | odd | more
        return urlencode(form).encode()

    dropped = st.lists(st.sampled_from(sorted(fields)), max_size=2)
    broken = st.sampled_from([b"%zz", b"device=%", b"a=b&&=c", b"&", b"=", b"device=\xff&data=00", b"==&=="])
    return st.one_of(st.tuples(odd_values, extra, dropped).map(build), broken)


# --- the channels ---------------------------------------------------------------------------------


async def provision_channels(api: Api) -> dict[str, Channel]:
    """Provision one device per channel family in the api's tenant; the channels by name."""
    key, ul_key = f"fj{secrets.token_hex(4)}", f"fu{secrets.token_hex(4)}"
    tts_eui, cs_eui, sigfox_id = dev_eui(), dev_eui(), secrets.token_hex(3).upper()
    tts_device = f"tts-{tts_eui[:6]}"
    ids = {
        name: f"urn:ngsi-ld:Sensor:fuzz-{name}-{secrets.token_hex(3)}" for name in ("j", "u", "t", "c", "s")
    }
    commands = [{"name": "ping", "type": "command"}]
    await provision(
        api,
        {
            "device_id": "j1",
            "entity_name": ids["j"],
            "entity_type": "Sensor",
            "apikey": key,
            "commands": commands,
        },
        {
            "device_id": "u1",
            "entity_name": ids["u"],
            "entity_type": "Sensor",
            "apikey": ul_key,
            "protocol": "iota-ul",
            "commands": commands,
        },
        {
            "device_id": tts_device,
            "dev_eui": tts_eui,
            "entity_name": ids["t"],
            "entity_type": "Sensor",
            "protocol": "tts",
        },
        {
            "device_id": f"cs-{cs_eui[:6]}",
            "dev_eui": cs_eui,
            "entity_name": ids["c"],
            "entity_type": "Sensor",
            "protocol": "chirpstack",
        },
        {
            "device_id": sigfox_id,
            "entity_name": ids["s"],
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

    def tts(n: int) -> dict[str, Any]:
        body = dict(tts_sample)
        body["end_device_ids"] = {**tts_sample["end_device_ids"], "device_id": tts_device, "dev_eui": tts_eui}
        body["correlation_ids"] = [f"as:up:{uuid.uuid4().hex}"]
        uplink = {k: v for k, v in tts_sample["uplink_message"].items() if k != "frm_payload"}
        body["uplink_message"] = {**uplink, "f_cnt": next(_COUNTER), "decoded_payload": {"n": n}}
        return body

    def chirpstack(n: int) -> dict[str, Any]:
        body = {k: v for k, v in cs_sample.items() if k != "data"}
        body["deviceInfo"] = {**cs_sample["deviceInfo"], "devEui": cs_eui}
        body.update(deduplicationId=str(uuid.uuid4()), fCnt=next(_COUNTER), object={"n": n})
        return body

    def sigfox(n: int) -> dict[str, Any]:
        return {**sigfox_sample, "device": sigfox_id, "data": f"{n:04x}", "seqNumber": next(_COUNTER)}

    def json_measures(n: int) -> dict[str, Any]:
        return {"n": n, "t": 21.5, "TimeInstant": "2026-11-22T01:00:00+09:00", "label": "水位"}

    json_http, ul_http = f"/iot/json?k={key}&i=j1", f"/iot/d?k={ul_key}&i=u1"
    json_topic, ul_topic = f"/json/{key}/j1", f"/ul/{ul_key}/u1"
    cs_app = cs_sample["deviceInfo"]["applicationId"]
    cs_topic = f"application/{cs_app}/device/{cs_eui}/event/up"
    tts_topic = f"v3/app@ttn/devices/{tts_device}/up"

    def json_valid(where: str) -> Callable[[int], Message]:
        return lambda n: Message(where, orjson.dumps({"n": n}))

    def ul_valid(where: str) -> Callable[[int], Message]:
        return lambda n: Message(where, f"n|{n}".encode(), TEXT)

    def as_json(where: str, make: Callable[[int], Any]) -> Callable[[int], Message]:
        return lambda n: Message(where, orjson.dumps(make(n)))

    def bodies(
        where: str, strategy: st.SearchStrategy[bytes], kind: str = JSON
    ) -> st.SearchStrategy[Message]:
        return strategy.map(lambda body: Message(where, body, kind))

    def mutations(where: str, make: Callable[[int], Any]) -> st.SearchStrategy[Message]:
        # Built afresh for each example, so its redelivery key (f_cnt, deduplicationId) is new.
        return st.builds(make, st.integers(1, 60000)).flatmap(hostile).map(lambda body: Message(where, body))

    json_http_hostile = st.one_of(
        mutations(json_http, json_measures),
        mutations(json_http, lambda n: [json_measures(n), {"n": n + 1}]),
        st.tuples(_time, st.sampled_from([key, "", "nokey"]), _level).map(
            lambda t: Message(f"/iot/json?k={quote(t[1])}&i={quote(t[2])}&t={quote(t[0])}", b'{"n": 1}')
        ),
        _headers.map(lambda headers: Message(json_http, b'{"n": 1}', JSON, headers)),
    )
    channels = [
        Channel("iota-json http", HTTP, ids["j"], json_valid(json_http), json_http_hostile),
        Channel(
            "iota-json http command result",
            HTTP,
            ids["j"],
            json_valid(json_http),
            st.one_of(
                mutations(f"/iot/json/commands?k={key}&i=j1", lambda _: {"ping": "pong"}),
                bodies(
                    f"/iot/json/commands?k={key}&i=j1",
                    st.dictionaries(keys, values, max_size=3).map(orjson.dumps),
                ),
            ),
        ),
        Channel(
            "iota-ul http",
            HTTP,
            ids["u"],
            ul_valid(ul_http),
            st.one_of(
                bodies(ul_http, ultralight, TEXT),
                st.tuples(_time, ultralight).map(
                    lambda t: Message(f"/iot/d?k={ul_key}&i=u1&t={quote(t[0])}", t[1], TEXT)
                ),
                bodies(
                    ul_http,
                    st.lists(_UL_TOKENS, max_size=6).map(lambda p: ("u1@ping|" + "".join(p)).encode()),
                    TEXT,
                ),
            ),
        ),
        Channel(
            "tts http",
            HTTP,
            ids["t"],
            as_json("/adapters/tts", tts),
            st.one_of(
                mutations("/adapters/tts", tts),
                st.tuples(_headers, st.builds(tts, st.integers(1, 60000))).map(
                    lambda t: Message("/adapters/tts", orjson.dumps(t[1]), JSON, t[0])
                ),
            ),
        ),
        Channel(
            "chirpstack http",
            HTTP,
            ids["c"],
            as_json("/adapters/chirpstack?event=up", chirpstack),
            mutations("/adapters/chirpstack?event=up", chirpstack),
        ),
        Channel(
            "sigfox http json",
            HTTP,
            ids["s"],
            as_json("/adapters/sigfox/uplink", sigfox),
            mutations("/adapters/sigfox/uplink", sigfox),
        ),
        Channel(
            "sigfox http form",
            HTTP,
            ids["s"],
            lambda n: Message(
                "/adapters/sigfox/uplink", urlencode({**sigfox(n), "ack": "false"}).encode(), FORM
            ),
            st.builds(sigfox, st.integers(1, 60000))
            .flatmap(_form)
            .map(lambda body: Message("/adapters/sigfox/uplink", body, FORM)),
        ),
        Channel(
            "iota-json mqtt attrs",
            MQTT,
            ids["j"],
            json_valid(json_topic + "/attrs"),
            st.one_of(
                mutations(json_topic + "/attrs", json_measures),
                st.tuples(_level, ultralight).map(lambda t: Message(f"/json/{key}/{t[0]}/attrs", t[1])),
            ),
        ),
        Channel(
            "iota-json mqtt attrs/<attr>",
            MQTT,
            ids["j"],
            json_valid(json_topic + "/attrs"),
            st.tuples(_level, st.one_of(values.map(orjson.dumps), ultralight)).map(
                lambda t: Message(f"{json_topic}/attrs/{t[0]}", t[1])
            ),
        ),
        Channel(
            "iota-json mqtt cmdexe",
            MQTT,
            ids["j"],
            json_valid(json_topic + "/attrs"),
            st.one_of(
                mutations(json_topic + "/cmdexe", lambda _: {"ping": "pong"}),
                bodies(json_topic + "/cmdexe", ultralight),
            ),
        ),
        Channel(
            "iota-json mqtt legacy attrs",
            MQTT,
            ids["j"],
            json_valid(f"/{key}/j1/attrs"),
            st.one_of(mutations(f"/{key}/j1/attrs", json_measures), bodies(f"/{key}/j1/attrs", ultralight)),
        ),
        Channel(
            "iota-ul mqtt attrs",
            MQTT,
            ids["u"],
            ul_valid(ul_topic + "/attrs"),
            st.one_of(
                bodies(ul_topic + "/attrs", ultralight, TEXT),
                st.tuples(_level, ultralight).map(lambda t: Message(f"{ul_topic}/attrs/{t[0]}", t[1], TEXT)),
            ),
        ),
        Channel(
            "iota-ul mqtt cmdexe",
            MQTT,
            ids["u"],
            ul_valid(ul_topic + "/attrs"),
            bodies(
                ul_topic + "/cmdexe",
                st.one_of(
                    ultralight,
                    st.lists(_UL_TOKENS, max_size=6).map(lambda p: ("u1@ping|" + "".join(p)).encode()),
                ),
                TEXT,
            ),
        ),
        Channel(
            "tts mqtt up",
            MQTT,
            ids["t"],
            as_json(tts_topic, tts),
            st.one_of(
                mutations(tts_topic, tts),
                st.tuples(_level, st.builds(tts, st.integers(1, 60000))).map(
                    lambda t: Message(f"v3/{t[0]}/devices/{tts_device}/up", orjson.dumps(t[1]))
                ),
            ),
        ),
        Channel(
            "chirpstack mqtt event/up",
            MQTT,
            ids["c"],
            as_json(cs_topic, chirpstack),
            st.one_of(
                mutations(cs_topic, chirpstack),
                mutations(
                    f"application/{cs_app}/device/{cs_eui}/event/status", lambda _: {"batteryLevel": 80}
                ),
                st.tuples(_level, st.builds(chirpstack, st.integers(1, 60000))).map(
                    lambda t: Message(f"application/{cs_app}/device/{t[0]}/event/up", orjson.dumps(t[1]))
                ),
            ),
        ),
    ]
    return {channel.name: channel for channel in channels}


# --- the provisioning API (IoT Agent /iot/services and /iot/devices) ------------------------------


def group_body(apikey: str) -> dict[str, Any]:
    return {
        "apikey": apikey,
        "resource": "/iot/json",
        "entity_type": "Sensor",
        "entityNameExp": "'urn:ngsi-ld:Sensor:' + service + '-' + id",
        "autoprovision": True,
        "attributes": [
            {
                "object_id": "d",
                "name": "distance",
                "type": "Number",
                "metadata": {"unitCode": {"type": "Text", "value": "MTR"}},
            }
        ],
        "static_attributes": [{"name": "location", "type": "geo:point", "value": "34.34, 134.04"}],
        "commands": [{"name": "ping", "type": "command"}],
        "model": "FloodMonitoring",
        "model_params": {"referenceLevel": 3.2, "alertLevel": 2.0},
    }


def device_body(device_id: str) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "entity_name": f"urn:ngsi-ld:Sensor:{device_id}",
        "entity_type": "Sensor",
        "protocol": "sigfox",
        "codec": "layout",
        "layout": [
            {"name": "level", "offset": 0, "length": 2, "signed": True},
            {"name": "f", "offset": 2, "length": 1, "bits": [0, 1]},
        ],
        "attributes": [{"object_id": "level", "name": "level", "type": "Number"}],
        "commands": [{"name": "interval", "type": "command"}],
        "health": True,
    }


@dataclass(frozen=True)
class Provisioning:
    """One provisioning operation taking a body; ``valid(fresh, existing)`` builds a valid one."""

    name: str
    method: str
    path: str  # may name {apikey} (the existing group's) and {device} (the existing device)
    valid: Callable[[str, str], Any]


PROVISIONING: tuple[Provisioning, ...] = (
    Provisioning(
        "create groups", "POST", "/iot/services", lambda fresh, _: {"services": [group_body(fresh)]}
    ),
    Provisioning(
        "create groups (groups alias)",
        "POST",
        "/iot/groups",
        lambda fresh, _: {"groups": [group_body(fresh)]},
    ),
    Provisioning(
        "update group",
        "PUT",
        "/iot/services?resource=/iot/json&apikey={apikey}",
        lambda *_: {
            "entity_type": "Vehicle",
            "attributes": [{"object_id": "s", "name": "speed", "type": "Number"}],
        },
    ),
    Provisioning(
        "create devices", "POST", "/iot/devices", lambda fresh, _: {"devices": [device_body(fresh[:8])]}
    ),
    Provisioning(
        "update device",
        "PUT",
        "/iot/devices/{device}",
        lambda *_: {"entity_type": "Sensor", "layout": [{"name": "n", "offset": 0, "length": 1}]},
    ),
)


CHANNELS = (
    "iota-json http",
    "iota-json http command result",
    "iota-ul http",
    "tts http",
    "chirpstack http",
    "sigfox http json",
    "sigfox http form",
    "iota-json mqtt attrs",
    "iota-json mqtt attrs/<attr>",
    "iota-json mqtt cmdexe",
    "iota-json mqtt legacy attrs",
    "iota-ul mqtt attrs",
    "iota-ul mqtt cmdexe",
    "tts mqtt up",
    "chirpstack mqtt event/up",
)
__all__ = [
    "CHANNELS",
    "HTTP",
    "MQTT",
    "PROVISIONING",
    "Channel",
    "Message",
    "Provisioning",
    "provision_channels",
]
