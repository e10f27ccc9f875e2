"""The SQL of the dead_letters table (migration 0005), run by adapters.deadletters.DeadLetters.

Parameters, in order, are named by each statement's comment.
"""

from __future__ import annotations

_COLUMNS = (
    "id, tenant, received_at, family, origin, headers, device, raw, raw_size, reason,"
    " replayed_at, replay_result"
)

# tenant, family, origin, headers, device, raw, raw_size, reason -> id
ADD = (
    "INSERT INTO dead_letters (tenant, family, origin, headers, device, raw, raw_size, reason)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id"
)
# tenant, device or NULL, since or NULL, limit, offset -> letters, newest first
PAGE = (
    f"SELECT {_COLUMNS} FROM dead_letters WHERE tenant = $1"
    " AND ($2::text IS NULL OR device = $2) AND ($3::timestamptz IS NULL OR received_at >= $3)"
    " ORDER BY id DESC LIMIT $4 OFFSET $5"
)
# tenant, device or NULL, since or NULL, limit, the replay result that counts as done -> oldest first
TO_REPLAY = (
    f"SELECT {_COLUMNS} FROM dead_letters WHERE tenant = $1"
    " AND ($2::text IS NULL OR device = $2) AND ($3::timestamptz IS NULL OR received_at >= $3)"
    " AND replay_result IS DISTINCT FROM $5 ORDER BY id LIMIT $4"
)
# tenant, id -> the letter
GET = f"SELECT {_COLUMNS} FROM dead_letters WHERE tenant = $1 AND id = $2"
# tenant, id
DELETE = "DELETE FROM dead_letters WHERE tenant = $1 AND id = $2"
# days
FORGET_BEFORE = "DELETE FROM dead_letters WHERE received_at < now() - make_interval(days => $1)"
# id, result
MARK_REPLAYED = "UPDATE dead_letters SET replayed_at = now(), replay_result = $2 WHERE id = $1"
