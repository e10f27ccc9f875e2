"""The outbound address rule (broker.netguard) and the notification policy built on it (issue 12 item 7).

Pure decisions on addresses: nothing here connects anywhere, names resolve through a stub.
"""

from __future__ import annotations

import ipaddress

import pytest

from broker.config import ConfigError, load
from broker.netguard import GuardedResolver, Listener, RefusedAddress, host_port, public_only
from broker.notify.endpoints import notify_policy, own_listeners
from tests.dns import StubDns

INTERNAL = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # the cloud metadata service
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "::1",
    "fc00::1",
    "fe80::1",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:127.0.0.1",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
]
PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"]
BROKER = [Listener("127.0.0.1", 1026), Listener("127.0.0.1", 4041), Listener("127.0.0.1", 1883)]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize("address", INTERNAL)
def test_by_default_an_internal_address_is_refused(address: str) -> None:
    refused = notify_policy().refusal("h", 80, ip(address))
    assert refused is not None
    assert "NGSI_NOTIFY_ALLOW_PRIVATE=true" in notify_policy().explain("h", refused)


@pytest.mark.parametrize("address", PUBLIC)
def test_a_public_address_is_allowed(address: str) -> None:
    assert public_only(ip(address))
    assert notify_policy(own=BROKER).refusal("h", 1026, ip(address)) is None


@pytest.mark.parametrize("address", [a for a in INTERNAL if a != "0.0.0.0"])
def test_with_private_allowed_an_internal_address_is_allowed(address: str) -> None:
    assert notify_policy(allow_private=True, own=BROKER).refusal("h", 8080, ip(address)) is None


@pytest.mark.parametrize(
    ("host", "port"),
    [("127.0.0.1", 1026), ("127.0.0.1", 4041), ("127.0.0.1", 1883), ("[::ffff:127.0.0.1]", 1026)],
)
def test_the_brokers_own_listeners_are_refused_even_with_private_allowed(host: str, port: int) -> None:
    policy = notify_policy(allow_private=True, own=BROKER)
    refused = policy.refusal(host, port, ip(host.strip("[]")))
    assert refused is not None
    message = policy.explain(host, refused)
    assert "own listener" in message
    assert "NGSI_NOTIFY_ALLOW " in message


def test_the_unspecified_address_is_refused_even_with_private_allowed() -> None:
    assert notify_policy(allow_private=True).refusal("0.0.0.0", 8080, ip("0.0.0.0")) is not None


def test_a_broker_listening_on_every_address_is_refused_at_any_local_one() -> None:
    policy = notify_policy(allow_private=True, own=[Listener("0.0.0.0", 1026)])
    assert policy.refusal("h", 1026, ip("127.0.0.5")) is not None
    assert policy.refusal("h", 1027, ip("127.0.0.5")) is None
    assert policy.refusal("h", 1026, ip("10.255.255.254")) is None  # not an address of this machine


def test_a_listener_by_name_is_refused_by_its_name_and_once_learned_by_its_addresses() -> None:
    policy = notify_policy(allow_private=True, own=[Listener("mqtt.internal", 1883)])
    assert policy.refusal("MQTT.internal", 1883, ip("10.9.9.9")) is not None
    assert policy.refusal("other", 1883, ip("10.9.9.9")) is None


async def test_the_names_of_the_brokers_own_listeners_are_learned_at_start() -> None:
    policy = notify_policy(allow_private=True, own=[Listener("mqtt.internal", 1883)])
    await policy.learn_listeners(StubDns({"mqtt.internal": ["10.9.9.9"]}))
    assert policy.refusal("alias.example", 1883, ip("10.9.9.9")) is not None
    assert policy.refusal("alias.example", 1884, ip("10.9.9.9")) is None


@pytest.mark.parametrize("entry", ["receiver.lan", "10.1.2.0/24", "10.1.2.3"])
def test_the_allow_list_admits_a_private_receiver_by_name_address_or_network(entry: str) -> None:
    policy = notify_policy(allow=[entry])
    assert policy.refusal("receiver.lan", 80, ip("10.1.2.3")) is None
    assert policy.refusal("other.lan", 80, ip("10.1.3.3")) is not None


def test_the_allow_list_admits_one_of_the_brokers_own_listeners_only_when_it_names_it() -> None:
    assert notify_policy(allow=["127.0.0.1"], own=BROKER).refusal("127.0.0.1", 1883, ip("127.0.0.1")) is None
    assert notify_policy(allow=["10.0.0.0/8"], own=BROKER).refusal("x", 1883, ip("127.0.0.1")) is not None


def test_the_own_listeners_come_from_the_http_ports_the_mqtt_url_and_the_public_url() -> None:
    listeners = own_listeners(
        "0.0.0.0", (1026, 4041), ("mqtts://user:pw@mq.example", "https://hub.example.org/", "")
    )
    assert listeners == [
        Listener("0.0.0.0", 1026),
        Listener("0.0.0.0", 4041),
        Listener("mq.example", 8883),
        Listener("hub.example.org", 443),
    ]


def test_host_port_uses_the_schemes_default_port() -> None:
    assert host_port("http://a.example/x") == ("a.example", 80)
    assert host_port("mqtt://u:p@[::1]/t") == ("::1", 1883)
    assert host_port("https://a.example:8443") == ("a.example", 8443)


async def test_a_name_is_allowed_or_refused_by_the_address_it_resolves_to() -> None:
    guard = GuardedResolver(StubDns({"mixed.example": ["93.184.216.34"]}), notify_policy())
    assert await guard.addresses("mixed.example", 80) == ["93.184.216.34"]
    guard = GuardedResolver(StubDns({"mixed.example": ["10.0.0.1"]}), notify_policy())
    with pytest.raises(RefusedAddress):
        await guard.addresses("mixed.example", 80)


async def test_failures_at_an_allow_listed_private_address_hide_their_details() -> None:
    guard = GuardedResolver(StubDns({"receiver.lan": ["10.1.2.3"]}), notify_policy(allow=["receiver.lan"]))
    assert not guard.hides_details("http://receiver.lan/x")  # not resolved yet
    await guard.addresses("receiver.lan", 80)
    assert guard.hides_details("http://receiver.lan/x")
    assert guard.hides_details("http://10.1.2.3/x")
    assert not guard.hides_details("http://93.184.216.34/x")
    opened = GuardedResolver(StubDns({}), notify_policy(allow_private=True))
    assert not opened.hides_details("http://10.1.2.3/x")


def test_the_allow_list_setting_takes_names_addresses_and_networks() -> None:
    settings = load(
        {"NGSI_NOTIFY_ALLOW": "receiver.lan, 10.1.2.0/24,::1", "NGSI_NOTIFY_ALLOW_PRIVATE": "yes"}
    )
    assert settings.notify_allow == ("receiver.lan", "10.1.2.0/24", "::1")
    assert settings.notify_allow_private
    assert not load({}).notify_allow_private
    with pytest.raises(ConfigError, match="NGSI_NOTIFY_ALLOW"):
        load({"NGSI_NOTIFY_ALLOW": "http://receiver.lan/"})
