"""Moved to broker.mqtt (one paho integration for ingest and notifications); this shim goes once
adapters import broker.mqtt themselves."""

from broker.mqtt import KEEPALIVE, Broker, LoopClient

__all__ = ["KEEPALIVE", "Broker", "LoopClient"]
