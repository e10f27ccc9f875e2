"""Derive the self-contained schemas in this folder from the Smart Data Models (run by hand, offline).

    python schemas/derive.py [path/to/shared/reference/smart-data-models]

Reads each type's upstream schema.json, resolves every $ref through url-map.json (no network),
merges the allOf parts into one object, applies the fixes listed in README.md, and writes
<Type>.json here. Re-run after updating the reference copy; review the diff.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[1] / "shared" / "reference" / "smart-data-models"
TYPES = ("FloodMonitoring", "WaterObserved", "Vehicle", "Device", "DeviceMeasurement")
DRAFT = "http://json-schema.org/draft-07/schema#"
# Keywords of 2020-12 that draft-07 (and so fastjsonschema) would silently ignore.
NEWER = {
    "prefixItems",
    "$defs",
    "unevaluatedProperties",
    "unevaluatedItems",
    "dependentRequired",
    "dependentSchemas",
    "$dynamicRef",
    "$anchor",
}
POSITION = {
    "type": "array",
    "minItems": 2,
    "maxItems": 3,
    "items": [
        {"type": "number", "minimum": -180, "maximum": 180, "description": "longitude"},
        {"type": "number", "minimum": -90, "maximum": 90, "description": "latitude"},
        {"type": "number", "description": "altitude"},
    ],
}


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    url_map: dict[str, str] = json.loads((source / "url-map.json").read_text())
    for kind in TYPES:
        upstream_path = source / kind / "schema.json"
        upstream = json.loads(upstream_path.read_text())
        resolved = _resolve(upstream, upstream, source, url_map)
        schema = _merge(resolved, kind, upstream["$id"])
        _fix(schema, kind)
        _check_draft(schema)
        out = HERE / f"{kind}.json"
        out.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        print(f"{out.name}: {len(schema['properties'])} properties")


def _resolve(node: Any, document: dict[str, Any], source: Path, url_map: dict[str, str]) -> Any:
    """``node`` with every $ref replaced by a copy of its target, recursively."""
    if isinstance(node, list):
        return [_resolve(item, document, source, url_map) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        url, _, pointer = node["$ref"].partition("#")
        target_doc = document if not url else json.loads((source / url_map[url]).read_text())
        target = target_doc
        for part in filter(None, pointer.split("/")):
            target = target[part]
        resolved = _resolve(copy.deepcopy(target), target_doc, source, url_map)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**resolved, **_resolve(siblings, document, source, url_map)}
    return {k: _resolve(v, document, source, url_map) for k, v in node.items()}


def _merge(schema: dict[str, Any], kind: str, upstream_id: str) -> dict[str, Any]:
    """One object schema from the allOf of property-only parts (none forbids extra members)."""
    properties: dict[str, Any] = {}
    required: list[str] = list(schema.get("required", []))
    for part in schema.get("allOf", []):
        assert part.get("additionalProperties", True) is True, f"{kind}: allOf part closes the object"
        properties.update(part.get("properties", {}))
        required += [r for r in part.get("required", []) if r not in required]
    return {
        "$schema": DRAFT,
        "$id": f"urn:city-data-hub:schema:{kind}",
        "$comment": f"Derived from {upstream_id} (Smart Data Models, CC BY 4.0); see README.md for the fixes.",
        "title": kind,
        "description": schema.get("description", ""),
        "type": "object",
        "required": required,
        "properties": properties,
    }


def _fix(schema: dict[str, Any], kind: str) -> None:
    """The corrections README.md lists, applied to the merged schema."""
    properties = schema["properties"]
    _fix_positions(properties["location"])
    if "previousLocation" in properties:
        _fix_positions(properties["previousLocation"])
    if kind == "WaterObserved":
        # Levels are heights over a gauge datum: below the datum they are negative.
        properties["waterLevel"].pop("minimum", None)
    if kind == "Vehicle":
        # A GPS altitude is a number (upstream's own normalized example sends 600); text still passes.
        properties["vehicleAltitude"]["type"] = ["number", "string"]
    if kind == "Device":
        # oneOf over ipv4/ipv6 formats fails every address when formats are not asserted.
        items = properties["ipAddress"]["items"]
        items["anyOf"] = items.pop("oneOf")


def _fix_positions(node: Any) -> None:
    """GeoJSON positions: [longitude, latitude(, altitude)] within range, not any numbers."""
    if isinstance(node, list):
        for item in node:
            _fix_positions(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in list(node.items()):
        if (
            isinstance(value, dict)
            and value.get("items") == {"type": "number"}
            and value.get("minItems") == 2
        ):
            node[key] = {**copy.deepcopy(POSITION), "description": value.get("description", "position")}
        else:
            _fix_positions(value)


def _check_draft(node: Any) -> None:
    if isinstance(node, dict):
        found = NEWER & node.keys()
        assert not found, f"2020-12 keywords {found} would be ignored under draft-07"
        for value in node.values():
            _check_draft(value)
    elif isinstance(node, list):
        for item in node:
            _check_draft(item)


if __name__ == "__main__":
    main()
