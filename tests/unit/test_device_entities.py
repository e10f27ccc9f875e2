"""Every device message of the golden corpus still becomes the entities (or the refusal) recorded for it.

tests/device_corpus.py says what the corpus holds and how to record it again; a difference here
is a change of what devices store, to be made on purpose or not at all.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

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
