"""Issue 11: fuzzing every device endpoint and MQTT topic family and every NGSI-LD body.

Bounded and reproducible: hypothesis with ``derandomize=True`` and no example database, so the
same examples run on every machine, and few enough of them for the file to take under a minute.
Properties (ETSI GS CIM 009 V1.9.1 clause 5.5.2 for the errors):

- no input is answered 5xx;
- a refused NGSI-LD body (4xx) is ProblemDetails with an ETSI error type and changes nothing:
  the tenant's entities (and their versions), subscriptions, history and @contexts are as before;
- a refused device message leaves one dead letter and stores nothing, the pipeline meets no
  unexpected error (its fault counter stays), and the valid message of the same device sent right
  after it is stored (the pipeline is not stuck).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import asyncpg
import orjson
import paho.mqtt.client as mqtt
import pytest
from aiohttp import ClientResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from adapters.http import PIPELINE
from adapters.pipeline import Pipeline
from broker.api.keys import POOL
from tests.conftest import Api, eventually, new_id
from tests.integration.fuzz_devices import (
    CHANNELS,
    HTTP,
    PROVISIONING,
    Channel,
    Message,
    Provisioning,
    device_body,
    group_body,
    provision_channels,
)
from tests.integration.fuzz_inputs import CORE, ENDPOINT, ERRORS, TARGETS, Target, entity, hostile
from tests.integration.test_delivery import MQTT_HOST, MQTT_PORT

# Longer, random runs to hunt for defects (not in the test command): NGSI_FUZZ_SCALE=20
# multiplies the examples, NGSI_FUZZ_RANDOM=1 draws new ones on every run.
SCALE = int(os.environ.get("NGSI_FUZZ_SCALE", "1"))
RANDOM = os.environ.get("NGSI_FUZZ_RANDOM", "") == "1"


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# What a tenant holds, as one comparable value: a refused request must leave it as it was.
_TENANT_STATE = """
SELECT
  (SELECT count(*) FROM tenants WHERE name = $1),
  (SELECT count(*) || ' ' || coalesce(md5(string_agg(
      id || ' ' || array_to_string(types, ',') || ' ' || coalesce(array_to_string(scopes, ','), '')
      || ' ' || modified_at::text || ' ' || md5(attrs::text), '|' ORDER BY id)), '')
   FROM entities WHERE tenant = $1),
  (SELECT count(*) || ' ' || coalesce(md5(string_agg(id || ' ' || modified_at::text || ' '
      || md5(body::text), '|' ORDER BY id)), '')
   FROM subscriptions WHERE tenant = $1),
  (SELECT count(*) FROM attribute_history WHERE tenant = $1),
  (SELECT count(*) || ' ' || coalesce(md5(string_agg(id, '|' ORDER BY id)), '')
   FROM jsonld_contexts WHERE tenant = $1)
