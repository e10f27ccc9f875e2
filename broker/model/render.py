"""Entity -> the representations of clause 4.5: normalized, concise, simplified (keyValues), GeoJSON.

Names are compacted with the request's TermMap; values are returned as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from broker.jsonld.context import TermMap
from broker.model.entity import LOCATION, SYSTEM_MEMBERS, VALUE_MEMBER, Entity, Instance
from broker.model.geojson import looks_like_geometry


class Form(Enum):
    NORMALIZED = "normalized"
    CONCISE = "concise"
    SIMPLIFIED = "simplified"


# The names a request (format, options) or a subscription (notification.format) gives each form.
FORMS: dict[str, Form] = {
    "normalized": Form.NORMALIZED,
    "concise": Form.CONCISE,
    "keyValues": Form.SIMPLIFIED,
    "simplified": Form.SIMPLIFIED,
}


@dataclass(frozen=True, slots=True)
class View:
    """How to render: the form, which members to keep, system attributes, language."""

    form: Form = Form.NORMALIZED
    sys_attrs: bool = False
    # Expanded attribute names to keep (None: all); 'id'/'type' of the entity are kept unless omitted.
    pick: frozenset[str] | None = None
    omit: frozenset[str] = frozenset()
    lang: str | None = None
    dataset_id: frozenset[str] | None = None
    # Per expanded attribute name, the expanded sub-attribute names pick keeps / omit drops (braces).
    sub_pick: Mapping[str, frozenset[str]] | None = None
    sub_omit: Mapping[str, frozenset[str]] | None = None


def render_entity(entity: Entity, tm: TermMap, view: View) -> dict[str, Any]:
    """The entity as a JSON object in the requested representation (without @context)."""
    out: dict[str, Any] = {}
    if _keep("id", view):
        out["id"] = entity.id
    if _keep("type", view):
        types = [tm.compact(t) for t in entity.types]
        out["type"] = types[0] if len(types) == 1 else types
    if entity.scopes and _keep("scope", view):
        out["scope"] = entity.scopes[0] if len(entity.scopes) == 1 else list(entity.scopes)
    for name, instances in entity.attrs.items():
        if not _keep(name, view):
            continue
        if view.dataset_id is not None:
            instances = [i for i in instances if (i.get("datasetId") or "@none") in view.dataset_id]
            if not instances:
                continue
        if view.sub_pick is not None and name in view.sub_pick:
            instances = [_project(i, view.sub_pick[name], keep=True) for i in instances]
        if view.sub_omit is not None and name in view.sub_omit:
            instances = [_project(i, view.sub_omit[name], keep=False) for i in instances]
        # Inside an array a bare value would read back as one Property holding the array.
        bare = len(instances) == 1
        rendered = [render_instance(i, tm, view, bare_ok=bare) for i in instances]
        out[tm.compact(name)] = rendered[0] if len(rendered) == 1 else rendered
    if view.sys_attrs and view.form is not Form.SIMPLIFIED:
        out["createdAt"] = entity.created_at
        out["modifiedAt"] = entity.modified_at
    return out


def _project(instance: Instance, names: frozenset[str], *, keep: bool) -> Instance:
    """An instance with only (keep) or without the sub-attributes ``names``; core members stay."""
    return {k: v for k, v in instance.items() if ":" not in k or (k in names) == keep}


def _keep(name: str, view: View) -> bool:
    if name in view.omit:
        return False
    return view.pick is None or name in view.pick


def render_instance(instance: Instance, tm: TermMap, view: View, *, bare_ok: bool = True) -> Any:
    """One attribute instance in the view's form."""
    kind = instance["type"]
    member = stored_member = VALUE_MEMBER[kind]
    value = instance[member]
    if kind == "VocabProperty":
        value = [tm.compact(v) for v in value] if isinstance(value, list) else tm.compact(value)
    if kind == "LanguageProperty" and view.lang is not None and view.lang != "*":
        kind, member, value, lang = "Property", "value", *pick_language(value, view.lang)
    else:
        lang = None
    if view.form is Form.SIMPLIFIED:
        return value if member in ("value", "object") else {member: value}
    # Concise drops the type, except where the inference rules of 4.5 would read it back differently.
    typed = view.form is not Form.CONCISE or (kind == "Property" and looks_like_geometry(value))
    out: dict[str, Any] = {"type": kind} if typed else {}
    out[member] = value
    if lang is not None:
        out["lang"] = lang
    for key, item in instance.items():
        if key in ("type", stored_member, "lang"):
            continue
        if ":" in key:
            out[tm.compact(key)] = render_instance(item, tm, view)
        elif key == "objectType":
            out[key] = [tm.compact(t) for t in item] if len(item) > 1 else tm.compact(item[0])
        elif key in SYSTEM_MEMBERS:
            if view.sys_attrs and key in ("createdAt", "modifiedAt"):
                out[key] = item
        else:
            out[key] = item
    if view.form is Form.CONCISE and bare_ok and len(out) == 1 and member == "value" and _is_scalar(value):
        return value
    return out


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def pick_language(language_map: dict[str, Any], wanted: str) -> tuple[Any, str]:
    """The best text of a languageMap for a 'lang' parameter ('ja', 'en,ja;q=0.5'), and its tag."""
    preferences = []
    for position, part in enumerate(wanted.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        preferences.append((-quality, position, tag.strip()))
    for _, _, tag in sorted(preferences):
        if tag in language_map:
            return language_map[tag], tag
    if "@none" in language_map:
        return language_map["@none"], "@none"
    tag = next(iter(language_map))
    return language_map[tag], tag


def geometry_of(entity: Entity, attr: str = LOCATION) -> Any:
    """The GeoJSON geometry of an entity's GeoProperty (default instance first), or None."""
    instances = entity.attrs.get(attr, [])
    for instance in sorted(instances, key=lambda i: "datasetId" in i):
        if instance.get("type") == "GeoProperty":
            return instance["value"]
    return None


def to_feature(entity: Entity, rendered: dict[str, Any], geometry_attr: str) -> dict[str, Any]:
    """GeoJSON Feature of an entity (clause 4.5.16)."""
    properties = {k: v for k, v in rendered.items() if k != "id"}
    return {
        "id": entity.id,
        "type": "Feature",
        "geometry": geometry_of(entity, geometry_attr),
        "properties": properties,
    }
