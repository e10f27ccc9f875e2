"""Group commit in the write path: concurrent calls share transactions, each keeps its own result."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiohttp.test_utils import TestClient

from broker.api.keys import WRITER
from broker.errors import BadRequestData
from broker.ingest import Operation
from broker.model import ops
from broker.model.entity import Entity
from broker.model.ops import Outcome
from tests.conftest import Api, new_id, problem

LEVEL = "https://uri.etsi.org/ngsi-ld/default-context/level"


def set_level(entity_id: str, value: int) -> Operation:
    fragment = Entity(
        id=entity_id,
        types=["https://uri.etsi.org/ngsi-ld/default-context/Gauge"],
        attrs={LEVEL: [{"type": "Property", "value": value}]},
    )

    def apply(current: Entity | None, now: str) -> Outcome:
        if value < 0:
            raise BadRequestData("a negative level")
        if current is None:
            return ops.create(None, fragment, now)
        return ops.append(current, fragment, now, no_overwrite=False)

    return Operation(entity_id, apply)


async def test_concurrent_calls_share_transactions_in_arrival_order_and_fail_alone(
    client: TestClient[Any, Any], api: Api
) -> None:
    writer = client.app[WRITER]
    ids = [new_id("Gauge") for _ in range(8)]
    before = (writer.transactions, writer.calls)

    # 64 callers at once: 8 entities, 8 values each in order, and one bad value among them.
    calls = [
        writer.apply(api.tenant, [set_level(ids[n % 8], -1 if n == 13 else n)], may_create_tenant=True)
        for n in range(64)
    ]
    results = await asyncio.gather(*calls)

    transactions = writer.transactions - before[0]
    assert writer.calls - before[1] == 64
    assert transactions < 64 / 4, f"{transactions} transactions for 64 concurrent calls"
    assert results[13][0].error is not None
    assert all(r[0].ok for n, r in enumerate(results) if n != 13)
    for k, entity_id in enumerate(ids):
        stored = await api.get_json(entity_id)
        assert stored["level"]["value"] == 56 + k  # the last of its eight values, in call order


def long_multibyte_id() -> str:
    """An entity id check_uri accepts (1,500 characters) that no PostgreSQL btree can index (4.5 KB).

    Random CJK characters, so the index entry does not compress below the 2,704-byte limit.
    """
    rnd = random.Random(11)
    return "urn:ngsi-ld:Gauge:" + "".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(1500))


async def test_a_call_the_database_refuses_fails_alone_and_the_63_others_of_its_group_commit(
    client: TestClient[Any, Any], api: Api
) -> None:
    writer = client.app[WRITER]
    ids = [new_id("Gauge") for _ in range(63)]
    calls = [writer.apply(api.tenant, [set_level(i, n)], may_create_tenant=True) for n, i in enumerate(ids)]
    calls.insert(20, writer.apply(api.tenant, [set_level(long_multibyte_id(), 1)], may_create_tenant=True))

    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    refused = outcomes.pop(20)
    assert isinstance(refused, BadRequestData), refused
    assert "index row size" in refused.detail
    assert all(isinstance(o, list) and o[0].ok for o in outcomes), outcomes
    for n, entity_id in enumerate(ids):
        assert (await api.get_json(entity_id))["level"]["value"] == n


async def test_concurrent_http_requests_with_one_the_database_refuses_answer_400_for_it_only(
    api: Api,
) -> None:
    ids = [new_id("Gauge") for _ in range(31)]
    bodies = [{"id": i, "type": "Gauge", "level": n} for n, i in enumerate(ids)]
    bodies.insert(7, {"id": long_multibyte_id(), "type": "Gauge", "level": -1})

    responses = await asyncio.gather(*(api.create(body) for body in bodies))

    await problem(responses.pop(7), 400, "BadRequestData")
    assert [r.status for r in responses] == [201] * 31
    for n, entity_id in enumerate(ids):
        assert (await api.get_json(entity_id))["level"]["value"] == n
