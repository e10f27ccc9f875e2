"""API keys and the pseudonym secret never reach the log (issue 12 item 7)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import orjson
import pytest

from adapters.message import Family, for_log, origin_apikey
from adapters.pipeline import REJECTED, Inbound
from broker.config import load
from tests.unit.test_pipeline import FakeWriter, Letters, pipeline, run

KEY = "gw-4f9c2e71b0"


@pytest.mark.parametrize(
    ("origin", "apikey"),
    [
        (f"/json/{KEY}/d1/attrs", KEY),
        (f"/ul/{KEY}/d1/attrs/t", KEY),
        (f"/{KEY}/d1/attrs", KEY),
        (f"/{KEY}/d1/cmdexe", KEY),
        (f"/iot/json?k={KEY}&i=d1", KEY),
        (f"/iot/d?i=d1&apikey={KEY}", KEY),
        ("v3/app@ttn/devices/d1/up", None),
        ("application/1/device/70b3d57ed005a1b2/event/up", None),
    ],
)
def test_the_apikey_of_an_origin_is_found(origin: str, apikey: str | None) -> None:
    assert origin_apikey(origin) == apikey


def test_an_origin_and_a_reason_are_logged_without_the_apikey() -> None:
    origin = f"/json/{KEY}/d1/attrs"
    assert for_log(origin, origin) == "/json/***/d1/attrs"
    assert for_log(f"unknown device: iota-json device 'd1', apikey '{KEY}'", origin).endswith("apikey '***'")
    assert for_log(f"/iot/json?k={KEY}&i=d1", f"/iot/json?k={KEY}&i=d1") == "/iot/json?k=***&i=d1"


async def test_a_dead_lettered_message_is_logged_without_its_apikey(caplog: pytest.LogCaptureFixture) -> None:
    message = Inbound(
        Family.IOTA_JSON, f"/json/{KEY}/zz/attrs", orjson.dumps({"device": "zz"}), datetime.now(UTC)
    )
    with caplog.at_level(logging.INFO):
        (verdict,) = await asyncio.wait_for(run(pipeline(FakeWriter(), Letters()), [message]), 10)
    assert verdict.status == REJECTED
    assert "dead-lettered" in caplog.text
    assert KEY not in caplog.text


def test_the_pseudonym_secret_is_not_in_the_settings_repr() -> None:
    settings = load({"NGSI_PSEUDONYM_SECRET": "an-operators-secret-value"})
    assert "an-operators-secret-value" not in repr(settings)
    assert settings.pseudonym_secret == "an-operators-secret-value"
