"""Pseudonyms for watch-tag ids: personal data that must never reach the database or a log.

A BLE tag id is a 48-bit address or a short serial: hashing it plainly would be undone by
hashing every possible id, so the pseudonym is a keyed hash (HMAC-SHA256) under a key of the
tenant, itself derived from the operator's secret (PSEUDONYM_SECRET). The same tag gets the same
pseudonym in one town, so a guardian's app can subscribe to its entity; another town sharing
the instance sees unrelated pseudonyms for the same tag, and without the secret nobody can go
from a pseudonym back to the tag.

The pseudonym is 20 hex digits (80 bits): among ten million tags of one tenant the chance of
any two colliding is about n^2 / 2^81 = 4e-11. Raw ids are normalised first (trimmed,
lower-case, ':' and '-' separators dropped) so "A1:F3:..." and "a1f3..." are the same tag.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from typing import Any

import orjson

from adapters.message import Measures
from broker.edge import too_deep

DIGITS = 20
_DERIVE = b"city-data-hub/watch-tag-pseudonym/v1\x00"
_TAG_FIELDS = ("tag",)
# Deepest JSON body redacted (orjson writes at most 255 levels); a deeper one is withheld.
_MAX_DEPTH = 200


class Pseudonymiser:
    """Turns raw tag ids into stable per-tenant pseudonyms; holds the secret, never shows it."""

    __slots__ = ("_keys", "_secret")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the pseudonym secret must have at least 16 bytes")
        self._secret = secret
        self._keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return "Pseudonymiser(<secret>)"

    def tag_id(self, tenant: str, raw: Any) -> str:
        """The pseudonym of tag ``raw`` in ``tenant`` (20 lower-case hex digits)."""
        key = self._keys.get(tenant)
        if key is None:
            key = hmac.new(self._secret, _DERIVE + tenant.encode(), hashlib.sha256).digest()
            self._keys[tenant] = key
        digest = hmac.new(key, normalise(raw).encode(), hashlib.sha256).hexdigest()
        return digest[:DIGITS]

    def redact(self, tenant: str, measures: Measures, fields: Collection[str] = _TAG_FIELDS) -> Measures:
        """A copy of ``measures`` with the tag ids in ``fields`` replaced by their pseudonyms."""
        return {k: self.tag_id(tenant, v) if k in fields else v for k, v in measures.items()}

    def redact_body(self, tenant: str, body: bytes, fields: Collection[str] = _TAG_FIELDS) -> bytes:
        """A raw message with tag ids replaced, for a dead letter; withheld when it cannot be read.

        JSON bodies have every member named in ``fields`` replaced at any depth; UltraLight
        bodies ("tag|a1f3|rssi|-71#...") have the value after such a key replaced. Anything else
        might hold a tag id where we cannot find it, so only its size is kept.
        """
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._redact_ultralight(tenant, body, fields)
        if too_deep(body, document, _MAX_DEPTH):
            # Walking it would overflow the stack and orjson could not write it back (issue 11).
            return _withheld(f"nested deeper than {_MAX_DEPTH} levels; may hold tag ids", body)
        return orjson.dumps(self._walk(tenant, document, fields))

    def _walk(self, tenant: str, node: Any, fields: Collection[str]) -> Any:
        if isinstance(node, dict):
            return {
                k: self.tag_id(tenant, v) if k in fields and v is not None else self._walk(tenant, v, fields)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [self._walk(tenant, item, fields) for item in node]
        return node

    def _redact_ultralight(self, tenant: str, body: bytes, fields: Collection[str]) -> bytes:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text = ""
        if "|" not in text:
            return _withheld("not JSON or UltraLight; may hold tag ids", body)
        groups = []
        for group in text.split("#"):
            parts = group.split("|")
            # Not stepping by pairs: a leading timestamp shifts them; redacting too much is safe.
            for i in range(len(parts) - 1):
                if parts[i].strip() in fields:
                    parts[i + 1] = self.tag_id(tenant, parts[i + 1])
            groups.append("|".join(parts))
        return "#".join(groups).encode()


def _withheld(why: str, body: bytes) -> bytes:
    return orjson.dumps({"withheld": why, "bytes": len(body)})


def normalise(raw: Any) -> str:
    """The canonical text of a tag id, so the formats gateways print it in give one pseudonym."""
    return str(raw).strip().lower().replace(":", "").replace("-", "")
