"""``orderBy``: the order of a query's results, and the SQL ORDER BY it becomes.

GS CIM 009 V1.9.1 returns query results in an order it leaves to the broker (this one: by id);
``orderBy`` is this broker's extension, spelled as the brokers that have one do: a comma-separated
list of keys, each ``name``, ``name;asc`` or ``name;desc`` (``!name`` is accepted for descending,
as FIWARE Orion writes it). A key is ``id``, ``type``, ``createdAt``, ``modifiedAt`` or an
attribute name, which orders by the value of the attribute's default instance (jsonb order:
numbers numerically, strings by text, entities without it last). The id always breaks ties, so
pages never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import BadRequestData
from broker.jsonld.context import TermMap
from broker.model.parse import check_name
from broker.query.params import Params

MAX_ORDER_KEYS = 4
_COLUMNS = {
    "id": "{a}.id",
    "type": "{a}.types[1]",
    "createdAt": "{a}.created_at",
    "modifiedAt": "{a}.modified_at",
}


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One key of orderBy: a column (id, type, createdAt, modifiedAt) or an expanded attribute name."""

    name: str
    descending: bool = False
    attribute: bool = True


def parse_order_by(raw: str, tm: TermMap) -> tuple[OrderKey, ...]:
    """The keys of an orderBy parameter; BadRequestData for a malformed one."""
    keys: list[OrderKey] = []
    for part in raw.split(","):
        text, _, direction = part.strip().partition(";")
        text = text.strip()
        descending = text.startswith("!")
        if descending:
            text = text[1:]
        direction = direction.strip()
        if direction not in ("", "asc", "desc") or (descending and direction):
            raise BadRequestData(f"orderBy: {part.strip()!r} must be name, name;asc, name;desc or !name")
        descending = descending or direction == "desc"
        check_name(text, "orderBy key")
        if text in _COLUMNS:
            keys.append(OrderKey(text, descending, attribute=False))
        else:
            keys.append(OrderKey(tm.expand(text), descending))
    if len(keys) > MAX_ORDER_KEYS:
        raise BadRequestData(f"orderBy takes at most {MAX_ORDER_KEYS} keys")
    return tuple(keys)


def order_sql(keys: tuple[OrderKey, ...], params: Params, alias: str = "e") -> str:
    """The ORDER BY list (without the keyword) of ``keys``, the id last to break ties."""
    parts: list[str] = []
    for key in keys:
        if key.attribute:
            name = params.add(key.name, "text")
            expression = (
                f"(SELECT coalesce(i->'value', i->'object', i->'vocab', i->'languageMap', i->'json')"
                f" FROM jsonb_array_elements({alias}.attrs->{name}) i"
                " ORDER BY i ? 'datasetId' LIMIT 1)"
            )
        else:
            expression = _COLUMNS[key.name].format(a=alias)
        parts.append(f"{expression} {'DESC' if key.descending else 'ASC'} NULLS LAST")
    parts.append(f"{alias}.id")
    return ", ".join(parts)
