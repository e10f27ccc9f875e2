"""Fixtures of the e2e tests: the services a fault test owns (tests/e2e/services.py)."""

from tests.e2e.services import owned_mosquitto, owned_postgres

__all__ = ["owned_mosquitto", "owned_postgres"]
