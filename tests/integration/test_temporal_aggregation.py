"""options=aggregatedValues (clause 4.5.19): each method against values computed by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.conftest import Api, new_id
from tests.integration.helpers import batch, body_of

TEMPORAL = "/ngsi-ld/v1/temporal/entities"
DAY = "2026-11-19"


def at(minute: int) -> str:
    return f"{DAY}T{minute // 60:02d}:{minute % 60:02d}:00Z"


async def gauge_with(api: Api, readings: list[tuple[int, Any]]) -> str:
    """One gauge whose readings arrive as one batch (one operation each), like a device backlog."""
    gauge = new_id("FloodMonitoring")
    ops = [
        {
            "id": gauge,
            "type": "FloodMonitoring",
            "currentLevel": {"type": "Property", "value": value, "observedAt": at(minute)},
        }
        for minute, value in readings
    ]
    for start in range(0, len(ops), 150):
        response = await batch(api, "upsert", ops[start : start + 150], params={"options": "update"})
        # The first batch creates the gauge (201), the next ones update it (204).
        assert response.status == (201 if start == 0 else 204), await response.text()
    return gauge


async def aggregated(api: Api, gauge: str, **params: str) -> dict[str, Any]:
    response = await api.request(
        "GET", f"{TEMPORAL}/{gauge}", params={"options": "aggregatedValues", **params}
    )
    body = await body_of(response)
    assert response.status == 200, body
    return body["currentLevel"]  # type: ignore[no-any-return]


# Readings 1, 2 (first 20 minutes) and 4, 3 (next 20 minutes).
FOUR = [(0, 1.0), (10, 2.0), (20, 4.0), (30, 3.0)]
WINDOW = {"timerel": "between", "timeAt": f"{DAY}T00:00:00Z", "endTimeAt": f"{DAY}T00:40:00Z"}


@pytest.mark.parametrize(
    ("method", "first", "second"),
    [
        ("totalCount", 2, 2),
        ("distinctCount", 2, 2),
        ("sum", 3.0, 7.0),
        ("avg", 1.5, 3.5),
        ("min", 1.0, 3.0),
        ("max", 2.0, 4.0),
        ("stddev", 0.5, 0.5),
        ("sumsq", 5.0, 25.0),
    ],
)
async def test_each_method_per_twenty_minutes(api: Api, method: str, first: float, second: float) -> None:
    gauge = await gauge_with(api, FOUR)
    body = await aggregated(api, gauge, aggrMethods=method, aggrPeriodDuration="PT20M", **WINDOW)
    assert body["type"] == "Property"
    assert body[method] == [[first, at(0), at(20)], [second, at(20), at(40)]]


async def test_without_a_period_the_whole_window_is_one_period(api: Api) -> None:
    gauge = await gauge_with(api, FOUR)
    body = await aggregated(api, gauge, aggrMethods="totalCount,sum,avg,stddev,sumsq,min,max", **WINDOW)
    span = [at(0), at(40)]
    assert body["totalCount"] == [[4, *span]]
    assert body["sum"] == [[10.0, *span]]
    assert body["avg"] == [[2.5, *span]]
    assert body["min"] == [[1.0, *span]]
    assert body["max"] == [[4.0, *span]]
    assert body["sumsq"] == [[30.0, *span]]
    assert math.isclose(body["stddev"][0][0], math.sqrt(1.25))


async def test_distinct_count_counts_equal_values_once_and_strings_count_but_do_not_sum(api: Api) -> None:
    gauge = await gauge_with(api, [(0, "low"), (5, "low"), (10, "high"), (15, 2.0)])
    body = await aggregated(api, gauge, aggrMethods="totalCount,distinctCount,sum", **WINDOW)
    assert body["totalCount"][0][0] == 4
    assert body["distinctCount"][0][0] == 3
    assert body["sum"][0][0] == 2.0


async def test_a_gauge_day_of_five_minute_readings_averages_per_ten_minutes(api: Api) -> None:
    readings = [(minute, float(n)) for n, minute in enumerate(range(0, 24 * 60, 5))]
    gauge = await gauge_with(api, readings)
    body = await aggregated(
        api,
        gauge,
        aggrMethods="avg,max",
        aggrPeriodDuration="PT10M",
        timerel="between",
        timeAt=f"{DAY}T00:00:00Z",
        endTimeAt=f"{DAY}T23:59:59Z",
    )
    assert len(body["avg"]) == 144
    # Each ten minutes hold readings n and n + 1 for even n: average n + 0.5, maximum n + 1.
    assert body["avg"][:2] == [[0.5, at(0), at(10)], [2.5, at(10), at(20)]]
    assert body["avg"][-1] == [286.5, at(1430), f"{DAY[:-2]}20T00:00:00Z"]
    assert [m[0] for m in body["max"]] == [float(n + 1) for n in range(0, 288, 2)]


async def test_periods_start_at_time_at_as_the_spec_example_shows(api: Api) -> None:
    """Clause 4.5.19 and example C.5.14: with timerel=between the first period starts at timeAt, even
    off a round boundary (issue 13 item 7)."""
    gauge = await gauge_with(api, FOUR)
    window = {"timerel": "between", "timeAt": at(5), "endTimeAt": at(45)}
    body = await aggregated(api, gauge, aggrMethods="max", aggrPeriodDuration="PT20M", **window)
    assert body["max"] == [[4.0, at(5), at(25)], [3.0, at(25), at(45)]]
