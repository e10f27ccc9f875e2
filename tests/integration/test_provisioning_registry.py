"""The provisioning registry on the real store: coherence across processes, autoprovision, lookups."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from adapters.device import DeviceConfig
from adapters.message import CHIRPSTACK, IOTA_JSON, SIGFOX, TTS, DeviceMessage, Family, Rejected
from adapters.provisioning import Registry, parse_device, parse_group
from adapters.provisioning.registry import LISTEN_PART, PART
from adapters.provisioning.store import DUPLICATE_GROUP
from broker.errors import AlreadyExists
from broker.store import create_pool, migrate
from broker.supervise import Supervisor
from tests.conftest import database_url, eventually


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url(), min_size=1, max_size=6, connect_timeout=10)
    await migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture
async def registries(pool: asyncpg.Pool) -> AsyncIterator[tuple[Registry, Registry]]:
    """Two registries on one database, as two broker processes hold them."""
    first, second = Registry(pool, flush_interval=0.05), Registry(pool, flush_interval=0.05)
    supervisor = Supervisor()
    await first.start(supervisor)
    await second.start(Supervisor())
    assert set(supervisor.report()) == {PART, LISTEN_PART}, "the upkeep and the LISTEN are supervised"
    assert supervisor.problems() == {}
    yield first, second
    await first.stop()
    await second.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def seen(lookup: Callable[[], DeviceConfig | None]) -> DeviceConfig:
    """The config ``lookup`` finds once the registry has seen the change (a NOTIFY travels
    asynchronously)."""
    found = await eventually(lookup, what="the registry seeing the change")
    assert found is not None
    return found


def message(family: Family, device_id: str, **fields: Any) -> DeviceMessage:
    return DeviceMessage(
        family=family, origin="test", device_id=device_id, received_at=datetime.now(UTC), **fields
    )


async def test_a_device_stored_through_one_registry_reaches_the_other_by_notify(
    registries: tuple[Registry, Registry],
) -> None:
    first, second = registries
    tenant, apikey = unique("town"), unique("key")
    group = parse_group({"apikey": apikey, "entity_type": "Vehicle", "autoprovision": False}, tenant, "/")
    await first.store.add_groups([group])
    device = parse_device({"device_id": "plow-1", "apikey": apikey}, tenant, "/", [group])
    await first.store.add_devices([device])

    found = await seen(lambda: second.by_apikey_device(apikey, "plow-1"))

    assert (found.tenant, found.entity_type, found.entity_name) == (
        tenant,
        "Vehicle",
        "urn:ngsi-ld:Vehicle:plow-1",
    )
    await first.store.delete_device(device)
    await eventually(lambda: second.by_apikey_device(apikey, "plow-1") is None)


async def test_an_unknown_device_of_an_autoprovision_group_is_made_then_stored_once(
    registries: tuple[Registry, Registry], pool: asyncpg.Pool
) -> None:
    first, second = registries
    tenant, apikey = unique("town"), unique("key")
    spec = {
        "apikey": apikey,
        "entity_type": "Device",
        "entityNameExp": "'urn:ngsi-ld:Device:' + subservice + id",
    }
    await first.store.add_groups([parse_group(spec, tenant, "/north")])
    await eventually(lambda: second.groups(tenant))

    made_here = await seen(lambda: first.by_apikey_device(apikey, "tag-9"))
    made_there = second.by_apikey_device(apikey, "tag-9")

    assert made_there is not None
    assert made_here.provisioned is False
    assert made_here.entity_name == made_there.entity_name == "urn:ngsi-ld:Device:/northtag-9"
    stored = await eventually(lambda: (c := first.by_apikey_device(apikey, "tag-9")) and c.provisioned)
    assert stored
    rows = await pool.fetch(
        "SELECT autoprovisioned FROM devices WHERE tenant = $1 AND device_id = 'tag-9'", tenant
    )
    assert [row["autoprovisioned"] for row in rows] == [True]


async def test_a_group_without_autoprovision_knows_only_its_provisioned_devices(
    registries: tuple[Registry, Registry],
) -> None:
    first, _ = registries
    tenant, apikey = unique("town"), unique("key")
    await first.store.add_groups([parse_group({"apikey": apikey, "autoprovision": False}, tenant, "/")])
    await first.reload(tenant)

    assert first.by_apikey_device(apikey, "stranger") is None
    assert first.by_apikey_device(unique("unknown-key"), "stranger") is None


async def test_an_autoprovisioned_id_that_cannot_name_an_entity_is_rejected(
    registries: tuple[Registry, Registry],
) -> None:
    first, _ = registries
    tenant, apikey = unique("town"), unique("key")
    await first.store.add_groups([parse_group({"apikey": apikey}, tenant, "/")])
    await first.reload(tenant)

    with pytest.raises(Rejected, match="cannot name an entity"):
        first.by_apikey_device(apikey, "two words")


async def test_find_looks_devices_up_by_dev_eui_sigfox_id_and_apikey(
    registries: tuple[Registry, Registry],
) -> None:
    first, _ = registries
    tenant, apikey, dev_eui, gauge = unique("town"), unique("key"), uuid.uuid4().hex[:16], unique("gauge")
    sigfox_id = uuid.uuid4().hex[:8].upper()
    group = parse_group({"apikey": apikey, "autoprovision": False}, tenant, "/")
    devices = [
        parse_device({"device_id": gauge, "dev_eui": dev_eui, "protocol": "tts"}, tenant, "/", []),
        parse_device({"device_id": sigfox_id.lower(), "protocol": "sigfox"}, tenant, "/", []),
        parse_device({"device_id": "sensor-1", "apikey": apikey}, tenant, "/", [group]),
    ]
    await first.store.add_groups([group])
    await first.store.add_devices(devices)
    await first.reload(tenant)

    by_eui = first.find(message(TTS, "whatever", dev_eui=dev_eui.upper()))
    by_tts_id = first.find(message(TTS, gauge))
    by_sigfox = first.find(message(SIGFOX, sigfox_id.lower()))
    by_apikey = first.find(message(IOTA_JSON, "sensor-1", apikey=apikey))

    assert by_eui is not None
    assert by_eui.device_id == gauge
    assert by_tts_id == by_eui
    assert by_sigfox is not None
    assert by_sigfox.device_id == sigfox_id
    assert by_apikey is not None
    assert by_apikey.apikey == apikey
    assert first.find(message(SIGFOX, "0")) is None


async def test_groups_of_two_tenants_cannot_share_an_apikey_even_on_different_resources(
    registries: tuple[Registry, Registry],
) -> None:
    """Issue 12 item 7: a message names only its apikey, so one tenant holds it (migration 0030)."""
    first, _ = registries
    apikey, east, west = unique("key"), unique("east"), unique("west")
    await first.store.add_groups([parse_group({"apikey": apikey, "resource": "/iot/json"}, east, "/")])
    with pytest.raises(AlreadyExists) as refused:
        await first.store.add_groups([parse_group({"apikey": apikey, "resource": "/iot/d"}, west, "/")])
    assert refused.value.extra["name"] == DUPLICATE_GROUP
    await first.reload(east)
    await first.reload(west)

    chosen = first.by_apikey_device(apikey, "dev-1", tenant=west)

    assert chosen is not None
    assert chosen.tenant == east


async def test_a_network_device_id_shared_by_two_tenants_finds_nothing_without_a_dev_eui(
    registries: tuple[Registry, Registry],
) -> None:
    first, _ = registries
    shared, east, west = unique("gauge"), unique("east"), unique("west")
    for tenant in (east, west):
        await first.store.add_devices(
            [parse_device({"device_id": shared, "protocol": "chirpstack"}, tenant, "/", [])]
        )
        await first.reload(tenant)

    assert first.find(message(CHIRPSTACK, shared)) is None
    named = first.find(message(CHIRPSTACK, shared, tenant=west))
    assert named is not None
    assert named.tenant == west


async def test_a_changed_device_replaces_the_old_one_in_the_other_registry(
    registries: tuple[Registry, Registry],
) -> None:
    first, second = registries
    tenant, apikey = unique("town"), unique("key")
    group = parse_group(
        {"apikey": apikey, "autoprovision": False, "model_params": {"alertLevel": 2}}, tenant, "/"
    )
    await first.store.add_groups([group])
    old = parse_device({"device_id": "g1", "apikey": apikey}, tenant, "/", [group])
    unchanged = parse_device({"device_id": "g2", "apikey": apikey}, tenant, "/", [group])
    await first.store.add_devices([old, unchanged])
    kept = await seen(lambda: second.by_apikey_device(apikey, "g2"))
    new = parse_device(
        {"device_id": "g1", "apikey": apikey, "model_params": {"dangerLevel": 3}}, tenant, "/", [group]
    )

    await first.store.replace_device(old, new)

    await eventually(lambda: (c := second.by_apikey_device(apikey, "g1")) and "dangerLevel" in c.model_params)
    changed = second.by_apikey_device(apikey, "g1")
    assert changed is not None
    assert changed.model_params == {"alertLevel": 2, "dangerLevel": 3}
    assert second.by_apikey_device(apikey, "g2") is kept


async def test_a_registry_whose_listening_connection_dies_listens_again_and_catches_up(
    registries: tuple[Registry, Registry], pool: asyncpg.Pool
) -> None:
    first, second = registries
    connection = second._listener._connection  # the connection a database restart would cut
    assert connection is not None
    await pool.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
    tenant, apikey = unique("town"), unique("key")
    group = parse_group({"apikey": apikey, "autoprovision": False}, tenant, "/")
    await first.store.add_groups([group])
    await first.store.add_devices([parse_device({"device_id": "d1", "apikey": apikey}, tenant, "/", [group])])

    found = await seen(lambda: second.by_apikey_device(apikey, "d1"))

    assert found.tenant == tenant
    assert second._listener.reconnects == 1


async def test_a_tenant_reloaded_while_everything_is_read_keeps_its_newer_devices(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole reload (the resync, or after a lost LISTEN) read before a device was stored must not
    swap that device out again once a NOTIFY's reload of its tenant has seen it."""
    registry = Registry(pool)
    tenant, apikey = unique("town"), unique("key")
    group = parse_group({"apikey": apikey, "entity_type": "Vehicle", "autoprovision": False}, tenant, "/")
    await registry.store.add_groups([group])
    read_before = await registry.store.all_rows()
    device = parse_device({"device_id": "plow-2", "apikey": apikey}, tenant, "/", [group])
    await registry.store.add_devices([device])

    async def stale_read() -> Any:
        await registry.reload(tenant)  # the NOTIFY's reload, done while the whole read was out
        return read_before

    monkeypatch.setattr(registry.store, "all_rows", stale_read)
    await registry.load_all()

    found = registry.by_apikey_device(apikey, "plow-2")
    assert found is not None
    assert found.tenant == tenant
