"""Endpoint secrets shown as *** and kept when sent back (broker.notify.redact, issue 12 item 7)."""

from __future__ import annotations

import pytest

from broker.notify.redact import redact_body, redact_uri, restore_body, secret_name


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("mqtt://plow:s3cret@mq.example:1883/city/plows", "mqtt://plow:***@mq.example:1883/city/plows"),
        ("https://app.example/hook?token=abc&x=1", "https://app.example/hook?token=***&x=1"),
        ("https://app.example/hook?apikey=abc", "https://app.example/hook?apikey=***"),
        ("https://user@app.example/hook", "https://user@app.example/hook"),  # no password
        ("http://app.example/hook?page=2", "http://app.example/hook?page=2"),
    ],
)
def test_an_endpoint_uri_is_shown_without_its_secrets(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


@pytest.mark.parametrize(
    "name",
    ["Authorization", "X-Auth-Token", "token", "MQTT-Password", "apikey", "X-Api-Key", "Cookie", "key"],
)
def test_credential_names_are_recognised(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize("name", ["MQTT-QoS", "MQTT-Version", "Accept-Language", "fiware-service", "monkey"])
def test_other_names_are_shown(name: str) -> None:
    assert not secret_name(name)


STORED = {
    "id": "urn:ngsi-ld:Subscription:s",
    "notification": {
        "format": "keyValues",
        "endpoint": {
            "uri": "mqtt://plow:s3cret@mq.example/t",
            "receiverInfo": [
                {"key": "Authorization", "value": "Bearer xyz"},
                {"key": "X-Town", "value": "K"},
            ],
            "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}, {"key": "MQTT-Token", "value": "t0k"}],
        },
    },
}


def test_a_subscription_body_is_shown_redacted_and_the_stored_one_is_untouched() -> None:
    shown = redact_body(STORED)
    endpoint = shown["notification"]["endpoint"]
    assert endpoint["uri"] == "mqtt://plow:***@mq.example/t"
    assert endpoint["receiverInfo"] == [
        {"key": "Authorization", "value": "***"},
        {"key": "X-Town", "value": "K"},
    ]
    assert endpoint["notifierInfo"] == [
        {"key": "MQTT-QoS", "value": "1"},
        {"key": "MQTT-Token", "value": "***"},
    ]
    assert shown["notification"]["format"] == "keyValues"
    assert STORED["notification"]["endpoint"]["uri"] == "mqtt://plow:s3cret@mq.example/t"  # type: ignore[index]


def test_what_get_showed_sent_back_keeps_the_stored_secrets() -> None:
    assert restore_body(redact_body(STORED), STORED) == STORED


def test_a_new_secret_replaces_the_stored_one() -> None:
    sent = redact_body(STORED)
    sent["notification"]["endpoint"]["uri"] = "mqtt://plow:n3w@mq.example/t"
    sent["notification"]["endpoint"]["receiverInfo"][0]["value"] = "Bearer new"
    restored = restore_body(sent, STORED)["notification"]["endpoint"]
    assert restored["uri"] == "mqtt://plow:n3w@mq.example/t"
    assert restored["receiverInfo"][0] == {"key": "Authorization", "value": "Bearer new"}
    assert restored["notifierInfo"][1] == {"key": "MQTT-Token", "value": "t0k"}
