"""Group commit in the write path: concurrent calls share transactions, each keeps its own result."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from broker.api.keys import WRITER
from broker.errors import BadRequestData
from broker.ingest import Operation
from broker.model import ops
from broker.model.entity import Entity
from broker.model.ops import Outcome
from tests.conftest import Api, new_id

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
