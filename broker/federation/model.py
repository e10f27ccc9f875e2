"""Context source registrations compiled for matching (ETSI GS CIM 009 V1.9.1 clauses 5.2.8-5.2.10, 4.3.6).

Names are expanded IRIs; a registration is compiled once from its stored body and then only
compared, by the query of 5.10.2, the registration subscriptions of 5.11 and ``lookup``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class Mode(enum.StrEnum):
    """Clause 4.3.6.1: how a registered source takes part in distributed operations."""

    INCLUSIVE = "inclusive"
    EXCLUSIVE = "exclusive"
    REDIRECT = "redirect"
    AUXILIARY = "auxiliary"


# Clause 4.3.6.2: the operations a registration may name, one by one.
OPERATIONS = frozenset(
    {
        "createEntity", "updateEntity", "appendAttrs", "updateAttrs", "deleteAttrs", "deleteEntity",
        "createBatch", "upsertBatch", "updateBatch", "deleteBatch", "mergeEntity", "replaceEntity",
        "replaceAttrs", "mergeBatch", "upsertTemporal", "appendAttrsTemporal", "deleteAttrsTemporal",
        "updateAttrsTemporal", "deleteAttrInstanceTemporal", "deleteTemporal", "retrieveEntity",
        "queryEntity", "queryBatch", "retrieveTemporal", "queryTemporal", "retrieveEntityTypes",
        "retrieveEntityTypeDetails", "retrieveEntityTypeInfo", "retrieveAttrTypes",
        "retrieveAttrTypeDetails", "retrieveAttrTypeInfo", "createSubscription", "updateSubscription",
        "retrieveSubscription", "querySubscription", "deleteSubscription", "retrieveEntityMap",
        "queryEntityMap", "createEntityMap", "updateEntityMap", "deleteEntityMap",
    }
)  # fmt: skip
_RETRIEVE = frozenset({"retrieveEntity", "queryEntity"})
_DISCOVERY = frozenset(
    {
        "retrieveEntityTypes", "retrieveEntityTypeDetails", "retrieveEntityTypeInfo",
        "retrieveAttrTypes", "retrieveAttrTypeDetails", "retrieveAttrTypeInfo",
    }
)  # fmt: skip
_SUBSCRIPTION = frozenset(
    {"createSubscription", "updateSubscription", "retrieveSubscription", "querySubscription",
     "deleteSubscription"}
)  # fmt: skip
_UPDATE = frozenset({"updateEntity", "updateAttrs", "replaceEntity", "replaceAttrs"})
_WRITE = frozenset({"createEntity", "appendAttrs", "deleteAttrs", "deleteEntity", "mergeEntity"}) | _UPDATE
# Clause 4.3.6.3: the operation groups a registration may name instead (expanded when stored).
GROUPS: dict[str, frozenset[str]] = {
    "federationOps": _RETRIEVE | _DISCOVERY | _SUBSCRIPTION | {"queryBatch"},
    "updateOps": _UPDATE,
    "retrieveOps": _RETRIEVE,
    "redirectionOps": _WRITE | _RETRIEVE | _DISCOVERY,
}
DEFAULT_OPERATIONS = ("federationOps",)


@dataclass(frozen=True, slots=True)
class EntityInfo:
    """Clause 5.2.8: an entity id, or an id pattern, or neither (every entity), of the types given."""

    types: frozenset[str]
    id: str | None = None
    id_pattern: re.Pattern[str] | None = None

    def selects(self, entity_id: str | None, types: frozenset[str] | None) -> bool:
        """Whether an entity of ``entity_id`` (None: any) and ``types`` (None: any) is this one's."""
        if types is not None and self.types.isdisjoint(types):
            return False
        if entity_id is None:
            return True
        if self.id is not None:
            return self.id == entity_id
        return self.id_pattern is None or self.id_pattern.fullmatch(entity_id) is not None


@dataclass(frozen=True, slots=True)
class RegistrationInfo:
    """Clause 5.2.10: entities and attribute names a source provides; empty means any."""

    entities: tuple[EntityInfo, ...] = ()
    properties: frozenset[str] = frozenset()
    relationships: frozenset[str] = frozenset()

    @property
    def attributes(self) -> frozenset[str]:
        return self.properties | self.relationships

    def covers(self, attrs: frozenset[str] | None) -> bool:
        """Whether the source may provide one of ``attrs`` (None: any attribute)."""
        return attrs is None or not self.attributes or not self.attributes.isdisjoint(attrs)


@dataclass(frozen=True, slots=True)
class Registration:
    """A CSourceRegistration (clause 5.2.9) as matching uses it; ``body`` is the stored (expanded) form."""

    tenant: str
    id: str
    endpoint: str
    mode: Mode
    operations: frozenset[str]
    information: tuple[RegistrationInfo, ...]
    body: dict[str, Any]
    expires_at: datetime | None = None
    location: dict[str, Any] | None = None
    scopes: tuple[str, ...] | None = None
    context_source_info: tuple[tuple[str, str], ...] = ()
    # Registration properties (clause 5.2.9 "other members"): expanded names, values as given.
    properties: tuple[tuple[str, Any], ...] = ()

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def matches(
        self,
        entity_id: str | None,
        types: frozenset[str] | None,
        attrs: frozenset[str] | None,
        operation: str | None = None,
    ) -> bool:
        """Whether this source may answer for the entity and attributes (4.3.6: information overlaps),
        and offers ``operation`` (None: any)."""
        if operation is not None and operation not in self.operations:
            return False
        return any(
            info.covers(attrs)
            and (not info.entities or any(e.selects(entity_id, types) for e in info.entities))
            for info in self.information
        )
