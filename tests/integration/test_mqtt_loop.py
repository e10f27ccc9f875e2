"""broker.mqtt: paho on the asyncio loop against the real Mosquitto, and against a broker that misbehaves.

One URL parser and one QoS set for ingest and notifications; connect in an executor; a publish
returns once the broker acknowledged that message id, or fails after the client's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.mqtt import QOS, Broker, LoopClient, MqttError, MqttVersion, parse_url
from tests.conftest import eventually
from tests.integration.test_delivery import MQTT_URL, MqttListener, closed_port


def test_a_broker_url_gives_host_port_credentials_and_tls() -> None:
    assert Broker.from_url("mqtt://u%40x:p%3A@gw.example:1999") == Broker(
        "gw.example", 1999, "u@x", "p:", False
    )
    assert Broker.from_url("mqtts://gw.example").port == 8883
    assert Broker.from_url("mqtt://127.0.0.1").username is None
    assert Broker.from_url("mqtt://user@gw.example").password is None
    with pytest.raises(ValueError, match="mqtt://"):
        Broker.from_url("http://gw.example")


def test_one_parser_gives_the_topic_of_a_notification_endpoint_too() -> None:
    broker, topic = parse_url("mqtts://city:s%2Fcret@broker.example.org/flood/alerts%20north")
    assert broker == Broker("broker.example.org", 8883, "city", "s/cret", True)
    assert topic == "flood/alerts north"
    assert parse_url("mqtt://127.0.0.1:1883")[1] == ""
    with pytest.raises(ValueError, match="names no host"):
        parse_url("mqtt:///topic")
    with pytest.raises(ValueError, match="invalid port"):
        parse_url("mqtt://h:99999/t")


def test_the_qos_levels_are_those_of_mqtt_and_clause_7_2() -> None:
    assert {0, 1, 2} == QOS
    assert [v.value for v in MqttVersion] == ["mqtt3.1.1", "mqtt5.0"]


async def test_a_loop_client_connects_publishes_and_closes_without_leaving_its_socket() -> None:
    connected = asyncio.Event()
    published = asyncio.Event()
    paho = LoopClient(Broker.from_url(MQTT_URL), f"test-loop-{uuid.uuid4().hex[:8]}")
    paho.client.on_connect = lambda *_: connected.set()

    def on_publish(*_: Any) -> None:
        published.set()

    paho.client.on_publish = on_publish
    await paho.connect()
    async with asyncio.timeout(5):
        await connected.wait()
    paho.client.publish(f"test/loop/{uuid.uuid4().hex[:6]}", b"x", qos=1)
    async with asyncio.timeout(5):
        await published.wait()

    await paho.close()

    assert paho.client.socket() is None
    del paho
    gc.collect()  # with filterwarnings=error, an unclosed socket or a teardown error fails here


@pytest.mark.parametrize("version", list(MqttVersion))
@pytest.mark.parametrize("qos", sorted(QOS))
async def test_open_then_publish_returns_once_the_broker_has_the_message(
    qos: int, version: MqttVersion
) -> None:
    topic = f"test/loop/{uuid.uuid4().hex[:8]}"
    paho = LoopClient(
        Broker.from_url(MQTT_URL), f"test-ack-{uuid.uuid4().hex[:8]}", version=version, timeout=5
    )
    async with MqttListener(topic, qos=2) as listener:
        try:
            await paho.open()
            for n in range(3):
                await paho.publish(topic, f"m{n}".encode(), qos)
        finally:
            await paho.close()
        messages = await listener.wait(3)
    assert [(m.payload, m.qos) for m in messages] == [(b"m0", qos), (b"m1", qos), (b"m2", qos)]


async def test_a_refused_connection_is_an_mqtt_error_at_once() -> None:
    paho = LoopClient(Broker("127.0.0.1", closed_port(), None, None, False), "test-refused", timeout=5)
    try:
        async with asyncio.timeout(2):
            with pytest.raises(MqttError, match="connect failed"):
                await paho.open()
    finally:
        await paho.close()


async def test_a_client_that_took_paho_events_over_cannot_wait_for_them() -> None:
    paho = LoopClient(Broker.from_url(MQTT_URL), "test-taken-over")
    paho.client.on_publish = lambda *_: None
    with pytest.raises(RuntimeError, match="on_publish was replaced"):
        await paho.publish("t", b"x", 1)


# ------------------------------------------------------------------------------------------ a broker that misbehaves


class FakeBroker:
    """A TCP server on loopback that speaks just enough MQTT 3.1.1: CONNACK (unless ``silent``),
    then nothing at all, or (``drop``) it hangs up on the first PUBLISH."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = 0
        self.publishes = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        answered = False
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(4096):
                if self.mode == "silent":
                    continue
                if not answered:
                    writer.write(b"\x20\x02\x00\x00")  # CONNACK: accepted, no session
                    answered = True
                    chunk = chunk[1 + 1 + chunk[1] :]  # what followed CONNECT (a short one)
                if chunk[:1] == b"\xe0":  # DISCONNECT
                    break
                if chunk and chunk[0] >> 4 == 3:  # PUBLISH
                    self.publishes += 1
                    if self.mode == "drop":
                        break
        writer.close()


@contextlib.asynccontextmanager
async def fake_broker(mode: str) -> AsyncIterator[FakeBroker]:
    fake = FakeBroker(mode)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        for writer in fake.writers:
            writer.close()
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await server.wait_closed()


def client_of(fake: FakeBroker, timeout: float) -> LoopClient:
    broker = Broker("127.0.0.1", fake.port, None, None, False)
    return LoopClient(broker, f"test-fake-{uuid.uuid4().hex[:6]}", timeout=timeout)


