"""The device pipeline with its parts replaced by small fakes: batching, order, retries, verdicts."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from adapters.device import DeviceConfig, EntityUpdate
from adapters.message import DeviceMessage, Family, Rejected
from adapters.models.common import build
from adapters.pipeline import ACCEPTED, DUPLICATE, FOREIGN, REJECTED, Inbound, Pipeline
from broker.errors import BadRequestData
from broker.ingest import Operation, Result
from broker.model.entity import Entity

CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
DEVICE = DeviceConfig(
    tenant="town", service_path="/", device_id="d1", entity_name="urn:ngsi-ld:T:d1", entity_type="T"
)


class FakeWriter:
    """Applies operations to a dict; fails the first ``failures`` calls as a database would."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[int] = []
        self.store: dict[str, Entity] = {}
        self.keys: set[tuple[str, str]] = set()

    async def apply(
        self,
        tenant: str,
        operations: Sequence[Operation],
        *,
        may_create_tenant: bool,
        origins: Mapping[str, str] | None = None,
    ) -> list[Result]:
        self.calls.append(len(operations))
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("database went away")
        results = []
        for op in operations:
            before = self.store.get(op.entity_id)
            if op.once is not None and op.once in self.keys:
                results.append(Result(op.entity_id, before, None, None, duplicate=True))
                continue
            outcome = op.apply(before, "2026-11-22T00:00:00Z")
            assert outcome.entity is not None
            self.store[op.entity_id] = outcome.entity
            results.append(Result(op.entity_id, before, outcome, None))
        self.keys.update(op.once for op in operations if op.once is not None)
        return results


class Letters:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def add(
        self,
        tenant: str,
        family: str,
        origin: str,
        headers: Mapping[str, str],
        device: str | None,
        raw: bytes,
        reason: str,
    ) -> int:
        self.reasons.append(reason)
        return len(self.reasons)


class Devices:
    def find(self, message: DeviceMessage) -> DeviceConfig | None:
        return DEVICE if message.device_id == "d1" else None


def parse(inbound: Inbound) -> DeviceMessage | None:
    body = orjson.loads(inbound.body)
    return DeviceMessage(
        family=Family.IOTA_JSON,
        origin=inbound.origin,
        device_id=body["device"],
        received_at=inbound.received_at,
        frame=body.get("frame"),
        measures=[{"level": body["level"]}],
    )


async def mapper(device: DeviceConfig, message: DeviceMessage) -> list[EntityUpdate]:
    level = message.measures[0]["level"]
    if not isinstance(level, int | float):
        raise Rejected(f"level {level!r} is not a number")
    entity = {"id": device.entity_name, "type": "T", "level": {"type": "Property", "value": level}}
    return [build(entity, (CORE,))]


def pipeline(writer: FakeWriter, letters: Letters) -> Pipeline:
    return Pipeline(writer, Devices(), parse, mapper, lambda _u: None, letters)  # type: ignore[arg-type]


def inbound(**body: Any) -> Inbound:
    return Inbound(Family.IOTA_JSON, "/json/k/d1/attrs", orjson.dumps(body), datetime.now(UTC))


async def run(pipe: Pipeline, messages: list[Inbound]) -> list[Any]:
    pipe.start()
    try:
        return await asyncio.wait_for(asyncio.gather(*(pipe.submit(m) for m in messages)), 10)
    finally:
        await pipe.close()


async def test_messages_queued_together_are_written_in_one_call_in_arrival_order() -> None:
    writer, letters = FakeWriter(), Letters()

    verdicts = await run(pipeline(writer, letters), [inbound(device="d1", level=n) for n in range(50)])

    assert {v.status for v in verdicts} == {ACCEPTED}
    assert writer.calls[0] == 50
    (level,) = writer.store["urn:ngsi-ld:T:d1"].attrs.values()
    assert level[0]["value"] == 49


async def test_a_database_failure_is_retried_and_a_dead_letter_is_not_stored_twice() -> None:
    writer, letters = FakeWriter(failures=2), Letters()
    messages = [
        inbound(device="d1", level=1),
        inbound(device="d1", level="high"),
        inbound(device="zz", level=2),
    ]

    verdicts = await run(pipeline(writer, letters), messages)

    assert [v.status for v in verdicts] == [ACCEPTED, REJECTED, REJECTED]
    assert len(writer.calls) == 3
    assert len(letters.reasons) == 2
    assert "not a number" in letters.reasons[0]
    assert "unknown device" in letters.reasons[1]


async def test_the_same_frame_twice_in_a_batch_or_later_is_a_duplicate() -> None:
    writer, letters = FakeWriter(), Letters()
    pipe = pipeline(writer, letters)

    first = await run(
        pipe, [inbound(device="d1", level=1, frame="7"), inbound(device="d1", level=1, frame="7")]
    )
    again = await run(pipe, [inbound(device="d1", level=1, frame="7")])

    assert [v.status for v in first] == [ACCEPTED, DUPLICATE]
    assert [v.status for v in again] == [DUPLICATE]


@pytest.mark.parametrize("size", [65_537, 200_000])
async def test_a_message_over_the_size_limit_is_refused_before_it_is_parsed(size: int) -> None:
    writer, letters = FakeWriter(), Letters()
    big = Inbound(Family.IOTA_JSON, "/json/k/d1/attrs", b"x" * size, datetime.now(UTC))

    (verdict,) = await run(pipeline(writer, letters), [big])

    assert verdict.status == REJECTED
    assert f"{size} bytes" in letters.reasons[0]
    assert writer.calls == []


