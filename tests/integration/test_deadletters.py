"""Dead letters on the real store and over HTTP: add, list, read, delete, replay (with a fake Replayer)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from adapters.deadletters import ACCEPTED, DeadLetter, DeadLetters
from adapters.keys import DEAD_LETTERS, REPLAYER
from adapters.provisioning.api import add_routes, provisioning_context
from broker.api.keys import POOL
from broker.app import create_app
from broker.config import Settings
from tests.conftest import problem

Client = TestClient[Any, Any]
LETTERS = "/admin/deadletters"


class FakeReplayer:
    """Accepts letters whose raw text contains 'fixed', refuses the others with a new reason."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def replay(self, letter: DeadLetter) -> str:
        self.seen.append(letter.id)
        return ACCEPTED if b"fixed" in letter.raw else "still no device 'gauge-x'"


def _with_replayer(replayer: FakeReplayer | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """A last cleanup context that puts the fake Replayer in place of the pipeline's (or none)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        if replayer is None:
            app.pop(REPLAYER, None)
        else:
            app[REPLAYER] = replayer
        yield

    return context


async def _serve(settings: Settings, replayer: FakeReplayer | None) -> AsyncIterator[Client]:
    # A small pool: these apps live next to the session's, on a server other test runs share.
    app = create_app(replace(settings, db_pool_min=1, db_pool_max=6))
    if provisioning_context not in app.cleanup_ctx:  # until broker.app wires the device side
        app.cleanup_ctx.append(provisioning_context)
        add_routes(app)
    app.cleanup_ctx.append(_with_replayer(replayer))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def replayer() -> FakeReplayer:
    return FakeReplayer()


@pytest.fixture(scope="module")
async def client(settings: Settings, replayer: FakeReplayer) -> AsyncIterator[Client]:
    async for test_client in _serve(settings, replayer):
        yield test_client


@pytest.fixture(scope="module")
async def bare_client(settings: Settings) -> AsyncIterator[Client]:
    """The app before the pipeline provides its Replayer."""
    async for test_client in _serve(settings, None):
        yield test_client


@pytest.fixture
def tenant() -> str:
    return f"town-{uuid.uuid4().hex[:10]}"


def store(client: Client) -> DeadLetters:
    letters: DeadLetters = client.app[DEAD_LETTERS]
    return letters


async def call(client: Client, method: str, url: str, tenant: str, **params: str) -> ClientResponse:
    response = await client.request(method, url, headers={"NGSILD-Tenant": tenant}, params=params)
    await response.read()
    return response


async def add(
    client: Client, tenant: str, device: str, raw: bytes = b'{"d": 1}', reason: str = "no device"
) -> int:
    headers = {"fiware-service": tenant, "fiware-servicepath": "/"}
    return await store(client).add(
        tenant, "iota-json", f"/json/k/{device}/attrs", headers, device, raw, reason
    )


async def test_a_letter_is_kept_with_its_message_and_read_back_with_raw_as_base64_and_text(
    client: Client, tenant: str
) -> None:
    letter_id = await add(client, tenant, "gauge-1", "水位 {bad".encode(), "the payload is not JSON")

    response = await call(client, "GET", f"{LETTERS}/{letter_id}", tenant)

    assert response.status == 200
    body = await response.json()
    assert (body["id"], body["device"], body["family"], body["reason"]) == (
        letter_id,
        "gauge-1",
        "iota-json",
        "the payload is not JSON",
    )
    assert body["origin"] == "/json/k/gauge-1/attrs"
    assert body["headers"] == {"fiware-service": tenant, "fiware-servicepath": "/"}
    assert base64.b64decode(body["raw"]) == "水位 {bad".encode()
    assert body["rawText"] == "水位 {bad"
    assert body["truncated"] is False


async def test_raw_bytes_that_are_not_utf8_have_no_text(client: Client, tenant: str) -> None:
    letter_id = await add(client, tenant, "sigfox-1", b"\xff\x00\x10")

    body = await (await call(client, "GET", f"{LETTERS}/{letter_id}", tenant)).json()

    assert base64.b64decode(body["raw"]) == b"\xff\x00\x10"
    assert "rawText" not in body


async def test_odd_input_is_stored_rather_than_refused(client: Client, tenant: str) -> None:
    limit = client.app[DEAD_LETTERS]._max_raw
    letters = store(client)
    odd_headers: Any = ["not", "a", "mapping"]
    odd_raw: Any = "text\x00with nul"
    first = await letters.add(
        tenant, "tts", "v3/app@tts/devices/x/up", odd_headers, None, odd_raw, "bad\x00reason"
    )
    second = await letters.add(tenant, "sigfox", "/sigfox", {"k": 1}, "x" * 5000, b"y" * (limit + 10), "")  # type: ignore[dict-item]
    unknown = await letters.add(None, "iota-ul", "/ul/k/d/attrs", {}, "d", b"", "unknown apikey")

    one, two = await letters.get(tenant, first), await letters.get(tenant, second)
    assert one is not None
    assert two is not None
    assert (one.headers, one.raw, one.reason) == ({}, b"text\x00with nul", "bad\ufffdreason")
    assert (len(two.raw), two.raw_size, two.reason, two.headers) == (
        limit,
        limit + 10,
        "no reason given",
        {"k": "1"},
    )
    assert two.device is not None
    assert len(two.device) == 1024
    assert (await letters.get("", unknown)) is not None


async def test_letters_are_listed_newest_first_per_tenant_with_filters(client: Client, tenant: str) -> None:
    first = await add(client, tenant, "gauge-1")
    second = await add(client, tenant, "gauge-2")
    third = await add(client, tenant, "gauge-1")
    await add(client, f"{tenant}-other", "gauge-1")

    listed = await (await call(client, "GET", LETTERS, tenant)).json()
    of_device = await (await call(client, "GET", LETTERS, tenant, device="gauge-1")).json()
    paged = await (await call(client, "GET", LETTERS, tenant, limit="1", offset="1")).json()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    since_later = await (await call(client, "GET", LETTERS, tenant, since=future)).json()

    assert [x["id"] for x in listed] == [third, second, first]
    assert [x["id"] for x in of_device] == [third, first]
    assert [x["id"] for x in paged] == [second]
    assert since_later == []
    assert "raw" not in listed[0]


async def test_a_letter_of_another_tenant_is_not_found(client: Client, tenant: str) -> None:
    letter_id = await add(client, tenant, "gauge-1")

    response = await call(client, "GET", f"{LETTERS}/{letter_id}", f"{tenant}-other")

    await problem(response, 404, "ResourceNotFound")


async def test_deleting_a_letter_answers_204_then_404(client: Client, tenant: str) -> None:
    letter_id = await add(client, tenant, "gauge-1")

    assert (await call(client, "DELETE", f"{LETTERS}/{letter_id}", tenant)).status == 204
    await problem(await call(client, "DELETE", f"{LETTERS}/{letter_id}", tenant), 404, "ResourceNotFound")
    await problem(await call(client, "GET", f"{LETTERS}/{letter_id}", tenant), 404, "ResourceNotFound")


@pytest.mark.parametrize(("path", "params"), [(f"{LETTERS}/abc", {}), (LETTERS, {"since": "yesterday"})])
async def test_a_wrong_id_or_time_answers_400(
    client: Client, tenant: str, path: str, params: dict[str, str]
) -> None:
    await problem(await call(client, "GET", path, tenant, **params), 400, "BadRequestData")


async def test_replaying_a_letter_records_the_outcome_and_an_accepted_one_is_not_replayed_twice(
    client: Client, tenant: str
) -> None:
    refused = await add(client, tenant, "gauge-x", b'{"still": "broken"}')
    accepted = await add(client, tenant, "gauge-1", b'{"fixed": true}')

    first = await call(client, "POST", f"{LETTERS}/{refused}/replay", tenant)
    second = await call(client, "POST", f"{LETTERS}/{accepted}/replay", tenant)

    assert await first.json() == {"id": refused, "result": "still no device 'gauge-x'"}
    assert await second.json() == {"id": accepted, "result": ACCEPTED}
    read = await (await call(client, "GET", f"{LETTERS}/{accepted}", tenant)).json()
    assert read["replayResult"] == ACCEPTED
    assert datetime.fromisoformat(read["replayedAt"]) <= datetime.now(UTC)
    await problem(await call(client, "POST", f"{LETTERS}/{accepted}/replay", tenant), 409, "AlreadyExists")


async def test_replaying_in_bulk_replays_what_was_not_accepted_oldest_first(
    client: Client, tenant: str, replayer: FakeReplayer
) -> None:
    done = await add(client, tenant, "gauge-1", b'{"fixed": 1}')
    await call(client, "POST", f"{LETTERS}/{done}/replay", tenant)
    older = await add(client, tenant, "gauge-1", b'{"fixed": 2}')
    other_device = await add(client, tenant, "gauge-2", b"{}")
    newer = await add(client, tenant, "gauge-1", b"{}")
    replayer.seen.clear()

    response = await call(client, "POST", f"{LETTERS}/replay", tenant, device="gauge-1")

    assert response.status == 200
    assert await response.json() == [
        {"id": older, "result": ACCEPTED},
        {"id": newer, "result": "still no device 'gauge-x'"},
    ]
    assert replayer.seen == [older, newer]
    assert other_device not in replayer.seen


async def test_replay_answers_501_while_no_pipeline_provides_a_replayer(
    bare_client: Client, tenant: str
) -> None:
    letter_id = await add(bare_client, tenant, "gauge-1")

    await problem(
        await call(bare_client, "POST", f"{LETTERS}/{letter_id}/replay", tenant), 501, "OperationNotSupported"
    )
    await problem(await call(bare_client, "POST", f"{LETTERS}/replay", tenant), 501, "OperationNotSupported")


async def test_concurrent_adds_each_get_their_own_id(client: Client, tenant: str) -> None:
    ids = await asyncio.gather(*(add(client, tenant, f"d{n}") for n in range(20)))

    assert len(set(ids)) == 20
    listed = await (await call(client, "GET", LETTERS, tenant, limit="50")).json()
    assert sorted(x["id"] for x in listed) == sorted(ids)


async def test_a_letter_cut_at_the_size_limit_is_not_replayed(
    client: Client, tenant: str, replayer: FakeReplayer
) -> None:
    limit = client.app[DEAD_LETTERS]._max_raw
    letter_id = await add(client, tenant, "gauge-1", b"fixed" + b" " * limit, "the message is too large")
    replayer.seen.clear()

    body = await (await call(client, "POST", f"{LETTERS}/{letter_id}/replay", tenant)).json()

    assert body["result"] == f"not replayed: only {limit} of its {limit + 5} bytes were kept"
    assert replayer.seen == []


async def test_letters_older_than_the_retention_are_forgotten(client: Client, tenant: str) -> None:
    old, recent = await add(client, tenant, "gauge-1"), await add(client, tenant, "gauge-1")
    pool = client.app[POOL]
    await pool.execute("UPDATE dead_letters SET received_at = now() - interval '31 days' WHERE id = $1", old)

    forgotten = await store(client).forget_before(30)

    assert forgotten >= 1
    assert await store(client).get(tenant, old) is None
    assert await store(client).get(tenant, recent) is not None


_odd = st.one_of(
    st.none(),
    st.text(),
    st.text(st.sampled_from(["\x00", "\ud800", "\udfff", "a", "水", "\n"]), max_size=8),
    st.binary(max_size=64),
    st.integers(),
    st.floats(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(
        st.text(max_size=5), st.text(st.sampled_from(["\x00", "\ud800", "b"]), max_size=5), max_size=3
    ),
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tenant=_odd, family=_odd, origin=_odd, headers=_odd, device=_odd, raw=_odd, reason=_odd)
async def test_adding_a_letter_never_fails_on_odd_values(
    client: Client, tenant: Any, family: Any, origin: Any, headers: Any, device: Any, raw: Any, reason: Any
) -> None:
    letters = store(client)

    letter_id = await letters.add(tenant, family, origin, headers, device, raw, reason)

    row = await client.app[POOL].fetchrow(
        "SELECT tenant, origin, family, reason FROM dead_letters WHERE id = $1", letter_id
    )
    assert row is not None
    kept = await letters.get(row["tenant"], letter_id)
    assert kept is not None
    assert kept.reason
    assert "\x00" not in kept.tenant + kept.reason + kept.origin + kept.family
