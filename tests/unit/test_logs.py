"""Log lines (issue 15 item 3): JSON or plain, one line per event, request id and tenant, no secrets."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from broker import logs
from broker.config import load

API_KEY = "ngsk_0123456789abcdef_Zm9vYmFyYmF6cXV4c2VjcmV0LXNlY3JldA"
SECRETS = {
    "database password": ("cannot connect to postgresql://ngsi:hunter2pw@db:5432/ngsi", "hunter2pw"),
    "mqtt password": ("MQTT mqtt://gateway:mqttpass99@10.0.0.5:1883 lost", "mqttpass99"),
    "api key": (f"key {API_KEY} refused", "Zm9vYmFyYmF6cXV4c2VjcmV0"),
    "authorization header": (
        "headers {'Authorization': 'Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl'}",
        "eyJhbGciOi",
    ),
    "basic credentials": ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    "webhook secret": ('receiverInfo {"key": "X-Webhook-Secret", "value": "whsec_abc123"}', "whsec_abc123"),
    "secret member": ("webhook_secret=s3cr3t-value", "s3cr3t-value"),
    "iot agent apikey in a path": ("POST /iot/json?k=groupkey42&i=dev1", "groupkey42"),
    "fiware apikey header": ("fiware-apikey: abcdefkey", "abcdefkey"),
    "password member": ('{"password": "pa55word"}', "pa55word"),
}


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger writing both formats to two buffers, through the broker's own handlers."""
    plain, json_lines = io.StringIO(), io.StringIO()
    logger = logging.getLogger(f"test.logs.{id(plain)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handlers = [logs.handler("plain", plain), logs.handler("json", json_lines)]
    for handler in handlers:
        logger.addHandler(handler)
    yield logger, plain, json_lines
    for handler in handlers:
        logger.removeHandler(handler)


def test_a_json_line_has_time_level_logger_message_request_id_and_tenant(
    captured: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    logger, _, json_lines = captured
    rid, tenant = logs.REQUEST_ID.set("req-42"), logs.TENANT.set("takamatsu")
    try:
        logger.warning("gauge %s silent for %d min", "kasuga-001", 30)
    finally:
        logs.REQUEST_ID.reset(rid)
        logs.TENANT.reset(tenant)

    (text,) = json_lines.getvalue().splitlines()
    line = orjson.loads(text)
    assert line["message"] == "gauge kasuga-001 silent for 30 min"
    assert line["level"] == "WARNING"
    assert line["logger"] == logger.name
    assert line["request_id"] == "req-42"
    assert line["tenant"] == "takamatsu"
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None


def test_a_line_outside_a_request_names_no_request_id(
    captured: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    logger, plain, json_lines = captured
    logger.info("serving")

    assert "request_id" not in orjson.loads(json_lines.getvalue())
    assert plain.getvalue().rstrip().endswith("serving")


def test_a_traceback_stays_one_line_in_both_formats(
    captured: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    logger, plain, json_lines = captured
    try:
        raise ValueError("bad\nvalue postgresql://u:tracepw@h/db")
    except ValueError:
        logger.exception("failed")

    assert len(plain.getvalue().splitlines()) == 1
    (text,) = json_lines.getvalue().splitlines()
    assert "ValueError" in orjson.loads(text)["exception"]
    assert "tracepw" not in plain.getvalue() + json_lines.getvalue()


@pytest.mark.parametrize("case", sorted(SECRETS))
def test_no_secret_reaches_a_log_line(
    case: str, captured: tuple[logging.Logger, io.StringIO, io.StringIO]
) -> None:
    logger, plain, json_lines = captured
    message, secret = SECRETS[case]

    logger.error("%s", message)

    assert secret not in plain.getvalue()
    assert secret not in json_lines.getvalue()
    assert "***" in plain.getvalue()


def test_redaction_keeps_what_an_operator_needs() -> None:
    shown = logs.redact(f"postgresql://ngsi:pw@db:5432/ngsi and key {API_KEY}")

    assert "postgresql://ngsi:***@db:5432/ngsi" in shown
    assert "ngsk_0123456789abcdef_***" in shown  # the key's id tells which key it was


def test_settings_are_never_logged_with_the_pseudonym_secret() -> None:
    settings = load({"NGSI_PSEUDONYM_SECRET": "pseudo-secret-xyz"})

    assert "pseudo-secret-xyz" not in repr(settings)


@pytest.mark.parametrize("header", ["abc-123", "0f" * 16, "gw-7:uplink/42", "a.b_c@d+e=f"])
def test_a_sane_incoming_request_id_is_kept(header: str) -> None:
    assert logs.request_id_from(header) == header


@pytest.mark.parametrize("header", [None, "", "a b", "x" * 129, "id\tTab", "<script>", "é"])
def test_an_unusable_request_id_is_replaced(header: str | None) -> None:
    made = logs.request_id_from(header)

    assert made != header
    assert len(made) == 32
    assert made != logs.request_id_from(header)


def test_the_log_format_setting_takes_plain_or_json() -> None:
    assert load({}).log_format == "plain"
    assert load({"NGSI_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ValueError, match="NGSI_LOG_FORMAT"):
        load({"NGSI_LOG_FORMAT": "xml"})
