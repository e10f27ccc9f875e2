"""Database faults that pass: the one set of errors meaning "PostgreSQL is away right now".

A restart, a failover, a cut connection or a full connection table is not the request's fault
and not the data's: the same request succeeds once the database is back. Code that retries
(the device pipeline, the notifier, listeners) retries exactly these, and the HTTP edge answers
them with 503 and Retry-After. Any other database error is about the data or the SQL and must
fail the one request or message that caused it, never be retried forever.
"""

from __future__ import annotations

import asyncpg

TRANSIENT: tuple[type[BaseException], ...] = (
    # The socket went (reset, refused, timed out) or asyncpg found its connection closed.
    OSError,
    asyncpg.InterfaceError,
    # SQLSTATE class 08: connection exceptions.
    asyncpg.PostgresConnectionError,
    # 57P01-57P03: admin shutdown, crash shutdown, cannot connect now (starting or recovering).
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    # 53300: no connection slot left (many workers and hosts).
    asyncpg.TooManyConnectionsError,
    # 25006: connected to a standby that has not been promoted yet (failover in progress).
    asyncpg.ReadOnlySQLTransactionError,
    # "cannot switch to state N; another operation (M) is in progress": a pooled connection the
    # server terminated (a restart) while asyncpg had not yet processed the termination. Seen in
    # tests/e2e/test_postgres_restart.py on writes, the notifier and the device pipeline.
    asyncpg.InternalClientError,
)


def is_transient(error: BaseException) -> bool:
    """True when ``error`` says the database is unavailable, not that the request is wrong."""
    return isinstance(error, TRANSIENT)
