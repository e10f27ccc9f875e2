"""Southbound device adapters (MQTT, LoRaWAN, Sigfox, IoT Agent conventions).

They import from the broker only its write path, models, errors, edge helpers, shape kit, clock,
supervisor, term maps, paho integration and the store's pool and listener; the rest of what they
need comes from broker/app.py as an adapters.keys.Host. The broker knows them through
adapters.wiring only (tests/unit/test_adapter_imports.py holds both to it).
"""