async def test_a_publish_not_acknowledged_in_time_is_an_mqtt_error() -> None:
    async with fake_broker("connack") as fake:
        paho = client_of(fake, timeout=0.3)
        try:
            await paho.open()
            with pytest.raises(MqttError, match=r"not acknowledged within 0\.3 s"):
                await paho.publish("t", b"x", 1)
        finally:
            await paho.close()
    assert fake.publishes == 1


async def test_a_connection_lost_fails_the_publishes_waiting_for_their_acknowledgement() -> None:
    async with fake_broker("drop") as fake:
        paho = client_of(fake, timeout=10)
        try:
            await paho.open()
            async with asyncio.timeout(5):  # far sooner than the client's own 10 s
                with pytest.raises(MqttError, match="connection lost"):
                    await paho.publish("t", b"x", 1)
        finally:
            await paho.close()


async def test_connecting_runs_beside_the_loop_not_on_it() -> None:
    """A broker that takes the TCP connection and then never answers the TLS handshake: paho's
    connect blocks for its whole timeout, in the executor, while the loop goes on."""
    async with fake_broker("silent") as fake:
        paho = LoopClient(Broker("127.0.0.1", fake.port, None, None, True), "test-slow-tls", timeout=1.5)
        loop = asyncio.get_running_loop()
        ticks: list[float] = []

        async def tick() -> None:
            while True:
                ticks.append(loop.time())
                await asyncio.sleep(0.01)

        ticker = loop.create_task(tick())
        try:
            with pytest.raises(MqttError):
                await paho.open()
        finally:
            ticker.cancel()
            await paho.close()
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert ticks[-1] - ticks[0] >= 1.4
    assert max(gaps) < 0.75, f"the loop stood still for {max(gaps):.2f} s while connecting"


async def test_the_ingest_client_stops_reading_while_its_backlog_is_high_and_loses_nothing() -> None:
    from adapters.mqtt import MqttIngest
    from tests.conftest import forget_mqtt_session
    from tests.e2e.test_device_restart import publish_all

    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[None]] = []
    most = 0
    # Below Mosquitto's default of 20 unacknowledged QoS 1 messages in flight per client, so the
    # mark is reached on any broker configuration (deploy/mosquitto.conf allows 1000).
    HIGH_WATER = 10

    def handler(_topic: str, _payload: bytes) -> asyncio.Future[None]:
        nonlocal most
        future: asyncio.Future[None] = loop.create_future()
        waiting.append(future)
        most = max(most, len(waiting))
        return future

    async def slow_consumer() -> None:
        while True:
            await asyncio.sleep(0.01)
            for future in waiting[:50]:
                future.set_result(None)
            del waiting[:50]

    topic = f"test/flow/{uuid.uuid4().hex[:8]}"
    client_id = f"test-flow-{uuid.uuid4().hex[:8]}"
    ingest = MqttIngest(
        MQTT_URL, client_id, [f"{topic}/+"], handler, backlog=lambda: len(waiting), high_water=HIGH_WATER
    )
    await ingest.start()
    consumer: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(10):
            await ingest.wait_connected()
        publishing = asyncio.ensure_future(
            asyncio.to_thread(publish_all, [(f"{topic}/x", b"m" * 200)] * 3000)
        )
        # Nothing is consumed until the client has paused: however slowly a loaded machine
        # publishes, the backlog passes the mark (no race between publisher and consumer).
        await eventually(lambda: ingest.paused_times > 0, what="the client paused at the high-water mark")
        consumer = loop.create_task(slow_consumer())
        await publishing
        await eventually(lambda: ingest.acknowledged >= 3000, what="3000 messages acknowledged")
    finally:
        if consumer is not None:
            consumer.cancel()
        await ingest.close()
        await asyncio.to_thread(forget_mqtt_session, MQTT_URL, client_id)

    assert ingest.paused_times > 0
    assert most <= HIGH_WATER + 1, f"{most} messages held at once with a high-water mark of {HIGH_WATER}"


# ------------------------------------------------------------------------------------------ a connection reset


async def _reset_after_messages(count: int) -> tuple[int, bool, float]:
    """A broker that accepts the client, sends ``count`` PUBLISHes and a reset at once (as Mosquitto
    stopped with acknowledgements unread does); (messages read, connected at the end, seconds)."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    paho = LoopClient(Broker("127.0.0.1", port, None, None, False), f"test-reset-{uuid.uuid4().hex[:6]}")
    received: list[bytes] = []
    paho.client.on_message = lambda _c, _u, message: received.append(bytes(message.payload))
    try:
        opening = loop.create_task(paho.open())
        peer, _ = await loop.sock_accept(listener)
        # CONNACK; the client's CONNECT stays unread, so that closing the socket resets it.
        await loop.sock_sendall(peer, b"\x20\x02\x00\x00")
        await opening
        publishes = b"".join(b"\x30\x05\x00\x01t" + b"m%d" % (n % 10) for n in range(count))
        await loop.sock_sendall(peer, publishes)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        started = loop.time()
        with contextlib.suppress(AssertionError):  # reported below, with what was read
            await eventually(lambda: not paho.connected, within=3.0, what="the connection seen lost")
        return len(received), paho.connected, loop.time() - started
    finally:
        await paho.close()
        listener.close()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_reset_connection_is_seen_lost_after_its_buffered_messages_on_either_loop(loop_name: str) -> None:
    """uvloop calls a reader once more on a socket error and then closes its poll handle: the
    messages buffered before the reset were not read and the loss never seen (the client stayed
    'connected' for ever and its next write raised on the closed handle)."""
    import uvloop

    factory = uvloop.new_event_loop if loop_name == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        read, connected, seconds = runner.run(_reset_after_messages(20))
    assert not connected, f"still connected {seconds:.1f} s after the reset"
    assert read == 20
