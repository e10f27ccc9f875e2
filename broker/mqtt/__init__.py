"""MQTT for the whole process: one URL parser, one QoS set, one loop-driven paho client."""

from broker.mqtt.address import QOS, Broker, MqttVersion, parse_url
from broker.mqtt.client import KEEPALIVE, LoopClient, MqttError

__all__ = ["KEEPALIVE", "QOS", "Broker", "LoopClient", "MqttError", "MqttVersion", "parse_url"]
