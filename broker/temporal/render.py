"""History -> the temporal representations of clause 4.5.7-4.5.9 and 4.5.19, and a GeoJSON track.

* normalized (and concise): each attribute is an array of its instances, each with its instanceId;
* temporalValues (simplified): per attribute and datasetId, [value, time] pairs under
  "values" / "objects" / "languageMaps" / ... ;
* aggregatedValues: per attribute and datasetId, [value, periodStart, periodEnd] triples per method;
* a track: one entity's point GeoProperty in time order as a GeoJSON LineString Feature.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.jsonld.context import TermMap
from broker.model.entity import NULL_URI, VALUE_MEMBER, format_time
from broker.model.render import Form, View, render_instance
from broker.store.history import instance_id
from broker.store.history_read import Bucket, StreamRow

_PLURAL = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "VocabProperty": "vocabs",
    "JsonProperty": "jsons",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
}

Streams = dict[str, dict[str, dict[str, list[StreamRow]]]]


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a response stopped because a stream had more instances than one response holds."""

    first: datetime
    last: datetime


def group(rows: list[StreamRow]) -> Streams:
    """Rows by entity, attribute and datasetId, each stream in time order (oldest first)."""
    out: Streams = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in rows:
        out[row.entity_id][row.attr][row.dataset_id].append(row)
    for attrs in out.values():
        for datasets in attrs.values():
            for stream in datasets.values():
                stream.sort(key=lambda r: (r.time, r.row_id))
    return out


def trim(streams: Streams, limit: int, newest_first: bool) -> Cut | None:
    """Cut each stream (attribute and datasetId) holding more than ``limit`` rows to ``limit``
    (clause 6.3.10, 206), and say which time range the answer is complete for.

    Every entity of the page keeps its instances, each attribute up to the limit. Going forward
    the range ends at the earliest last instance of a cut stream; going back (lastN) it starts at
    the latest first instance of one, so the next request (timeAt = the range's end) loses nothing.
    """
    cut = False
    bounds: list[datetime] = []
    times: list[datetime] = []
    for attrs in streams.values():
        for datasets in attrs.values():
            for key, stream in datasets.items():
                if len(stream) > limit:
                    stream = stream[-limit:] if newest_first else stream[:limit]
                    datasets[key] = stream
                    cut = True
                    bounds.append(stream[0].time if newest_first else stream[-1].time)
                times.extend(r.time for r in stream)
    if not cut or not times:
        return None
    if newest_first:
        return Cut(max(bounds), max(times))
    return Cut(min(times), min(bounds))


def keep_datasets(streams: Streams, wanted: frozenset[str]) -> None:
    """Drop the streams whose datasetId is not ``wanted`` ("@none" names the default instance)."""
    for attrs in streams.values():
        for datasets in attrs.values():
            for key in [k for k in datasets if (k or "@none") not in wanted]:
                del datasets[key]


def _instance(row: StreamRow, tm: TermMap, view: View) -> dict[str, Any]:
    if row.instance is None:
        out: dict[str, Any] = {"type": "Property", "value": NULL_URI, "deletedAt": format_time(row.time)}
        if row.dataset_id:
            out["datasetId"] = row.dataset_id
    else:
        rendered = render_instance(row.instance, tm, view, bare_ok=False)
        out = rendered if isinstance(rendered, dict) else {"value": rendered}
    if view.sys_attrs:
        if row.created_at is not None:
            out["createdAt"] = format_time(row.created_at)
        out["modifiedAt"] = format_time(row.modified_at)
    out["instanceId"] = instance_id(row.row_id)
    return out


def _memo(tm: TermMap) -> Callable[[str], str]:
    """tm.compact remembered for one response: a thousand entities repeat a few names."""
    known: dict[str, str] = {}

    def compact(iri: str) -> str:
        name = known.get(iri)
        if name is None:
            name = known[iri] = tm.compact(iri)
        return name

    return compact


def _head(entity_id: str, types: list[str], compact_name: Callable[[str], str]) -> dict[str, Any]:
    compact = [compact_name(t) for t in types]
    return {"id": entity_id, "type": compact[0] if len(compact) == 1 else compact}


