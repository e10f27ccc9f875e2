"""An entity as the broker keeps it: expanded names, attribute instances in normalized shape.

An attribute *instance* is a dict with the normalized NGSI-LD members under their
short core names ("type", "value", "object", "datasetId", "observedAt", ...) and
its sub-attributes under their expanded IRIs. Core member names never contain a
colon and expanded IRIs always do, so the two never collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.errors import BadRequestData

Instance = dict[str, Any]

NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
NULL_URI = "urn:ngsi-ld:null"
LOCATION = NGSI_LD + "location"
# Attributes the core model defines as GeoProperties (clause 4.7).
GEO_ATTRIBUTES = frozenset({LOCATION, NGSI_LD + "observationSpace", NGSI_LD + "operationSpace"})

VALUE_MEMBER: dict[str, str] = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
# Members of an attribute instance that are not sub-attributes.
INSTANCE_MEMBERS = frozenset(
    {
        "type",
        "datasetId",
        "observedAt",
        "unitCode",
        "objectType",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "lang",
        *VALUE_MEMBER.values(),
    }
)
SYSTEM_MEMBERS = ("createdAt", "modifiedAt", "deletedAt", "instanceId")
# Instances one attribute may have (NGSI_MAX_INSTANCES): each datasetId is one.
DEFAULT_MAX_INSTANCES = 1000


@dataclass(slots=True)
class Entity:
    """One entity (or, with an empty id, an entity fragment) in expanded form."""

    id: str
    types: list[str] = field(default_factory=list)
    scopes: list[str] | None = None
    attrs: dict[str, list[Instance]] = field(default_factory=dict)
    created_at: str | None = None
    modified_at: str | None = None

    def copy(self) -> Entity:
        """A copy safe to modify (instances are copied one level deep per attribute)."""
        return Entity(
            id=self.id,
            types=list(self.types),
            scopes=None if self.scopes is None else list(self.scopes),
            attrs={name: [dict(i) for i in instances] for name, instances in self.attrs.items()},
            created_at=self.created_at,
            modified_at=self.modified_at,
        )


def dataset_id(instance: Instance) -> str | None:
    """The datasetId of an instance, None for the default instance."""
    value = instance.get("datasetId")
    return value if isinstance(value, str) else None


def find_instance(instances: list[Instance], wanted: str | None) -> int:
    """Index of the instance with datasetId ``wanted`` (None: the default instance), or -1."""
    for index, instance in enumerate(instances):
        if dataset_id(instance) == wanted:
            return index
    return -1


def check_instance_count(attr: str, count: int, limit: int) -> None:
    """400 when an attribute would have more instances than ``limit`` (NGSI_MAX_INSTANCES)."""
    if count > limit:
        raise BadRequestData(
            f"attribute {attr} has {count} instances; at most {limit} are accepted (NGSI_MAX_INSTANCES)"
        )


def is_null_instance(instance: Instance) -> bool:
    """True when an instance carries NGSI-LD Null, i.e. asks for its own deletion."""
    return is_null_value(instance.get(VALUE_MEMBER.get(instance.get("type", ""), "value")))


def is_null_value(value: Any) -> bool:
    """True when an attribute's value member is NGSI-LD Null (also as a list or language map)."""
    if value == NULL_URI:
        return True
    if isinstance(value, list) and value == [NULL_URI]:
        return True
    return isinstance(value, dict) and value.get("@none") == NULL_URI


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, in its shortest exact form (clause 4.6.3's examples):
    whole seconds without a fraction, else milliseconds, else microseconds."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    micro = moment.microsecond
    spec = "seconds" if micro == 0 else "milliseconds" if micro % 1000 == 0 else "microseconds"
    # An aware UTC time prints '+00:00': swapping the suffix is cheaper than replace(tzinfo=None),
    # and every row read (two timestamps each) and every observedAt comes through here.
    return moment.isoformat(timespec=spec)[:-6] + "Z"


def now() -> str:
    """The current time as an NGSI-LD DateTime string."""
    return format_time(datetime.now(UTC))


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date-time; a time without offset is taken as UTC. Raises ValueError."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
