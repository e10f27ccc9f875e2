"""Every device message of the golden corpus still becomes the entities (or the refusal) recorded for it.

tests/device_corpus.py says what the corpus holds and how to record it again; a difference here
is a change of what devices store, to be made on purpose or not at all.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from adapters.message import IOTA_UL, DeviceMessage, Rejected
from adapters.models.common import CORE_CONTEXT
from adapters.validate import key_values
from adapters.wiring import _Mapper, parse
from broker.errors import BadRequestData
from broker.jsonld.context import DEFAULT_VOCAB, TermMap, compile_contexts, core_document
from tests import device_corpus
from tests.device_corpus import GOLDEN

RECORDED: dict[str, Any] = orjson.loads(GOLDEN.read_bytes())


@pytest.fixture(scope="module")
async def produced() -> dict[str, Any]:
    # Through JSON, as recorded: tuples become lists, nothing else changes.
    results: dict[str, Any] = orjson.loads(device_corpus.dumps(await device_corpus.run_corpus()))
    return results


def test_the_corpus_covers_every_model_and_some_refusals() -> None:
    types = {
        kind.rsplit("/", 1)[-1]
        for result in RECORDED.values()
        for entity in result.get("entities", [])
        for kind in entity["types"]
    }
    assert {"FloodMonitoring", "WaterObserved", "Vehicle", "Device", "DeviceMeasurement"} <= types
    # The generic mapping: entity types of the devices' own provisioning.
    assert {"Thermometer", "WeatherObserved", "AirSensor"} <= types
    assert sum("rejected" in result for result in RECORDED.values()) >= 8


def test_the_same_messages_are_in_the_corpus_as_recorded(produced: dict[str, Any]) -> None:
    assert sorted(produced) == sorted(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_each_message_becomes_what_was_recorded(produced: dict[str, Any], name: str) -> None:
    assert produced[name] == RECORDED[name]


async def test_the_schema_sees_the_key_values_of_each_entity_as_an_app_would_read_it() -> None:
    """The keyValues a model builds beside its entity are those of the entity read back."""
    found, mapper, seen = device_corpus.devices(), _Mapper(device_corpus.PSEUDONYMS), 0
    for case in device_corpus.cases():
        message = parse(case.inbound)
        device = None if message is None else found.find(message)
        if message is None or device is None:
            continue
        try:
            updates = await mapper(device, message)
        except (Rejected, BadRequestData):
            continue
        for update in updates:
            assert update.values == key_values(update.normalized()), case.name
            seen += 1
    assert seen > 100


THERMO_CONTEXT = "https://example.org/toyama/thermometer-context.jsonld"


async def test_a_generic_device_naming_its_own_context_has_it_resolved_by_the_broker() -> None:
    asked: list[list[str]] = []

    async def term_maps(urls: list[str]) -> TermMap:
        asked.append(urls)
        return compile_contexts([{"temperature": "https://example.org/vocab/temp"}], core_document())

    device = replace(
        device_corpus.THERMO,
        model_params={"context": THERMO_CONTEXT},
        health=False,
        static_attributes=(),
    )
    message = DeviceMessage(
        family=IOTA_UL,
        origin="/ul/toyama-trial/thermo-1/attrs",
        device_id="thermo-1",
        received_at=datetime(2026, 12, 4, tzinfo=UTC),
        apikey="toyama-trial",
        measures=[{"t": "21.5", "h": 40}],
    )

    (update,) = await _Mapper(device_corpus.PSEUDONYMS, term_maps)(device, message)

    assert asked == [[THERMO_CONTEXT, CORE_CONTEXT]]
    assert update.context == (THERMO_CONTEXT, CORE_CONTEXT)
    assert set(update.entity.attrs) == {"https://example.org/vocab/temp", DEFAULT_VOCAB + "h"}
    assert update.normalized()["temperature"]["value"] == 21.5
    with pytest.raises(Rejected, match="cannot be resolved"):
        await _Mapper(device_corpus.PSEUDONYMS)(device, message)
