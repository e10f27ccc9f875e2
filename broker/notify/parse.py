"""Subscription bodies (clauses 5.2.12-5.2.15): validated and compiled into a ``Subscription``.

The API calls ``compile_subscription`` on every create and update before storing
anything, and the registry calls it again on every stored body it loads, so a
body that was accepted once always compiles. Names are expanded with the term
map of the subscription's @context; ``q`` stays compact, as the matcher expands
its paths with the same map. Stored bodies (defaults, merges, moving between
@contexts) are broker.notify.body's.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import orjson
from yarl import URL

from broker.errors import BadRequestData, NotImplementedYet
from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextRef
from broker.model.entity import LOCATION, NULL_URI, parse_time
from broker.model.parse import check_name, check_time, check_uri
from broker.model.render import FORMS, Form
from broker.mqtt import QOS, MqttVersion
from broker.notify.model import (
    DEFAULT_INSTANCE,
    DEFAULT_TRIGGERS,
    ENTITY_MEMBERS,
    TRIGGERS,
    Endpoint,
    EntitySelector,
    NotificationParams,
    Subscription,
)
from broker.query.geo import GeoQuery, parse_geo_query
from broker.query.qlang import QExpr, parse_q
from broker.query.qregex import translate_regex
from broker.query.scope import parse_scope_q
from broker.query.types import TypeExpr, parse_type_expr
from broker.shape import Check, Shape

ENDPOINT_SCHEMES = frozenset({"http", "https", "mqtt", "mqtts"})
# An older spelling of subscriptionName (issue 13 item 15): older clients, ngsildclient among them,
# still send it. Accepted as an alias, and kept next to subscriptionName so they read it back.
LEGACY_NAME = "name"
ACCEPT = {"application/json": "application/json", "application/ld+json": "application/ld+json"}
MQTT_VERSIONS = frozenset(version.value for version in MqttVersion)
MQTT_QOS = frozenset(str(qos) for qos in sorted(QOS))

_MEMBERS = frozenset(
    {
        "id", "type", "subscriptionName", "description", "entities", "watchedAttributes",
        "notificationTrigger", "timeInterval", "q", "geoQ", "scopeQ", "lang", "isActive",
        "notification", "expiresAt", "throttling", "jsonldContext", "datasetId", LEGACY_NAME,
    }
)  # fmt: skip
# Read-only members the broker renders (5.2.2, 5.2.12, 5.2.14): a client echoing them back is not wrong.
READ_ONLY = frozenset({"status", "createdAt", "modifiedAt", "deletedAt"})
NOTIFICATION_READ_ONLY = frozenset(
    {
        "status", "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure",
        "consecutiveErrors", "lastErrorReason",
    }
)  # fmt: skip
_NOTIFICATION_MEMBERS = frozenset(
    {"attributes", "format", "sysAttrs", "showChanges", "endpoint", "pick", "omit"}
)
_ENDPOINT_MEMBERS = frozenset({"uri", "accept", "receiverInfo", "notifierInfo", "timeout", "cooldown"})
_SELECTOR_MEMBERS = frozenset({"id", "idPattern", "type"})
_GEO_MEMBERS = frozenset({"georel", "geometry", "coordinates", "geoproperty"})
# Parts of the specification this broker does not offer yet on subscriptions: 501, not a silent ignore.
_NOT_BUILT = frozenset({"csf", "temporalQ"})
_NOTIFICATION_NOT_BUILT = frozenset({"join", "joinLevel"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# Every member check: a 400 BadRequestData naming the member; JSON null and NGSI-LD Null refused.
_SHAPE = Shape(BadRequestData, is_null=lambda value: value == NULL_URI)
_optional = _SHAPE.optional
_required = _SHAPE.required
_any = _SHAPE.anything()
_text = _SHAPE.text()
_object = _SHAPE.obj()
_array = _SHAPE.list_of(_any)
_flag = _SHAPE.flag()
# Durations past ten years mean nothing to a notifier, and far larger ones overflow the times
# computed from them (Python's timedelta, PostgreSQL's timestamp): one such subscription stopped
# every delivery of its process.
MAX_SECONDS = 10 * 365.25 * 86400
_positive = _SHAPE.number(unit="seconds", above=0, at_most=MAX_SECONDS)
_non_negative = _SHAPE.number(unit="seconds", non_negative=True, at_most=MAX_SECONDS)


def compile_subscription(
    tenant: str,
    subscription_id: str,
    body: dict[str, Any],
    tm: TermMap,
    context: ContextRef,
    *,
    now: datetime | None = None,
    notify_tm: TermMap | None = None,
) -> Subscription:
    """Validate a Subscription body and compile it; BadRequestData (400) names what is wrong.

    ``now`` given: ``expiresAt`` must lie after it (creating, or setting expiresAt
    in an update); a stored subscription that has expired since still compiles.
    ``notify_tm`` is the term map of the body's jsonldContext, which notifications are
    compacted with (None: ``tm``, until the caller has resolved it).
    """
    if not isinstance(body, dict):
        raise BadRequestData("a Subscription must be a JSON object")
    _check_members(body, _MEMBERS | READ_ONLY, _NOT_BUILT, "Subscription")
    if body.get("type") != "Subscription":
        raise BadRequestData(f'type must be "Subscription", got {body.get("type")!r}')
    if "id" in body and check_uri(body["id"], "id") != subscription_id:
        raise BadRequestData(f"id {body['id']} differs from the subscription's id {subscription_id}")
    for member in ("subscriptionName", LEGACY_NAME, "description"):
        _optional(body, member, _text)
    legacy, name = body.get(LEGACY_NAME), body.get("subscriptionName")
    if legacy is not None and name is not None and legacy != name:
        raise BadRequestData("name is the former spelling of subscriptionName: give one, or both alike")
    entities = _optional(body, "entities", _selectors(tm))
    watched = _optional(body, "watchedAttributes", _names(tm))
    time_interval = _optional(body, "timeInterval", _positive)
    throttling = _optional(body, "throttling", _non_negative)
    _check_combination(entities, watched, time_interval, throttling)
    geo_q = _optional(body, "geoQ", lambda v, w: _geo_query(v, tm))
    geo, geoproperty = geo_q if geo_q is not None else (None, LOCATION)
    expires_at = _optional(body, "expiresAt", _moment)
    if expires_at is not None and now is not None and expires_at <= now:
        raise BadRequestData(f"expiresAt {body['expiresAt']} is not in the future")
    notification = _required(body, "notification", _object)
    triggers = _optional(body, "notificationTrigger", _triggers)
    jsonld_context = _optional(body, "jsonldContext", _http_uri)
    params = _notification_params(notification, tm)
    dataset_ids = _optional(body, "datasetId", _dataset_ids)
    return Subscription(
        tenant=tenant,
        id=subscription_id,
        context=jsonld_context if jsonld_context is not None else context,
        tm=tm,
        entities=entities or (),
        watched=watched,
        triggers=triggers if triggers is not None else DEFAULT_TRIGGERS,
        q=_optional(body, "q", lambda v, w: subscription_q(_text(v, w))),
        geo=geo,
        geoproperty=geoproperty,
        scope=_optional(body, "scopeQ", lambda v, w: parse_scope_q(_text(v, w))),
        lang=_optional(body, "lang", _text),
        active=_optional(body, "isActive", _flag) is not False,
        expires_at=expires_at,
        throttling=throttling,
        time_interval=time_interval,
        endpoint=params.endpoint,
        attributes=params.attributes,
        form=params.form,
        sys_attrs=params.sys_attrs,
        show_changes=params.show_changes,
        pick=params.pick,
        omit=params.omit,
        dataset_ids=dataset_ids,
        notify_tm=notify_tm if jsonld_context is not None else None,
    )


def subscription_q(text: str) -> QExpr:
    """A subscription's q (clause 5.2.12), also as ngsildclient sends it: percent-encoded.

    A q is JSON text here, not a URL parameter, but ngsildclient 0.5.2 encodes it as one
    ("level%3E3"). Decoded only when it does not parse as written, so a q comparing with a
    text that holds a "%" keeps its meaning.
    """
    try:
        return parse_q(text)
    except BadRequestData:
        decoded = unquote(text)
        if decoded == text:
            raise
    try:
        return parse_q(decoded)
    except BadRequestData:
        return parse_q(text)  # the error about the q as written


def _notification_params(notification: dict[str, Any], tm: TermMap) -> NotificationParams:
    """NotificationParams (clause 5.2.14), as far as this broker uses them."""
    prefix = "notification."
    known = _NOTIFICATION_MEMBERS | NOTIFICATION_READ_ONLY
    _check_members(notification, known, _NOTIFICATION_NOT_BUILT, "notification")
    form = _optional(notification, "format", _SHAPE.one_of(FORMS), prefix) or Form.NORMALIZED
    show_changes = _optional(notification, "showChanges", _flag, prefix) or False
    if show_changes and form is Form.SIMPLIFIED:
        raise BadRequestData("notification.showChanges cannot be true with format keyValues (clause 5.2.14)")
    attributes = _optional(notification, "attributes", _names(tm), prefix)
    pick = _optional(notification, "pick", _members(tm), prefix)
    omit = _optional(notification, "omit", _members(tm), prefix)
    _check_projection(attributes, pick, omit)
    return NotificationParams(
        endpoint=_endpoint(_required(notification, "endpoint", _object, prefix)),
        attributes=attributes,
        form=form,
        sys_attrs=_optional(notification, "sysAttrs", _flag, prefix) or False,
        show_changes=show_changes,
        pick=pick,
        omit=omit or frozenset(),
    )


def _members(tm: TermMap) -> Check[frozenset[str]]:
    """pick/omit (clauses 5.2.14, 4.21): entity members, id/type/scope as they are, attributes expanded."""

    def check(value: Any, what: str) -> frozenset[str]:
        names = [check_name(name, f"{what} entry") for name in _array(value, what)]
        for name in names:
            if any(c in name for c in "{},"):
                # Clause 4.21: nested projection (braces) is not offered on notifications yet.
                raise BadRequestData(f"{what} entry {name!r} contains a forbidden character")
        return frozenset(name if name in ENTITY_MEMBERS else tm.expand(name) for name in names)

    return check


def _check_projection(
    attributes: frozenset[str] | None, pick: frozenset[str] | None, omit: frozenset[str] | None
) -> None:
    """Clause 4.21: pick and omit replace attributes, and name no member in both."""
    for member, given in (("pick", pick), ("omit", omit)):
        if given is not None and attributes is not None:
            raise BadRequestData(f"notification.{member} cannot be combined with notification.attributes")
    if pick is not None and omit is not None and pick & omit:
        raise BadRequestData("notification.pick and notification.omit name the same member")


def _dataset_ids(value: Any, what: str) -> frozenset[str]:
    """datasetId (clause 5.2.12): the attribute instances a subscription concerns, @none the default one."""
    return frozenset(
        DEFAULT_INSTANCE if item == DEFAULT_INSTANCE else check_uri(item, f"{what} entry")
        for item in _array(value, what)
    )


def _check_combination(
    entities: tuple[EntitySelector, ...] | None,
    watched: frozenset[str] | None,
    time_interval: float | None,
    throttling: float | None,
) -> None:
    """The constraints between members of clause 5.2.12."""
    if entities is None and watched is None:
        raise BadRequestData("a Subscription needs entities or watchedAttributes (or both)")
    if time_interval is not None and watched is not None:
        raise BadRequestData("timeInterval cannot be combined with watchedAttributes (clause 5.2.12)")
    if time_interval is not None and throttling is not None:
        raise BadRequestData("timeInterval cannot be combined with throttling (clause 5.2.12)")


def _check_members(obj: dict[str, Any], known: frozenset[str], later: frozenset[str], where: str) -> None:
    not_built = sorted(set(obj) & later)
    if not_built:
        raise NotImplementedYet(f"{where}: {', '.join(not_built)} not implemented by this broker yet")
    _SHAPE.unknown(obj, known, where)


def _moment(value: Any, what: str) -> datetime:
    return parse_time(check_time(value, what))


def _names(tm: TermMap) -> Check[frozenset[str]]:
    """A non-empty array of attribute names, expanded with ``tm``."""

    def check(value: Any, what: str) -> frozenset[str]:
        return frozenset(tm.expand(check_name(name, f"{what} entry")) for name in _array(value, what))

    return check


def _triggers(value: Any, what: str) -> frozenset[str]:
    triggers = _array(value, what)
    unknown = [t for t in triggers if not isinstance(t, str) or t not in TRIGGERS]
    if unknown:
        raise BadRequestData(f"{what}: {unknown!r} not among {', '.join(sorted(TRIGGERS))}")
    return frozenset(triggers)


def _http_uri(value: Any, what: str) -> str:
    uri = check_uri(value, what)
    if URL(uri).scheme not in ("http", "https"):
        raise BadRequestData(f"{what} must be a dereferenceable http or https URL, got {uri}")
    return uri


def _selectors(tm: TermMap) -> Check[tuple[EntitySelector, ...]]:
    """The entities member: a non-empty array of EntitySelectors (clause 5.2.33)."""
    selectors = _SHAPE.list_of(lambda item, where: _selector(item, where, tm))
    return lambda value, what: tuple(selectors(value, what))


def _selector(item: Any, where: str, tm: TermMap) -> EntitySelector:
    _check_members(_object(item, where), _SELECTOR_MEMBERS, frozenset(), where)
    prefix = where + "."
    entity_id = _optional(item, "id", check_uri, prefix)
    pattern = _optional(item, "idPattern", _id_pattern, prefix)
    types: TypeExpr = _required(item, "type", lambda v, w: parse_type_expr(_text(v, w), tm), prefix)
    # 5.2.33: id takes precedence over idPattern.
    return EntitySelector(
        ids=frozenset({entity_id}) if entity_id is not None else None,
        id_pattern=pattern if entity_id is None else None,
        types=types,
    )


def _id_pattern(value: Any, what: str) -> re.Pattern[str]:
    try:
        regex = translate_regex(_text(value, what))
    except ValueError as exc:
        raise BadRequestData(f"{what} is not a supported regular expression: {exc}") from None
    return re.compile(regex.python, re.DOTALL | (re.IGNORECASE if regex.ignore_case else 0))


def _geo_query(value: Any, tm: TermMap) -> tuple[GeoQuery, str]:
    geo_q = _object(value, "geoQ")
    _check_members(geo_q, _GEO_MEMBERS, frozenset(), "geoQ")
    coordinates = _required(geo_q, "coordinates", _any, "geoQ.")
    if isinstance(coordinates, list):
        coordinates = orjson.dumps(coordinates).decode()
    elif not isinstance(coordinates, str):
        raise BadRequestData("geoQ.coordinates must be an array or its JSON text")
    geoproperty = _optional(geo_q, "geoproperty", check_name, "geoQ.")
    georel = _required(geo_q, "georel", _text, "geoQ.")
    geometry = _required(geo_q, "geometry", _text, "geoQ.")
    try:
        parsed = parse_geo_query(georel, geometry, coordinates, geoproperty)
    except BadRequestData as exc:
        raise BadRequestData(f"geoQ: {exc.detail}") from None
    assert parsed is not None
    return parsed, tm.expand(geoproperty) if geoproperty is not None else LOCATION


def _endpoint(endpoint: dict[str, Any]) -> Endpoint:
    _check_members(endpoint, _ENDPOINT_MEMBERS, frozenset(), "notification.endpoint")
    prefix = "notification.endpoint."
    uri = _required(endpoint, "uri", check_uri, prefix)
    url = URL(uri)
    scheme = url.scheme.lower()
    if scheme not in ENDPOINT_SCHEMES or not url.host:
        raise BadRequestData(
            f"notification.endpoint.uri must be an http, https, mqtt or mqtts URL, got {uri}"
        )
    mqtt = scheme.startswith("mqtt")
    if mqtt and url.path.strip("/") == "":
        raise BadRequestData(f"notification.endpoint.uri {uri} names no MQTT topic (mqtt://host:port/topic)")
    for member in ("timeout", "cooldown"):
        _optional(endpoint, member, _non_negative, prefix)
    accept = _optional(endpoint, "accept", _SHAPE.one_of(ACCEPT), prefix)
    receiver = _optional(endpoint, "receiverInfo", _key_values, prefix)
    notifier = _optional(endpoint, "notifierInfo", _key_values, prefix)
    for key, value in notifier or ():
        if key.startswith("MQTT-") and not mqtt:
            raise BadRequestData(f"notifierInfo {key} applies to mqtt and mqtts endpoints only")
        if key == "MQTT-QoS" and value not in MQTT_QOS:
            raise BadRequestData(f"notifierInfo MQTT-QoS must be 0, 1 or 2 (clause 7.2), got {value!r}")
        if key == "MQTT-Version" and value not in MQTT_VERSIONS:
            raise BadRequestData(f"notifierInfo MQTT-Version must be mqtt3.1.1 or mqtt5.0, got {value!r}")
    return Endpoint(
        uri=uri,
        accept=accept or "application/json",
        receiver_info=receiver or (),
        notifier_info=notifier or (),
    )


def _key_values(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    """receiverInfo/notifierInfo (5.2.22): keys usable as header names, values without line breaks."""
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(_array(value, what)):
        entry = f"{what}[{index}]"
        _check_members(_object(item, entry), frozenset({"key", "value"}), frozenset(), entry)
        key = _required(item, "key", _text, entry + ".")
        text = _required(item, "value", _any, entry + ".")
        if not isinstance(text, str):
            raise BadRequestData(f"{entry}.value must be a string")
        if not _HEADER_NAME.fullmatch(key):
            raise BadRequestData(f"{entry}.key {key!r} must be a token (letters, digits, -, _, ...)")
        if any(c in text for c in "\r\n\x00"):
            raise BadRequestData(f"{entry}.value must not contain line breaks")
        if key in (k for k, _ in pairs):
            raise BadRequestData(f"{what} has key {key!r} twice")
        pairs.append((key, text))
    return tuple(pairs)