def normalized(
    entities: list[tuple[str, list[str]]], streams: Streams, tm: TermMap, view: View
) -> list[dict[str, Any]]:
    """Temporal entities in the normalized (or concise) representation (clause 4.5.7)."""
    names = _memo(tm)
    out = []
    for entity_id, types in entities:
        body = _head(entity_id, types, names)
        for attr, datasets in streams.get(entity_id, {}).items():
            items = [_instance(r, tm, view) for s in datasets.values() for r in s]
            if items:
                body[names(attr)] = items
        out.append(body)
    return out


def _value_of(row: StreamRow, tm: TermMap) -> tuple[str, Any]:
    instance = row.instance or {}
    kind = instance.get("type", "Property")
    value: Any = instance.get(VALUE_MEMBER.get(kind, "value"))
    if kind == "VocabProperty":
        value = [tm.compact(v) for v in value] if isinstance(value, list) else tm.compact(value)
    return kind, value


def temporal_values(
    entities: list[tuple[str, list[str]]], streams: Streams, tm: TermMap
) -> list[dict[str, Any]]:
    """Temporal entities in the simplified representation, options=temporalValues (clause 4.5.9)."""
    names = _memo(tm)
    out = []
    for entity_id, types in entities:
        body = _head(entity_id, types, names)
        for attr, datasets in streams.get(entity_id, {}).items():
            items = []
            for dataset, stream in datasets.items():
                rows = [r for r in stream if r.instance is not None]
                if not rows:
                    continue
                kind = _value_of(rows[0], tm)[0]
                item: dict[str, Any] = {"type": kind}
                if dataset:
                    item["datasetId"] = dataset
                item[_PLURAL.get(kind, "values")] = [[_value_of(r, tm)[1], format_time(r.time)] for r in rows]
                items.append(item)
            if items:
                body[names(attr)] = items[0] if len(items) == 1 else items
        out.append(body)
    return out


def aggregated(
    entities: list[tuple[str, list[str]]], buckets: list[Bucket], methods: tuple[str, ...], tm: TermMap
) -> list[dict[str, Any]]:
    """Temporal entities in the aggregated representation, options=aggregatedValues (clause 4.5.19)."""
    by_stream: dict[tuple[str, str], dict[str, list[Bucket]]] = defaultdict(lambda: defaultdict(list))
    for bucket in buckets:
        by_stream[(bucket.entity_id, bucket.attr)][bucket.dataset_id].append(bucket)
    attrs_of: dict[str, list[str]] = defaultdict(list)
    for entity_id, attr in by_stream:
        attrs_of[entity_id].append(attr)
    names = _memo(tm)
    out = []
    for entity_id, types in entities:
        body = _head(entity_id, types, names)
        for attr in attrs_of.get(entity_id, []):
            items = []
            for dataset, periods in by_stream[(entity_id, attr)].items():
                item: dict[str, Any] = {"type": periods[0].kind or "Property"}
                if dataset:
                    item["datasetId"] = dataset
                for method in methods:
                    item[method] = [
                        [_number(p.values[method]), format_time(p.start), format_time(p.end)] for p in periods
                    ]
                items.append(item)
            body[names(attr)] = items[0] if len(items) == 1 else items
        out.append(body)
    return out


def _number(value: Any) -> Any:
    return float(value) if value is not None and not isinstance(value, int | float) else value


def track(entity: dict[str, Any], streams: Streams, entity_id: str, geometry_attr: str) -> dict[str, Any]:
    """One entity's GeoProperty as a GeoJSON Feature: a LineString of its points in time order.

    ``properties`` holds the rest of the temporal entity and ``coordTimes`` (the time of each
    position, as GPX-derived GeoJSON tools name it).
    """
    points, times = [], []
    for row in streams.get(entity_id, {}).get(geometry_attr, {}).get("", []):
        value = (row.instance or {}).get("value")
        if isinstance(value, dict) and value.get("type") == "Point":
            points.append(value["coordinates"])
            times.append(format_time(row.time))
    geometry: dict[str, Any] | None
    if len(points) >= 2:
        geometry = {"type": "LineString", "coordinates": points}
    elif points:
        geometry = {"type": "Point", "coordinates": points[0]}
    else:
        geometry = None
    properties = {k: v for k, v in entity.items() if k != "id"}
    properties["coordTimes"] = times
    return {"id": entity_id, "type": "Feature", "geometry": geometry, "properties": properties}


def view_for(form: Form, sys_attrs: bool, lang: str | None) -> View:
    """The View instances are rendered with (names are never filtered here)."""
    return View(form=form, sys_attrs=sys_attrs, lang=lang)
