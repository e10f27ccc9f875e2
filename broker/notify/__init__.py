"""Subscriptions: matching every committed change, the durable outbox, delivery over HTTP and MQTT."""
