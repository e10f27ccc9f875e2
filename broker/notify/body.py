"""Subscription bodies as stored (clauses 5.8.1, 5.8.2): defaults filled, updates merged, names moved.

A stored body is compacted with one @context (the ``context`` column). Bodies that arrive
under another @context (an update, a retrieval) are moved between term maps by ``recompact``;
``compile_subscription`` (broker.notify.parse) judges every body before it is stored.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from broker.errors import BadRequestData
from broker.jsonld.context import TermMap
from broker.model.entity import NULL_URI
from broker.notify.model import DEFAULT_TRIGGERS, ENTITY_MEMBERS
from broker.notify.parse import LEGACY_NAME, NOTIFICATION_READ_ONLY, READ_ONLY, subscription_q
from broker.query.qlang import And, Or, QExpr

_TYPE_NAME = re.compile(r"[^(),;|\s]+")


def with_defaults(body: dict[str, Any]) -> dict[str, Any]:
    """The body to store: read-only members dropped, defaults of 5.2.12/5.2.14/5.2.15 filled in.

    Only fills what is absent or of the right shape; ``compile_subscription`` judges the rest.
    """
    out = {k: v for k, v in body.items() if k not in READ_ONLY}
    if LEGACY_NAME in out:
        out.setdefault("subscriptionName", out[LEGACY_NAME])
    out.setdefault("isActive", True)
    # Clause 5.2.12's default, shown on retrieval as the ETSI suite expects (028_01, 028_06).
    out.setdefault("notificationTrigger", sorted(DEFAULT_TRIGGERS))
    notification = out.get("notification")
    if isinstance(notification, dict):
        notification = {k: v for k, v in notification.items() if k not in NOTIFICATION_READ_ONLY}
        notification.setdefault("format", "normalized")
        endpoint = notification.get("endpoint")
        if isinstance(endpoint, dict) and "accept" not in endpoint:
            notification["endpoint"] = {**endpoint, "accept": "application/json"}
        out["notification"] = notification
    return out


def align_names(fragment: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """``fragment`` changing subscriptionName and its legacy alias ``name`` together (5.8.2).

    A fragment naming one of them changes both where the stored body keeps both,
    so the two never disagree after an update.
    """
    given = [member for member in ("subscriptionName", LEGACY_NAME) if member in fragment]
    if len(given) != 1:
        return fragment
    other = LEGACY_NAME if given[0] == "subscriptionName" else "subscriptionName"
    if other == LEGACY_NAME and LEGACY_NAME not in stored:
        return fragment
    return {**fragment, other: fragment[given[0]]}


def merge(
    stored: dict[str, Any], fragment: dict[str, Any], *, nested: frozenset[str] = frozenset({"notification"})
) -> dict[str, Any]:
    """5.8.2: members of ``fragment`` replace the stored ones; NGSI-LD Null (or null) removes one.

    ``notification`` is merged one level down, so a fragment can change its format
    without repeating the endpoint (as Orion-LD and Stellio do).
    """
    merged = copy.deepcopy(stored)
    for member, value in fragment.items():
        if member in nested and isinstance(value, dict) and isinstance(merged.get(member), dict):
            merged[member] = merge(merged[member], value, nested=frozenset())
        elif value is None or value == NULL_URI:
            merged.pop(member, None)
        else:
            merged[member] = copy.deepcopy(value)
    return merged


def recompact(body: dict[str, Any], source: TermMap, target: TermMap, *, strict_q: bool) -> dict[str, Any]:
    """``body`` with its names (entity types, attributes, geoproperty) compacted for ``target``.

    Each name keeps its meaning: expanded with ``source``, compacted with ``target``.
    A q is text whose attribute paths cannot be rewritten reliably: with ``strict_q``
    every name in it must mean the same under both maps (else 400); without, it is
    left as written. Members that are malformed are left for compile_subscription.
    """
    if source is target:
        return body
    out = copy.deepcopy(body)

    def move(name: Any) -> Any:
        return target.compact(source.expand(name)) if isinstance(name, str) else name

    def move_list(container: Any, member: str) -> None:
        if isinstance(container, dict) and isinstance(container.get(member), list):
            container[member] = [move(name) for name in container[member]]

    for selector in out.get("entities") or []:
        if isinstance(selector, dict) and isinstance(selector.get("type"), str):
            selector["type"] = _TYPE_NAME.sub(lambda m: move(m.group()), selector["type"])
    move_list(out, "watchedAttributes")
    move_list(out.get("notification"), "attributes")
    for member in ("pick", "omit"):
        names = (out.get("notification") or {}).get(member)
        if isinstance(names, list):
            out["notification"][member] = [n if n in ENTITY_MEMBERS else move(n) for n in names]
    geo_q = out.get("geoQ")
    if isinstance(geo_q, dict) and "geoproperty" in geo_q:
        geo_q["geoproperty"] = move(geo_q["geoproperty"])
    if strict_q and isinstance(out.get("q"), str):
        for name in _q_names(subscription_q(out["q"])):
            if source.expand(name) != target.expand(name):
                raise BadRequestData(
                    f"q names {name!r}, which this request's @context expands to {source.expand(name)} "
                    f"but the subscription's @context to {target.expand(name)}; use the same @context"
                )
    return out


def _q_names(expr: QExpr) -> Iterator[str]:
    if isinstance(expr, And | Or):
        for part in expr.parts:
            yield from _q_names(part)
    else:
        yield expr.path.attr
        yield from expr.path.subs
