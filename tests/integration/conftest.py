"""Fixtures shared by the integration tests that need more than tests/conftest.py gives."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from broker.config import Settings
from tests.integration.auth_helpers import Secured, serve_secured


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[Secured]:
    """A broker app with authentication on and a key per role (see auth_helpers.serve_secured)."""
    async for served in serve_secured(settings):
        yield served
