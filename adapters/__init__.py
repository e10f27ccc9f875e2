"""Southbound device adapters (MQTT, LoRaWAN, Sigfox, IoT Agent conventions).

They import from the broker only its write path (broker.ingest) and models;
the broker never imports them. Built by the device-ingestion issue.
"""
