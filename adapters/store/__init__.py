"""The SQL of the device side's features, one module each (provisioning keeps its own in
adapters/provisioning/store.py): commands, dead letters, secrets. Handlers and the pipeline call
these; no other adapters module writes SQL."""
