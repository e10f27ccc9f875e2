"""A subscription compiled for matching: everything parsed once, when it is created or changed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextRef
from broker.model.entity import LOCATION, Entity
from broker.model.render import Form
from broker.query.geo import GeoQuery
from broker.query.qlang import QExpr
from broker.query.scope import ScopeQuery
from broker.query.types import TypeExpr

# Clause 5.2.12: what a notification can be triggered by; the default is attribute changes.
TRIGGERS = frozenset(
    {
        "entityCreated",
        "entityUpdated",
        "entityDeleted",
        "attributeCreated",
        "attributeUpdated",
        "attributeDeleted",
    }
)
DEFAULT_TRIGGERS = frozenset({"attributeCreated", "attributeUpdated"})
# Entity members that are not attributes: pick/omit name them as they are (clause 4.21).
ENTITY_MEMBERS = frozenset({"id", "type", "scope"})
# The datasetId standing for an attribute's default instance (clause 4.5.5).
DEFAULT_INSTANCE = "@none"


@dataclass(frozen=True, slots=True)
class Change:
    """One operation's effect on one entity; ``after`` is None when it was deleted."""

    before: Entity | None
    after: Entity | None


@dataclass(frozen=True, slots=True)
class EntitySelector:
    """One entry of a subscription's 'entities': every given part must hold."""

    ids: frozenset[str] | None = None
    id_pattern: re.Pattern[str] | None = None
    types: TypeExpr | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how notifications go (clause 5.2.15)."""

    uri: str  # http(s)://... or mqtt(s)://user:pass@host:port/topic
    accept: str = "application/json"
    receiver_info: tuple[tuple[str, str], ...] = ()
    notifier_info: tuple[tuple[str, str], ...] = ()  # MQTT-Version, MQTT-QoS


@dataclass(frozen=True, slots=True)
class NotificationParams:
    """The members of NotificationParams (clause 5.2.14) that decide what a notification carries."""

    endpoint: Endpoint
    attributes: frozenset[str] | None = None
    form: Form = Form.NORMALIZED
    sys_attrs: bool = False
    show_changes: bool = False
    pick: frozenset[str] | None = None
    omit: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as the matcher and the notifier use it (names are expanded IRIs).

    ``tm`` is the term map of the @context the subscription was written with (its names and
    its q mean what they meant there); ``context`` is the @context its notifications name, and
    ``notify_tm`` the term map they are compacted with: the jsonldContext member's when given
    (clause 5.2.12), else the subscription's own.
    """

    tenant: str
    id: str
    endpoint: Endpoint
    context: ContextRef
    tm: TermMap
    entities: tuple[EntitySelector, ...] = ()
    watched: frozenset[str] | None = None
    triggers: frozenset[str] = DEFAULT_TRIGGERS
    q: QExpr | None = None
    geo: GeoQuery | None = None
    geoproperty: str = LOCATION
    scope: ScopeQuery | None = None
    attributes: frozenset[str] | None = None
    form: Form = Form.NORMALIZED
    sys_attrs: bool = False
    show_changes: bool = False
    lang: str | None = None
    active: bool = True
    expires_at: datetime | None = None
    throttling: float | None = None
    time_interval: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Clause 5.2.14 pick/omit (entity members: id, type, scope as they are, attributes expanded).
    pick: frozenset[str] | None = None
    omit: frozenset[str] = frozenset()
    # Clause 5.2.12 datasetId: the attribute instances concerned ("@none": the default one).
    dataset_ids: frozenset[str] | None = None
    notify_tm: TermMap | None = None

    @property
    def render_tm(self) -> TermMap:
        """The term map notifications are compacted with."""
        return self.notify_tm if self.notify_tm is not None else self.tm

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now
