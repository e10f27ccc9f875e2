"""The error hierarchy: statuses fixed per class, and the once-per-outage log of the database being away."""

from __future__ import annotations

import logging

import pytest

from broker import errors
from broker.errors import DatabaseUnavailable, NgsiLdError, Outages
from tests.clock import ManualClock


def every_error_class() -> list[type[NgsiLdError]]:
    found: list[type[NgsiLdError]] = []
    pending = [NgsiLdError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_each_error_class_has_one_status_and_an_etsi_type_no_instance_can_change() -> None:
    for cls in every_error_class():
        assert 400 <= cls.status < 600, cls
        assert cls.type_name, cls
        with pytest.raises(TypeError):
            cls("detail", status=200)


def test_the_http_statuses_of_the_edge_have_their_own_classes() -> None:
    statuses = {cls.status: cls for cls in every_error_class() if cls.__module__ == errors.__name__}
    assert {405, 406, 413, 415, 503} <= set(statuses)
    assert DatabaseUnavailable("x").headers() == {"Retry-After": "5"}


async def test_an_outage_is_logged_once_and_its_end_once_however_many_requests_it_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    outages = Outages(clock, quiet=10.0)
    with caplog.at_level(logging.INFO, logger="broker.errors"):
        for _ in range(50):
            outages.failed(ConnectionRefusedError("refused"))
            await clock.advance(1.0)
        outages.served()
        assert len(mine(caplog)) == 1
        await clock.advance(10.0)
        outages.served()
        outages.failed(ConnectionRefusedError("again"))
    messages = [r.getMessage() for r in mine(caplog)]
    assert len(messages) == 3, messages
    assert messages[0].startswith("database unavailable")
    assert messages[1] == "database reachable again; 50 requests were answered 503 meanwhile"
    assert messages[2].startswith("database unavailable")
    assert not any(r.exc_info for r in mine(caplog))


def mine(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # The session's app shares the loop and logs too (e.g. its notifier after an earlier test).
    return [r for r in caplog.records if r.name == "broker.errors"]
