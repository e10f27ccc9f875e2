"""Checking entities from devices against the JSON Schemas in schemas/, fast on the hot path.

Each schema is compiled once with fastjsonschema (tens of thousands of checks per second);
only when an entity fails is it run through jsonschema, slower but able to say which member
is wrong and why, for the dead letter. The Smart Data Model schemas describe the keyValues
form: the models give it beside the expanded entity (EntityUpdate.values), built in the same
pass, and ``key_values`` makes it of a normalized entity for anyone else. A type without a
schema is accepted unchecked by default, as the IoT Agents do for any entity type (the option
``accept_unknown``). Entities written through the NGSI-LD API are not checked here (README,
"Device entities and Smart Data Model schemas").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import orjson

from adapters.device import EntityUpdate
from adapters.message import Rejected
from broker.model.entity import VALUE_MEMBER

_ENTITY_MEMBERS = frozenset({"id", "type", "@context", "scope"})
_MESSAGE_LIMIT = 200


def schemas_dir() -> Path:
    """The top-level schemas/ folder of this checkout (an editable install runs from it too)."""
    return Path(__file__).resolve().parents[1] / "schemas"


class Validator:
    """The schemas of the entity types devices may produce, compiled; ``check`` raises Rejected."""

    def __init__(self, folder: Path | None = None, *, accept_unknown: bool = True) -> None:
        self.accept_unknown = accept_unknown
        self._schemas: dict[str, dict[str, Any]] = {}
        self._compiled: dict[str, Callable[[Any], Any]] = {}
        for path in sorted((folder or schemas_dir()).glob("*.json")):
            schema = orjson.loads(path.read_bytes())
            kind = schema["properties"]["type"]["enum"][0]
            self._schemas[kind] = schema
            self._compiled[kind] = fastjsonschema.compile(schema)
        if not self._schemas:
            raise FileNotFoundError(f"no JSON Schemas in {folder or schemas_dir()}")

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._schemas)

    def __call__(self, update: EntityUpdate) -> None:
        self.check(update)

    def check(self, update: EntityUpdate) -> None:
        """Raise Rejected("<type> <id>: <path>: <message>") when the entity breaks its type's schema."""
        self.check_values(update.values)

    def check_values(self, entity: Mapping[str, Any]) -> None:
        """As ``check``, for an entity already in keyValues form."""
        kinds = entity.get("type")
        for kind in kinds if isinstance(kinds, list) else [kinds]:
            compiled = self._compiled.get(kind) if isinstance(kind, str) else None
            if compiled is None or not isinstance(kind, str):
                if self.accept_unknown:
                    continue
                raise Rejected(f"{kind} {entity.get('id')}: no schema for entity type {kind!r}")
            try:
                compiled(entity)
            except fastjsonschema.JsonSchemaValueException as fast:
                raise Rejected(self._explain(kind, entity, fast)) from None

    def _explain(
        self, kind: str, entity: Mapping[str, Any], fast: fastjsonschema.JsonSchemaValueException
    ) -> str:
        schema = self._schemas[kind]
        checker = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
        error = jsonschema.exceptions.best_match(checker.iter_errors(entity))
        if error is not None:
            error = _matching_branch(error)
            path = "/".join(str(p) for p in error.absolute_path) or "(entity)"
            message = error.message
        else:
            # jsonschema skips formats it has no checker for here; fastjsonschema's words then.
            path = str(fast.name).removeprefix("data.").replace(".", "/")
            message = str(fast.message)
        if len(message) > _MESSAGE_LIMIT:
            message = message[: _MESSAGE_LIMIT - 3] + "..."
        return f"{kind} {entity.get('id')}: {path}: {message}"


def _matching_branch(error: Any) -> Any:
    """For a oneOf/anyOf over GeoJSON shapes, the error inside the branch whose "type" the value has.

    "not valid under any of the given schemas" names no member; the branch of the matching
    geometry type says which coordinate is wrong.
    """
    while error.context:
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        matching = [
            errors
            for errors in branches.values()
            if not any(list(e.relative_path) == ["type"] for e in errors)
        ]
        if len(matching) != 1:
            return error
        error = jsonschema.exceptions.best_match(matching[0])
    return error


def key_values(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The keyValues form of a normalized entity (default instance of each attribute)."""
    out: dict[str, Any] = {k: entity[k] for k in ("id", "type") if k in entity}
    for name, attr in entity.items():
        if name in _ENTITY_MEMBERS:
            continue
        if isinstance(attr, list) and attr and all(isinstance(a, dict) for a in attr):
            attr = next((a for a in attr if "datasetId" not in a), attr[0])
        out[name] = attribute_value(attr)
    return out


def attribute_value(attr: Any) -> Any:
    """What carries the value of an attribute of any type (clause 4.5); DateTime values are unwrapped."""
    if not isinstance(attr, dict):
        return attr
    member = VALUE_MEMBER.get(attr.get("type", ""), "value")
    if member not in attr:
        return attr  # concise JSON object value
    value = attr[member]
    if isinstance(value, dict) and "@value" in value and "@type" in value:
        return value["@value"]
    return value