class SlowWriter(FakeWriter):
    async def apply(
        self,
        tenant: str,
        operations: Sequence[Operation],
        *,
        may_create_tenant: bool,
        origins: Mapping[str, str] | None = None,
    ) -> list[Result]:
        await asyncio.sleep(0.2)
        return await super().apply(tenant, operations, may_create_tenant=may_create_tenant)


async def test_drain_waits_until_everything_taken_is_stored_and_gives_up_after_its_grace() -> None:
    writer, letters = SlowWriter(), Letters()
    pipe = pipeline(writer, letters)
    pipe.start()
    try:
        futures = [pipe.submit(inbound(device="d1", level=n)) for n in range(10)]
        assert not await pipe.drain(0.05)
        assert await pipe.drain(5)
        assert all(f.done() for f in futures)
    finally:
        await pipe.close()


# --- issue 11: one message's fault stays with that message ------------------------------------


async def crashing_mapper(device: DeviceConfig, message: DeviceMessage) -> list[EntityUpdate]:
    if message.measures[0]["level"] == "crash":
        raise TypeError("a bug in a model")
    return await mapper(device, message)


async def test_an_unexpected_error_for_one_message_dead_letters_it_and_the_next_is_stored() -> None:
    writer, letters = FakeWriter(), Letters()
    pipe = Pipeline(writer, Devices(), parse, crashing_mapper, lambda _u: None, letters)  # type: ignore[arg-type]

    verdicts = await run(pipe, [inbound(device="d1", level="crash"), inbound(device="d1", level=2)])

    assert [v.status for v in verdicts] == [REJECTED, ACCEPTED]
    assert "TypeError: a bug in a model" in letters.reasons[0]
    assert pipe.stats.faults == 1


class RefusingWriter(FakeWriter):
    """Refuses any transaction holding a level of 13, as PostgreSQL refuses data it cannot store."""

    async def apply(
        self,
        tenant: str,
        operations: Sequence[Operation],
        *,
        may_create_tenant: bool,
        origins: Mapping[str, str] | None = None,
    ) -> list[Result]:
        self.calls.append(len(operations))
        probe = [op.apply(None, "2026-11-22T00:00:00Z").entity for op in operations]
        if any(e is not None and any(i[0].get("value") == 13 for i in e.attrs.values()) for e in probe):
            raise BadRequestData("the database cannot store this data: unlucky")
        self.calls.pop()
        return await super().apply(tenant, operations, may_create_tenant=may_create_tenant)


async def test_data_the_database_refuses_fails_its_message_alone_and_is_not_retried() -> None:
    writer, letters = RefusingWriter(), Letters()

    verdicts = await run(pipeline(writer, letters), [inbound(device="d1", level=n) for n in (12, 13, 14)])

    assert [v.status for v in verdicts] == [ACCEPTED, REJECTED, ACCEPTED]
    assert letters.reasons == [
        "The request includes input data which does not meet the requirements of the operation: "
        "the database cannot store this data: unlucky"
    ]
    (level,) = writer.store["urn:ngsi-ld:T:d1"].attrs.values()
    assert level[0]["value"] == 14


class BrokenLetters(Letters):
    async def add(self, *args: Any) -> int:
        raise ValueError("cannot keep this letter")


async def test_a_dead_letter_that_cannot_be_kept_still_gives_a_verdict_and_the_next_is_stored() -> None:
    writer, letters = FakeWriter(), BrokenLetters()

    verdicts = await run(
        pipeline(writer, letters), [inbound(device="zz", level=1), inbound(device="d1", level=2)]
    )

    assert [v.status for v in verdicts] == [REJECTED, ACCEPTED]


async def test_a_message_nested_deeper_than_the_limit_is_refused_before_it_is_parsed() -> None:
    writer, letters = FakeWriter(), Letters()
    deep = Inbound(
        Family.IOTA_JSON, "/json/k/d1/attrs", b'{"x": ' + b"[" * 300 + b"]" * 300 + b"}", datetime.now(UTC)
    )

    verdicts = await run(pipeline(writer, letters), [deep, inbound(device="d1", level=1)])

    assert [v.status for v in verdicts] == [REJECTED, ACCEPTED]
    assert "deeper than 64 levels" in letters.reasons[0]


def parse_with_apikey(inbound: Inbound) -> DeviceMessage | None:
    message = parse(inbound)
    assert message is not None
    return replace(message, apikey=orjson.loads(inbound.body)["apikey"])


async def test_an_mqtt_message_of_an_apikey_no_tenant_has_is_foreign_and_not_a_dead_letter() -> None:
    writer, letters = FakeWriter(), Letters()
    pipe = Pipeline(
        writer,  # type: ignore[arg-type]
        Devices(),
        parse_with_apikey,
        mapper,
        lambda _u: None,
        letters,
        owns=lambda apikey: apikey == "ours",
    )

    def message(*, mqtt: bool, **body: Any) -> Inbound:
        return replace(inbound(**body), mqtt=mqtt)

    verdicts = await run(
        pipe,
        [
            message(mqtt=True, apikey="theirs", device="x9", level=1),
            message(mqtt=False, apikey="theirs", device="x9", level=1),  # HTTP: sent to us
            message(mqtt=True, apikey="ours", device="x9", level=1),  # our apikey, unknown device
            message(mqtt=True, apikey="ours", device="d1", level=2),
        ],
    )

    assert [v.status for v in verdicts] == [FOREIGN, REJECTED, REJECTED, ACCEPTED]
    assert len(letters.reasons) == 2
    assert all("unknown device" in reason for reason in letters.reasons)
    assert (pipe.stats.foreign, pipe.stats.rejected, pipe.stats.accepted) == (1, 2, 1)
