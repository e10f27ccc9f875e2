"""adapters.topics: the MQTT topic filters of NGSI_MQTT_FAMILIES and NGSI_MQTT_TOPIC_PREFIX."""

from __future__ import annotations

from datetime import UTC, datetime

from paho.mqtt.client import topic_matches_sub

from adapters import iotagent, lorawan
from adapters.message import IOTA_JSON, IOTA_UL, TTS
from adapters.pipeline import Inbound
from adapters.topics import Topics, with_prefix
from adapters.wiring import parse

AT = datetime(2026, 12, 4, tzinfo=UTC)


def test_every_family_by_default_gives_the_usual_topics() -> None:
    topics = Topics(("json", "ul", "tts", "chirpstack"))
    assert set(topics.filters) == {*iotagent.TOPICS, *lorawan.TTS_TOPICS, *lorawan.CHIRPSTACK_TOPICS}
    assert topics.usual_topic("/json/k/d/attrs") == "/json/k/d/attrs"


def test_a_family_left_out_is_not_subscribed_and_the_legacy_topics_go_with_the_last_iot_agent_one() -> None:
    lpwa = Topics(("tts", "chirpstack"))
    assert set(lpwa.filters) == {*lorawan.TTS_TOPICS, *lorawan.CHIRPSTACK_TOPICS}
    ul = Topics(("ul",))
    assert set(ul.filters) == {*iotagent.UL_TOPICS, *iotagent.LEGACY_TOPICS}
    assert ul.consumes(IOTA_UL)
    assert not ul.consumes(IOTA_JSON)
    assert not ul.consumes(TTS)
    assert Topics(()).filters == ()


def test_a_prefix_goes_in_front_of_every_topic_and_comes_off_on_receipt() -> None:
    topics = Topics(("json", "ul", "tts", "chirpstack"), "city/hub1")
    assert "city/hub1/json/+/+/attrs" in topics.filters
    assert "city/hub1/v3/+/devices/+/up" in topics.filters
    assert "city/hub1/+/+/attrs" in topics.filters
    assert all(f.startswith("city/hub1/") and "//" not in f for f in topics.filters)
    for usual in (
        "/json/k/d/attrs",
        "/k/d/attrs/t",
        "v3/app@ttn/devices/d/up",
        "application/1/device/e/event/up",
    ):
        received = with_prefix("city/hub1", usual)
        assert any(topic_matches_sub(f, received) for f in topics.filters), received
        assert topics.usual_topic(received) == usual


def test_under_a_prefix_the_legacy_topic_of_an_apikey_named_v3_stays_an_iot_agent_topic() -> None:
    topics = Topics(("json", "tts"), "hub1")
    assert topics.usual_topic("hub1/v3/dev/attrs") == "/v3/dev/attrs"
    assert topics.usual_topic("hub1/v3/app/devices/dev/up") == "v3/app/devices/dev/up"
    # TTS off: a v3 topic under the prefix can only be an IoT Agent one.
    assert Topics(("json",), "hub1").usual_topic("hub1/v3/app/devices/dev/up") == "/v3/app/devices/dev/up"


def test_a_legacy_topic_message_of_a_family_switched_off_is_ignored_on_mqtt_only() -> None:
    json_body = Inbound(IOTA_JSON, "/k/d/attrs", b'{"t": 1}', AT, mqtt=True)
    ul_body = Inbound(IOTA_JSON, "/k/d/attrs", b"t|1", AT, mqtt=True)
    assert parse(json_body, mqtt_families={IOTA_UL}) is None
    message = parse(ul_body, mqtt_families={IOTA_UL})
    assert message is not None
    assert message.family == IOTA_UL
    # Not from MQTT (HTTP, a replay): the switches are about MQTT ingest only.
    replayed = Inbound(IOTA_JSON, "/k/d/attrs", b'{"t": 1}', AT)
    assert parse(replayed, mqtt_families={IOTA_UL}) is not None
