"""/ready answers 503 naming every supervised part that is down; /health shows their restarts."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from broker.api.keys import SUPERVISOR


async def test_ready_is_200_while_every_part_is_up(client: TestClient[Any, Any]) -> None:
    response = await client.get("/ready")
    body = await response.json()
    assert response.status == 200, body
    assert body == {"status": "ready", "database": "ok"}


async def test_ready_is_503_naming_a_part_whose_probe_says_it_is_down(client: TestClient[Any, Any]) -> None:
    supervisor = client.app[SUPERVISOR]
    supervisor.probe("test-part", lambda: "its connection is lost")
    try:
        response = await client.get("/ready")
        body = await response.json()
        assert response.status == 503, body
        assert body["down"] == {"test-part": "its connection is lost"}
        assert body["database"] == "ok"
    finally:
        supervisor.unprobe("test-part")
    assert (await client.get("/ready")).status == 200


async def test_health_lists_the_supervised_components(client: TestClient[Any, Any]) -> None:
    body = await (await client.get("/health")).json()
    assert isinstance(body["components"], dict)
    for state in body["components"].values():
        assert set(state) == {"running", "restarts", "lastError"}
