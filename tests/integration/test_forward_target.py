"""How the forwarding target's answers are sorted: delivered, refused for good, or retried later.

The answers an Orion-LD gives that another instance of this broker cannot be made to give on cue
(a 207 naming one entity, a 503, a 401) come from a scripted receiver on a loopback port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from broker.forward.target import Target, forward_policy
from broker.netguard import GuardedResolver
from broker.store.forwarding import DELETE, UPSERT, Pending

Script = list[tuple[int, Any]]


class Receiver:
    """Answers each request with the next (status, body) of its script; records what it got."""

    def __init__(self) -> None:
        self.script: Script = []
        self.got: list[tuple[str, dict[str, str], Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((request.path_qs, dict(request.headers), orjson.loads(await request.read())))
        status, body = self.script.pop(0) if self.script else (204, None)
        return web.Response(status=status, body=None if body is None else orjson.dumps(body))


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    stub = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", stub.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield stub, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def target(receiver: tuple[Receiver, str]) -> AsyncIterator[Target]:
    guard = GuardedResolver(aiohttp.ThreadedResolver(), forward_policy(allow_private=True))
    made = Target(receiver[1], guard, token="tkn", tenant_map={"ours": "theirs", "home": ""}, timeout=5)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


def row(n: int, op: str = UPSERT, tenant: str = "ours") -> Pending:
    entity_id = f"urn:ngsi-ld:T:{n}"
    data = {"id": entity_id, "type": "T", "v": {"type": "Property", "value": n}}
    return Pending(n, tenant, entity_id, op, data, datetime(2026, 12, 1, tzinfo=UTC))


def problem(status: int, title: str) -> dict[str, Any]:
    return {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": title, "status": status}


async def test_a_batch_goes_as_one_upsert_with_the_mapped_tenant_and_the_token(
    receiver: tuple[Receiver, str], target: Target
) -> None:
    stub, _ = receiver
    answer = await target.send("ours", [row(1), row(2)])
    assert (answer.done, answer.refused, answer.retry) == ([1, 2], [], None)
    [(path, headers, body)] = stub.got
    assert path == "/ngsi-ld/v1/entityOperations/upsert?options=update"
    assert headers["NGSILD-Tenant"] == "theirs"
    assert headers["Authorization"] == "Bearer tkn"
    assert [e["id"] for e in body] == ["urn:ngsi-ld:T:1", "urn:ngsi-ld:T:2"]


async def test_the_default_tenant_goes_without_a_tenant_header_and_deletions_as_a_batch_delete(
    receiver: tuple[Receiver, str], target: Target
) -> None:
    stub, _ = receiver
    answer = await target.send("home", [row(1, DELETE, "home")])
    assert answer.done == [1]
    [(path, headers, body)] = stub.got
    assert path == "/ngsi-ld/v1/entityOperations/delete"
    assert "NGSILD-Tenant" not in headers
    assert body == ["urn:ngsi-ld:T:1"]


async def test_a_207_refuses_the_entity_it_names_and_delivers_the_others(
    receiver: tuple[Receiver, str], target: Target
) -> None:
    stub, _ = receiver
    stub.script = [
        (
            207,
            {
                "success": ["urn:ngsi-ld:T:1"],
                "errors": [{"entityId": "urn:ngsi-ld:T:2", "error": problem(400, "bad")}],
            },
        )
    ]
    answer = await target.send("ours", [row(1), row(2)])
    assert answer.done == [1]
    assert [(r.row.id, r.status, r.reason) for r in answer.refused] == [(2, 400, "bad")]
    assert answer.retry is None


async def test_a_batch_refused_whole_is_sent_again_entity_by_entity(
    receiver: tuple[Receiver, str], target: Target
) -> None:
    stub, _ = receiver
    stub.script = [
        (400, problem(400, "one is wrong")),
        (204, None),
        (422, problem(422, "this one")),
        (204, None),
    ]
    answer = await target.send("ours", [row(1), row(2), row(3)])
    assert answer.done == [1, 3]
    assert [(r.row.id, r.status) for r in answer.refused] == [(2, 422)]
    assert [len(body) for _, _, body in stub.got] == [3, 1, 1, 1]


@pytest.mark.parametrize("status", [500, 503, 401, 403, 404, 429])
async def test_a_5xx_or_an_answer_about_the_target_keeps_every_change_for_later(
    receiver: tuple[Receiver, str], target: Target, status: int
) -> None:
    stub, _ = receiver
    stub.script = [(status, problem(status, "not now"))]
    answer = await target.send("ours", [row(1), row(2)])
    assert (answer.done, answer.refused) == ([], [])
    assert answer.retry is not None
    assert f"HTTP {status}" in answer.retry


async def test_a_target_that_does_not_answer_keeps_every_change_for_later(target: Target) -> None:
    guard = GuardedResolver(aiohttp.ThreadedResolver(), forward_policy(allow_private=True))
    gone = Target("http://127.0.0.1:9", guard, timeout=2)  # the discard port: nothing listens
    await gone.open()
    try:
        answer = await gone.send("ours", [row(1)])
    finally:
        await gone.close()
    assert (answer.done, answer.refused) == ([], [])
    assert answer.retry is not None
    assert "cannot connect" in answer.retry


async def test_a_private_target_is_refused_unless_the_setting_allows_it(
    receiver: tuple[Receiver, str],
) -> None:
    stub, url = receiver
    guard = GuardedResolver(aiohttp.ThreadedResolver(), forward_policy(allow_private=False))
    guarded = Target(url, guard)
    await guarded.open()
    try:
        answer = await guarded.send("ours", [row(1)])
    finally:
        await guarded.close()
    assert answer.retry is not None
    assert "set NGSI_FORWARD_ALLOW_PRIVATE=true" in answer.retry
    assert stub.got == []  # nothing was sent


async def test_what_logs_and_health_show_of_the_url_has_no_credentials() -> None:
    guard = GuardedResolver(aiohttp.ThreadedResolver(), forward_policy(allow_private=True))
    assert Target("http://hub:pw@orion.lan:1026", guard).shown == "http://***@orion.lan:1026"
    assert Target("http://orion.lan:1026/", guard).shown == "http://orion.lan:1026"
