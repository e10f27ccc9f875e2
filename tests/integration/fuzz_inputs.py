"""Hypothesis strategies for hostile NGSI-LD request bodies (issue 11), and the JSON mutator the
device strategies (fuzz_devices.py) share.

A hostile body is a valid one (``TARGETS``: entities, attributes, batch, subscriptions, temporal,
POST query, @context members) with one to three mutations: a member replaced by a value of the
wrong type, a reserved or odd member added, a member dropped or renamed, a node buried under deep
nesting, or a raw JSON fragment spliced in (NUL and lone-surrogate escapes, numbers past float and
64-bit range, 2,000-deep arrays: things orjson cannot write itself); or a whole body that is not
JSON at all. Nothing here names a remote host: an @context URL is the bundled core context, so a
mutated body never makes the broker fetch anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
EX = "https://example.org/fuzz#"
ENTITY_TYPE = "FuzzThing"
# A notification endpoint nothing listens on (the discard port): a subscription that matched
# would fail fast, and its entities name a type no entity has, so none matches.
ENDPOINT = "http://127.0.0.1:9/notify"
# Stands for a raw fragment in a document until it is written, then the fragment replaces it.
_MARK = "\u2063fuzz{}\u2063"

Path = tuple[Any, ...]

# JSON text a strict parser refuses or a naive one mishandles, spliced where a value goes.
FRAGMENTS: tuple[bytes, ...] = (
    b'"a\\u0000b"',
    b'"\\u0000"',
    b'"\\ud800"',
    b'"x\\udfffy"',
    b"1e400",
    b"-1e400",
    b"1" + b"0" * 40,
    b"-" + b"9" * 30,
    b"0." + b"0" * 400 + b"1",
    b"1e-400",
    b"[" * 70 + b"]" * 70,
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 80 + b"1" + b"}" * 80,
    b'{"value":' * 70 + b"1" + b"}" * 70,
    b'"\xf0\x9f\x8c\x8a\xe6\xb0\xb4\xe4\xbd\x8d\xe2\x80\xae\xef\xbb\xbf"',
    b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8: invalid UTF-8
    b'"\xff"',
)
# Bodies that are not a JSON document, or not one the broker could take.
RAW_BODIES: tuple[bytes, ...] = (
    b"",
    b" ",
    b"\x00",
    b"\xff\xfe{\x00}",
    b"{",
    b"[",
    b'{"id": "urn:a:b", "type": "T",}',
    b"null",
    b"true",
    b"0",
    b'"text"',
    b"[]",
    b"{}",
    b"[[]]",
    b"[{}]",
    b"[null]",
    b'{"@context": {}}',
    b'{"a": 1, "a": 2}',
    b"[" * 3000 + b"]" * 3000,
    b'{"id": "urn:ngsi-ld:T:' + b"x" * 300_000 + b'", "type": "T"}',
)
RESERVED_NAMES: tuple[str, ...] = (
    "@context",
    "@id",
    "@type",
    "@value",
    "@list",
    "@graph",
    "@reverse",
    "@vocab",
    "@base",
    "@language",
    "id",
    "type",
    "scope",
    "value",
    "object",
    "objectType",
    "datasetId",
    "instanceId",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "observedAt",
    "unitCode",
    "location",
    "observationSpace",
    "operationSpace",
    "languageMap",
    "valueList",
    "objectList",
    "vocab",
    "json",
    "entities",
    "notification",
    "endpoint",
    "temporalQ",
    "geoQ",
    "q",
    "attrs",
)
# Strings that mean something to some layer: keywords, type names, URI-ish and time-ish text.
ODD_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "urn:ngsi-ld:null",
    "urn:",
    "urn:ngsi-ld:",
    "a:b",
    ":",
    "/",
    "//",
    "#",
    "../..",
    "\u202e\ufeff",
    "\u0301",
    "\U0001f30a水位",
    "e\u0301",
    "\t\n\r",
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "VocabProperty",
    "JsonProperty",
    "ListProperty",
    "ListRelationship",
    "Point",
    "Polygon",
    "FeatureCollection",
    "2026-13-45T99:99:99Z",
    "2026-11-22T01:00:00",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999999Z",
    "P1D",
    "near;maxDistance==-1",
    "temperature>",
    "((((((((((a))))))))))",
    "a" * 300,
    "x" * 5000,
    *RESERVED_NAMES,
)

_text = st.one_of(
    st.text(max_size=16),
    st.text(
        st.sampled_from(list("\x00\u202e\ufeff\U0001f30a水\u0301\n\\\"@:<=;|()[]{}.,'/#+ ")), max_size=12
    ),
    st.sampled_from(ODD_STRINGS),
)
_numbers = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**53 + 1, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -0.0]),
)
# Values that mean something to one layer: geometries PostGIS or shapely may choke on, times at
# the ends of the calendar, q, scope and regular-expression text, attribute shapes half right.
DOMAIN_VALUES: tuple[Any, ...] = (
    {"type": "Point", "coordinates": [1.7976931348623157e308, 1e308]},
    {"type": "Point", "coordinates": [200, 100]},
    {"type": "Point", "coordinates": [1, 2, 3, 4]},
    {"type": "Point", "coordinates": []},
    {"type": "Point", "coordinates": [[1, 2]]},
    {"type": "Point", "coordinates": ["134", "34"]},
    {"type": "Point"},
    {"type": "MultiPoint", "coordinates": []},
    {"type": "LineString", "coordinates": [[0, 0]]},
    {"type": "Polygon", "coordinates": []},
    {"type": "Polygon", "coordinates": [[]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
    {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], []]},
    {"type": "GeometryCollection", "geometries": []},
    {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1, 2]}]},
    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}},
    {"type": "FeatureCollection", "features": []},
    {"type": "Property", "value": None},
    {"type": "Property", "value": {"@value": 1, "@type": "xsd:int"}},
    {"type": "Property", "value": {"@id": "urn:a:b"}},
    {"type": "Property", "value": {"@list": [1]}},
    {"type": "Relationship", "object": ["urn:a:b", "urn:c:d"]},
    {"type": "Relationship", "object": {"id": "urn:a:b"}},
    {"type": "GeoProperty", "value": "POINT(1 2)"},
    {"type": "LanguageProperty", "languageMap": {"ja": 1, "": "x", "@none": "y"}},
    {"type": "LanguageProperty", "languageMap": {"x-y-zzzzzzzzzzzz": "a"}},
    {"type": "ListProperty", "valueList": [[1, [2]], {"a": None}]},
    {"type": "ListRelationship", "objectList": ["urn:a:b", {"object": 1}]},
    {"type": "VocabProperty", "vocab": ["a", 1]},
    {"type": "JsonProperty", "json": None},
    {"value": 1, "observedAt": "0001-01-01T00:00:00Z"},
    {"value": 1, "observedAt": "9999-12-31T23:59:59.999999Z"},
    {"value": 1, "observedAt": "+275760-09-13T00:00:00Z"},
    {"value": 1, "observedAt": "2026-02-30T00:00:00Z"},
    {"value": 1, "observedAt": "2026-11-22T01:00:00+25:00"},
    {"value": 1, "observedAt": "2026-11-22T24:00:00Z"},
    {"value": 1, "observedAt": 1e20},
    {"value": 1, "datasetId": "urn:ngsi-ld:null"},
    {"value": 1, "datasetId": ["urn:a:b"]},
    {"value": 1, "unitCode": ["CEL"]},
    [{"value": 1, "datasetId": "urn:a:b"}, {"value": 2, "datasetId": "urn:a:b"}],
    [{"value": 1}, {"value": 2}],
    [],
    [[]],
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "-infinity",
    "infinity",
    "epoch",
    "now",
    "(((a*)*)*)*b",
    "(a+)+$",
    "[[:alpha:]",
    "\\",
    "a{99999}",
    "^.*$",
    "/",
    "//",
    "/#",
    "/+",
    "/a/+/#/b",
    "temperature==1..2..3",
    'temperature=="' + "a" * 1000 + '"',
    "a.b.c.d.e.f[g][h]",
    "(" * 200 + "a" + ")" * 200,
    "a;" * 500 + "a",
    "near;maxDistance==1e400",
    "near;minDistance==-1",
    "within;maxDistance==1",
    "urn:ngsi-ld:Subscription:x",
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _text)
keys = st.one_of(st.sampled_from(RESERVED_NAMES), _text)
# Any JSON value orjson can write: nested a little, odd in every leaf.
values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(_scalars, st.sampled_from(DOMAIN_VALUES)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


def paths(node: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every member and item of a document, as the keys and indexes leading to it (root first)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


def at(node: Any, path: Path) -> Any:
    for step in path:
        node = node[step]
    return node


def replaced(node: Any, path: Path, change: Callable[[Any], Any]) -> Any:
    """A copy of ``node`` with the node at ``path`` replaced by ``change(it)``."""
    if not path:
        return change(node)
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {k: replaced(v, rest, change) if k == head else v for k, v in node.items()}
    return [replaced(v, rest, change) if i == head else v for i, v in enumerate(node)]


@st.composite
def mutated(draw: st.DrawFn, document: Any, *, max_mutations: int = 3) -> bytes:
    """``document`` with 1..``max_mutations`` hostile changes, written as JSON bytes."""
    fragments: list[bytes] = []
    for _ in range(draw(st.integers(1, max_mutations))):
        path = draw(st.sampled_from(list(paths(document))))
        node = at(document, path)
        kind = draw(st.sampled_from(["replace", "fragment", "add", "drop", "rename", "nest", "listify"]))
        if kind == "replace":
            document = replaced(document, path, _constant(draw(values)))
        elif kind == "fragment":
            fragments.append(draw(st.sampled_from(FRAGMENTS)))
            document = replaced(document, path, _constant(_MARK.format(len(fragments) - 1)))
        elif kind == "add" and isinstance(node, dict):
            document = replaced(document, path, _adding(draw(keys), draw(values)))
        elif kind == "drop" and path:
            document = replaced(document, path[:-1], _dropping(path[-1]))
        elif kind == "rename" and path and isinstance(path[-1], str):
            document = replaced(document, path[:-1], _renaming(path[-1], draw(keys)))
        elif kind == "nest":
            depth, as_list = draw(st.sampled_from([2, 30, 63, 64, 65, 200])), draw(st.booleans())
            # orjson writes at most 255 levels: deeper nesting comes from FRAGMENTS.
            document = replaced(document, path, _nesting(min(depth, 250 - _depth(document)), as_list))
        elif kind == "listify":
            document = replaced(document, path, lambda n: [n, n])
    return write(document, fragments)


def write(document: Any, fragments: list[bytes]) -> bytes:
    """``document`` as JSON, each fragment mark replaced by its raw fragment."""
    text = orjson.dumps(document)
    for index, fragment in enumerate(fragments):
        text = text.replace(orjson.dumps(_MARK.format(index)), fragment)
    return text


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max(map(_depth, node.values()), default=0)
    if isinstance(node, list):
        return 1 + max(map(_depth, node), default=0)
    return 0


Change = Callable[[Any], Any]


def _constant(value: Any) -> Change:
    return lambda _: value


def _adding(key: str, value: Any) -> Change:
    return lambda node: {**node, key: value}


def _dropping(key: Any) -> Change:
    def drop(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: v for k, v in node.items() if k != key}
        return [v for i, v in enumerate(node) if i != key]

    return drop


def _renaming(old: str, new: str) -> Change:
    return lambda node: {(new if k == old else k): v for k, v in node.items()}


def _nesting(depth: int, as_list: bool) -> Change:
    def nest(value: Any) -> Any:
        for _ in range(depth):
            value = [value] if as_list else {"value": value}
        return value

    return nest


def hostile(document: Any) -> st.SearchStrategy[bytes]:
    """A mutated ``document`` most of the time, else a whole body that is not one."""
    return st.one_of(mutated(document), mutated(document), mutated(document), st.sampled_from(RAW_BODIES))


# --- the valid bodies, one per NGSI-LD operation that takes one --------------------------------------


def entity(entity_id: str) -> dict[str, Any]:
    """A normalized entity with one attribute of each kind and sub-attributes."""
    return {
        "id": entity_id,
        "type": ENTITY_TYPE,
        "scope": "/Kagawa/Takamatsu",
        "temperature": {
            "type": "Property",
            "value": 21.5,
            "unitCode": "CEL",
            "observedAt": "2026-11-22T01:00:00Z",
            "accuracy": {"type": "Property", "value": 0.5},
        },
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.05, 34.34]}},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:d1", "objectType": "Device"},
        "name": {"type": "LanguageProperty", "languageMap": {"ja": "高松", "en": "Takamatsu"}},
        "status": {"type": "VocabProperty", "vocab": "ok"},
        "settings": {"type": "JsonProperty", "json": {"a": [1, {"b": None}]}},
        "readings": {"type": "ListProperty", "valueList": [1, 2.5, "x"]},
        "peers": {"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:Device:d2"}]},
        "level": [
            {"type": "Property", "value": 1, "datasetId": "urn:ngsi-ld:Dataset:a"},
            {"type": "Property", "value": 2},
        ],
    }


def concise_entity(entity_id: str) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": ENTITY_TYPE,
        "temperature": 21.5,
        "label": {"value": "x", "unitCode": "CEL"},
        "location": {"type": "Point", "coordinates": [134.05, 34.34]},
        "refDevice": {"object": "urn:ngsi-ld:Device:d1"},
    }


def ld_entity(entity_id: str) -> dict[str, Any]:
    """An entity in application/ld+json with an inline term and the bundled core context."""
    return {
        **entity(entity_id),
        "@context": [{"fuzz": EX, "temperature": EX + "temperature"}, CORE],
    }


def fragment() -> dict[str, Any]:
    """Attributes for append, update and merge (one of them a multi-attribute)."""
    return {
        "temperature": {"type": "Property", "value": 22, "observedAt": "2026-11-22T02:00:00Z"},
        "humidity": {"value": 50, "unitCode": "P1"},
        "level": [{"value": 3, "datasetId": "urn:ngsi-ld:Dataset:a"}],
    }


def attribute() -> dict[str, Any]:
    return {"type": "Property", "value": 3, "unitCode": "CEL", "observedAt": "2026-11-22T03:00:00Z"}


def subscription() -> dict[str, Any]:
    return {
        "type": "Subscription",
        "description": "fuzz",
        "entities": [{"type": "FuzzNothing", "idPattern": "^urn:ngsi-ld:FuzzNothing:"}],
        "watchedAttributes": ["temperature"],
        "q": 'temperature>0;status=="ok"',
        "geoQ": {"geometry": "Point", "coordinates": [134.05, 34.34], "georel": "near;maxDistance==1000"},
        "scopeQ": "/Kagawa/#",
        "notification": {
            "attributes": ["temperature"],
            "format": "normalized",
            "endpoint": {"uri": ENDPOINT, "accept": "application/json"},
        },
        "expiresAt": "2099-01-01T00:00:00Z",
        "throttling": 1,
    }


def subscription_patch() -> dict[str, Any]:
    return {"q": "temperature>1", "isActive": False, "notification": {"attributes": ["humidity"]}}


def temporal_entity(entity_id: str) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": ENTITY_TYPE,
        "temperature": [
            {"type": "Property", "value": 1, "observedAt": "2026-11-22T01:00:00Z"},
            {"type": "Property", "value": 2, "observedAt": "2026-11-22T02:00:00Z"},
        ],
        "location": [
            {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [134.05, 34.34]},
                "observedAt": "2026-11-22T01:00:00Z",
            }
        ],
    }


def temporal_attrs() -> dict[str, Any]:
    return {"temperature": [{"type": "Property", "value": 3, "observedAt": "2026-11-22T03:00:00Z"}]}


def query() -> dict[str, Any]:
    return {
        "type": "Query",
        "entities": [{"type": ENTITY_TYPE}, {"id": "urn:ngsi-ld:FuzzThing:x", "type": ENTITY_TYPE}],
        "attrs": ["temperature", "location"],
        "q": 'temperature>1;status=="ok"',
        "geoQ": {"geometry": "Point", "coordinates": [134.05, 34.34], "georel": "near;maxDistance==1000"},
        "scopeQ": "/Kagawa/#",
    }


def temporal_query() -> dict[str, Any]:
    return {
        "type": "Query",
        "entities": [{"type": ENTITY_TYPE}],
        "attrs": ["temperature"],
        "temporalQ": {
            "timerel": "between",
            "timeAt": "2026-01-01T00:00:00Z",
            "endTimeAt": "2027-01-01T00:00:00Z",
        },
    }


def hosted_context() -> dict[str, Any]:
    return {"@context": {"fuzz": EX, "temperature": {"@id": EX + "temperature", "@type": "@id"}}}


@dataclass(frozen=True)
class Target:
    """One NGSI-LD operation taking a body: ``path`` names the ``{entity}``, ``{attr}`` and
    ``{subscription}`` the test provides; ``valid`` builds a valid body from a fresh entity id."""

    name: str
    method: str
    path: str
    valid: Callable[[str, str], Any]  # (fresh entity id, existing entity id) -> body
    content_type: str = "application/json"


E = "/ngsi-ld/v1/entities"
TARGETS: tuple[Target, ...] = (
    Target("create", "POST", E, lambda new, _: entity(new)),
    Target("create concise", "POST", E, lambda new, _: concise_entity(new)),
    Target("create ld+json", "POST", E, lambda new, _: ld_entity(new), "application/ld+json"),
    Target("append attrs", "POST", E + "/{entity}/attrs", lambda *_: fragment()),
    Target("update attrs", "PATCH", E + "/{entity}/attrs", lambda *_: fragment()),
    Target("merge entity", "PATCH", E + "/{entity}", lambda *_: fragment()),
    Target(
        "merge entity merge-patch",
        "PATCH",
        E + "/{entity}",
        lambda *_: fragment(),
        "application/merge-patch+json",
    ),
    Target("replace entity", "PUT", E + "/{entity}", lambda _, old: entity(old)),
    Target("update attr", "PATCH", E + "/{entity}/attrs/temperature", lambda *_: attribute()),
    Target("replace attr", "PUT", E + "/{entity}/attrs/temperature", lambda *_: attribute()),
    Target("batch create", "POST", "/ngsi-ld/v1/entityOperations/create", lambda new, _: [entity(new)]),
    Target(
        "batch upsert",
        "POST",
        "/ngsi-ld/v1/entityOperations/upsert",
        lambda new, old: [entity(new), concise_entity(old)],
    ),
    Target("batch update", "POST", "/ngsi-ld/v1/entityOperations/update", lambda _, old: [entity(old)]),
    Target(
        "batch merge",
        "POST",
        "/ngsi-ld/v1/entityOperations/merge",
        lambda _, old: [{"id": old, "type": ENTITY_TYPE, **fragment()}],
    ),
    Target(
        "batch delete",
        "POST",
        "/ngsi-ld/v1/entityOperations/delete",
        lambda new, _: [new, "urn:ngsi-ld:FuzzThing:none"],
    ),
    Target(
        "batch upsert ld+json",
        "POST",
        "/ngsi-ld/v1/entityOperations/upsert",
        lambda new, _: [ld_entity(new)],
        "application/ld+json",
    ),
    Target("query", "POST", "/ngsi-ld/v1/entityOperations/query", lambda *_: query()),
    Target("subscribe", "POST", "/ngsi-ld/v1/subscriptions", lambda *_: subscription()),
    Target(
        "subscribe ld+json",
        "POST",
        "/ngsi-ld/v1/subscriptions",
        lambda *_: {**subscription(), "@context": [{"fuzz": EX, "temperature": EX + "temperature"}, CORE]},
        "application/ld+json",
    ),
    Target(
        "update subscription",
        "PATCH",
        "/ngsi-ld/v1/subscriptions/{subscription}",
        lambda *_: subscription_patch(),
    ),
    Target("temporal create", "POST", "/ngsi-ld/v1/temporal/entities", lambda new, _: temporal_entity(new)),
    Target(
        "temporal append", "POST", "/ngsi-ld/v1/temporal/entities/{entity}/attrs", lambda *_: temporal_attrs()
    ),
    Target(
        "temporal query", "POST", "/ngsi-ld/v1/temporal/entityOperations/query", lambda *_: temporal_query()
    ),
    Target("host @context", "POST", "/ngsi-ld/v1/jsonldContexts", lambda *_: hosted_context()),
)
