"""Which queued rows form which notification (pure: no I/O, no clock).

One notification per notification_id: rows sharing an id (one periodic firing, or rows a
throttled subscription merged) go out together, ``data`` in row order, under that id; every
other row alone, under its own. Since rows sharing an id are written by one transaction, a
retry repeats exactly the same notification under the same id: a receiver that drops
duplicates by id never drops a row it has not seen, and never sees one row under two ids.
Two rows of one entity never share a notification.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from broker.store.delivery import Pending

_NOTIFICATION_NS = uuid.UUID("4f6e7c1e-9a52-4c43-8d4e-6e6f74696679")


def derived_id(*parts: str) -> str:
    """A notification id that is a function of ``parts`` (so a retry computes the same one)."""
    return f"urn:ngsi-ld:Notification:{uuid.uuid5(_NOTIFICATION_NS, chr(10).join(parts))}"


def notifications_of(rows: Sequence[Pending]) -> list[tuple[str, list[Pending]]]:
    """(id, rows) of each notification, in the order of their first rows.

    Rows sharing a notification_id form one notification; should they hold one entity
    twice, the later ones go in further notifications with ids derived from it.
    """
    by_id: dict[str, list[Pending]] = {}
    for row in rows:
        by_id.setdefault(row.notification_id, []).append(row)
    out: list[tuple[str, list[Pending]]] = []
    for nid, members in by_id.items():
        for part, run in enumerate(distinct_runs(members)):
            out.append((nid if part == 0 else derived_id(nid, str(part)), run))
    return out


def distinct_runs(rows: Sequence[Pending]) -> list[list[Pending]]:
    """Consecutive runs of rows with distinct entities: order kept, one entity at most once per run."""
    runs: list[list[Pending]] = []
    seen: set[str | None] = set()
    for row in rows:
        if not runs or row.entity_id in seen:
            runs.append([])
            seen = set()
        runs[-1].append(row)
        seen.add(row.entity_id)
    return runs


def seal_runs(rows: Sequence[Pending]) -> list[tuple[str, list[Pending]]]:
    """How a throttled release merges ``rows``: (shared id, rows) for runs of single rows of distinct
    entities; rows that already share an id (sealed before, or a firing) stay as they are."""
    shared = Counter(row.notification_id for row in rows)
    runs: list[list[Pending]] = [[]]
    for row in rows:
        if shared[row.notification_id] > 1:
            runs.append([])
            continue
        if any(row.entity_id == other.entity_id for other in runs[-1]):
            runs.append([])
        runs[-1].append(row)
    return [(derived_id(*(r.notification_id for r in run)), run) for run in runs if len(run) > 1]


def whole_batch(pending: list[Pending], batch: int) -> tuple[list[Pending], bool, str | None]:
    """The oldest rows of ``pending`` (read up to ``batch + 1``) without part of a notification.

    Returns (rows, whether more are pending, the notification id to read whole instead when one
    notification is larger than a batch). The row past the batch tells: when its notification
    has rows in the batch, they go next time with what follows them.
    """
    if len(pending) <= batch:
        return pending, False, None
    cut = pending[batch].notification_id
    rows = pending[:batch]
    first = next((i for i, row in enumerate(rows) if row.notification_id == cut), None)
    if first is None:
        return rows, True, None
    if first > 0:
        return rows[:first], True, None
    return [], True, cut  # one notification larger than a batch