"""


async def tenant_state(pool: asyncpg.Pool, tenant: str) -> tuple[Any, ...]:
    row = await pool.fetchrow(_TENANT_STATE, tenant)
    assert row is not None
    return tuple(row)


async def is_problem(response: ClientResponse) -> dict[str, Any]:
    """The body of an error response, checked to be ProblemDetails of an ETSI error type."""
    body = orjson.loads(await response.read())
    assert isinstance(body, dict), body
    assert isinstance(body.get("type"), str), body
    assert body["type"].startswith(ERRORS), body
    assert isinstance(body.get("title"), str), body
    assert body["title"], body
    assert body.get("status", response.status) == response.status, body
    return body


async def assert_not_a_server_error(response: ClientResponse) -> None:
    """Below 500, or 501 for a part of the API the broker declines on purpose (NotImplementedYet,
    an OperationNotSupported: a subscription's temporalQ, say), never a crash or a lost database."""
    if response.status == 501:
        body = await is_problem(response)
        assert body["type"] == ERRORS + "OperationNotSupported", body
        return
    assert response.status < 500, await response.text()


# --- NGSI-LD bodies ---------------------------------------------------------------------------------

# Per tenant (one per test function, shared by its examples): the entity and subscription the
# paths name.
_scenes: dict[str, tuple[str, str]] = {}


async def scene(api: Api) -> tuple[str, str]:
    """The tenant's existing entity (created again if an example deleted it) and subscription."""
    if api.tenant not in _scenes:
        entity_id = new_id("FuzzThing")
        subscription = {
            "type": "Subscription",
            "entities": [{"type": "FuzzNothing"}],
            "notification": {"endpoint": {"uri": ENDPOINT}},
        }
        response = await api.request("POST", "/ngsi-ld/v1/subscriptions", subscription)
        assert response.status == 201, await response.text()
        _scenes[api.tenant] = (entity_id, response.headers["Location"].rsplit("/", 1)[1])
    entity_id, subscription_id = _scenes[api.tenant]
    if (await api.get(entity_id)).status == 404:
        response = await api.create(entity(entity_id))
        assert response.status == 201, await response.text()
    return entity_id, subscription_id


@pytest.mark.parametrize("target", TARGETS, ids=[target.name for target in TARGETS])
@fuzz(20)
@given(data=st.data())
async def test_a_hostile_ngsi_ld_body_gets_a_4xx_problem_and_changes_nothing(
    api: Api, target: Target, data: st.DataObject
) -> None:
    entity_id, subscription_id = await scene(api)
    body = data.draw(hostile(target.valid(new_id("FuzzThing"), entity_id)), label="body")
    path = target.path.format(entity=entity_id, subscription=subscription_id)
    pool = api.client.app[POOL]
    before = await tenant_state(pool, api.tenant)

    response = await api.request(target.method, path, raw=body, content_type=target.content_type)

    await assert_not_a_server_error(response)
    if response.status >= 400:
        await is_problem(response)
        assert await tenant_state(pool, api.tenant) == before
    elif response.status == 207:
        # A BatchOperationResult (clause 5.2.16) names ProblemDetails; an UpdateResult (5.2.18) reasons.
        result = orjson.loads(await response.read())
        for error in result.get("errors", []):
            assert error["error"]["type"].startswith(ERRORS), error
        for refused in result.get("notUpdated", []):
            assert isinstance(refused["attributeName"], str), refused
            assert refused["reason"], refused
        assert "errors" in result or "notUpdated" in result, result


@pytest.mark.parametrize("target", TARGETS, ids=[target.name for target in TARGETS])
async def test_every_body_the_mutations_start_from_is_accepted(api: Api, target: Target) -> None:
    """The fuzzing starts at the edge of what is valid, not in what the parser refuses at once."""
    entity_id, subscription_id = await scene(api)
    body = orjson.dumps(target.valid(new_id("FuzzThing"), entity_id))
    path = target.path.format(entity=entity_id, subscription=subscription_id)
    response = await api.request(target.method, path, raw=body, content_type=target.content_type)
    assert response.status in (200, 201, 204, 207), await response.text()


# --- device messages --------------------------------------------------------------------------------

_channels: dict[str, dict[str, Channel]] = {}
_values = iter(range(1000, 10**9))


async def channels_of(api: Api) -> dict[str, Channel]:
    if api.tenant not in _channels:
        _channels[api.tenant] = await provision_channels(api)
    return _channels[api.tenant]


async def value_of(api: Api, entity_id: str) -> Any:
    response = await api.get(entity_id)
    if response.status != 200:
        return None
    n = orjson.loads(await response.read()).get("n")
    return n.get("value") if isinstance(n, dict) else n


async def last_letter(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM dead_letters"))


async def letters_since(pool: asyncpg.Pool, after: int) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM dead_letters WHERE id > $1", after))


def settled(pipeline: Pipeline) -> int:
    """Messages the pipeline has given a verdict (stored, duplicate, dead-lettered or ignored)."""
    stats = pipeline.stats
    return stats.accepted + stats.duplicates + stats.rejected + stats.ignored


def publish(topic: str, payload: bytes) -> None:
    """Publish with QoS 1 and wait (bounded) for Mosquitto's PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-{uuid.uuid4().hex[:10]}")
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"Mosquitto did not acknowledge {topic!r}"
    finally:
        client.disconnect()
        client.loop_stop()


async def send(api: Api, channel: Channel, message: Message) -> int | None:
    """Send ``message`` the channel's way; its HTTP status (None over MQTT)."""
    if channel.transport != HTTP:
        await asyncio.to_thread(publish, message.where, message.body)
        return None
    response = await api.request(
        "POST",
        message.where,
        raw=message.body,
        content_type=message.content_type,
        headers=dict(message.headers),
    )
    await assert_not_a_server_error(response)
    if response.status >= 400:
        await is_problem(response)
    return response.status


@pytest.mark.parametrize("name", CHANNELS)
@fuzz(12)
@given(data=st.data())
async def test_a_hostile_device_message_is_dead_lettered_and_the_next_valid_one_is_stored(
    api: Api, name: str, data: st.DataObject
) -> None:
    channel = (await channels_of(api))[name]
    message = data.draw(channel.hostile, label="message")
    pool, pipeline = api.client.app[POOL], api.client.app[PIPELINE]
    letters, state = await last_letter(pool), await tenant_state(pool, api.tenant)
    done, rejected, faults = settled(pipeline), pipeline.stats.rejected, pipeline.stats.faults

    status = await send(api, channel, message)
    if status is None:
        await eventually(lambda: settled(pipeline) > done, within=10, what=f"a verdict on {message}")
    if status == 400 or pipeline.stats.rejected > rejected:
        assert pipeline.stats.rejected == rejected + 1, message
        assert await letters_since(pool, letters) == 1, message
        assert await tenant_state(pool, api.tenant) == state, message
    assert pipeline.stats.faults == faults, message

    value = next(_values)
    valid = channel.valid(value)
    status = await send(api, channel, valid)
    assert status in (None, 200), (valid, status)

    async def stored() -> bool:
        return bool(await value_of(api, channel.entity_id) == value)

    await eventually(stored, within=10, what=f"{name}: value {value} stored after {message}")


# --- the provisioning API ---------------------------------------------------------------------------

_PROVISIONED = """
SELECT
  (SELECT count(*) || ' ' || coalesce(md5(string_agg(row_to_json(g)::text, '|' ORDER BY g.apikey)), '')
   FROM service_groups g WHERE tenant = $1),
  (SELECT count(*) || ' ' || coalesce(md5(string_agg(row_to_json(d)::text, '|' ORDER BY d.device_id)), '')
   FROM devices d WHERE tenant = $1)
"""
_provisioned: dict[str, tuple[str, str]] = {}


async def provisioned(api: Api) -> tuple[str, str]:
    """The tenant's existing service group (its apikey) and device, made once per tenant."""
    if api.tenant not in _provisioned:
        apikey, device = f"pk{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:6].upper()
        headers = {"fiware-service": api.tenant, "fiware-servicepath": "/"}
        for path, body in (
            ("/iot/services", {"services": [group_body(apikey)]}),
            ("/iot/devices", {"devices": [device_body(device)]}),
        ):
            response = await api.request("POST", path, body, headers=headers)
            assert response.status == 201, await response.text()
        _provisioned[api.tenant] = (apikey, device)
    return _provisioned[api.tenant]


@pytest.mark.parametrize("operation", PROVISIONING, ids=[operation.name for operation in PROVISIONING])
@fuzz(20)
@given(data=st.data())
async def test_a_hostile_provisioning_body_gets_a_4xx_problem_and_changes_nothing(
    api: Api, operation: Provisioning, data: st.DataObject
) -> None:
    apikey, device = await provisioned(api)
    fresh = uuid.uuid4().hex[:10].upper()
    body = data.draw(hostile(operation.valid(fresh, device)), label="body")
    pool = api.client.app[POOL]
    before = await pool.fetchrow(_PROVISIONED, api.tenant)

    response = await api.request(
        operation.method,
        operation.path.format(apikey=apikey, device=device),
        raw=body,
        headers={"fiware-service": api.tenant, "fiware-servicepath": "/"},
    )

    await assert_not_a_server_error(response)
    if response.status >= 400:
        await is_problem(response)
        assert await pool.fetchrow(_PROVISIONED, api.tenant) == before


@pytest.mark.parametrize("operation", PROVISIONING, ids=[operation.name for operation in PROVISIONING])
async def test_every_provisioning_body_the_mutations_start_from_is_accepted(
    api: Api, operation: Provisioning
) -> None:
    apikey, device = await provisioned(api)
    response = await api.request(
        operation.method,
        operation.path.format(apikey=apikey, device=device),
        operation.valid(uuid.uuid4().hex[:10].upper(), device),
        headers={"fiware-service": api.tenant, "fiware-servicepath": "/"},
    )
    assert response.status in (201, 204), await response.text()


# --- defects the fuzzing found, each pinned by a deterministic example ---------------------------------


async def test_a_nul_in_a_device_query_parameter_is_dead_lettered_not_only_refused(api: Api) -> None:
    """Found by the fuzz test: ``/iot/json?...&t=%00`` was refused 400 by the NUL middleware before
    the pipeline saw it, so no dead letter told the operator (README "Dead letters")."""
    channel = (await channels_of(api))["iota-json http"]
    pool = api.client.app[POOL]
    letters = await last_letter(pool)
    where = channel.valid(1).where

    response = await api.request("POST", where + "&t=%00", raw=b'{"n": 1}')

    body = await is_problem(response)
    assert response.status == 400, body
    assert "dead letter" in body["detail"], body
    assert await letters_since(pool, letters) == 1
    reason = await pool.fetchval("SELECT reason FROM dead_letters WHERE id > $1", letters)
    assert "t" in reason, reason
    assert await value_of(api, channel.entity_id) is None
    response = await api.request("POST", where, raw=b'{"n": 2}')
    assert response.status == 200, await response.text()
    assert await value_of(api, channel.entity_id) == 2


async def test_a_nul_in_an_ngsi_ld_parameter_is_still_refused(api: Api) -> None:
    response = await api.request("GET", "/ngsi-ld/v1/entities", params={"type": "a\x00b"})
    body = await is_problem(response)
    assert response.status == 400, body
    assert body["type"] == ERRORS + "BadRequestData", body


async def test_a_declined_part_of_the_api_is_501_operation_not_supported_and_changes_nothing(
    api: Api,
) -> None:
    """Found by the random hunt: the one 5xx a body may get is this deliberate one."""
    _, subscription_id = await scene(api)
    pool = api.client.app[POOL]
    before = await tenant_state(pool, api.tenant)
    body = {"temporalQ": {"timerel": "after", "timeAt": "2026-01-01T00:00:00Z"}}

    response = await api.request("PATCH", f"/ngsi-ld/v1/subscriptions/{subscription_id}", body)

    assert response.status == 501, await response.text()
    await assert_not_a_server_error(response)
    assert await tenant_state(pool, api.tenant) == before


async def test_a_refused_request_with_an_inline_context_keeps_no_implicit_context(api: Api) -> None:
    """Found by the fuzz test: the inline @context of a request was kept (ImplicitlyCreated) as soon
    as it was resolved, so a request refused afterwards (here: ``type`` {}) still left a row, even
    for a tenant that does not exist; now it is kept only once the request has succeeded."""
    pool = api.client.app[POOL]
    context = [{"fuzz": "https://example.org/fuzz#", "temperature": "https://example.org/fuzz#t"}, CORE]
    refused = {"id": new_id("FuzzThing"), "type": {}, "@context": context}

    response = await api.create(refused)

    await is_problem(response)
    assert response.status == 400
    kept = "SELECT count(*) FROM jsonld_contexts WHERE tenant = $1 AND kind = 'ImplicitlyCreated'"
    assert await pool.fetchval(kept, api.tenant) == 0
    assert (await api.create({**refused, "type": "FuzzThing"})).status == 201
    assert await pool.fetchval(kept, api.tenant) == 1
