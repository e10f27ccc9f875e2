"""The permission every route needs: one table, checked for completeness by a test that walks the
application's router (tests/unit/test_route_permissions.py), so no route can be left open by accident.

Keys are the route's canonical path without a trailing slash; HEAD needs what GET needs; ``*`` is
a route answering every method (the 501 resources).
"""

from __future__ import annotations

from broker.auth.model import Permission

P = Permission
_NGSI = "/ngsi-ld/v1"
_READ_ONLY = {"GET": P.READ}
_COLLECTION = {"GET": P.READ, "POST": P.WRITE}
_ITEM = {"GET": P.READ, "PUT": P.WRITE, "PATCH": P.WRITE, "DELETE": P.WRITE}

PERMISSIONS: dict[str, dict[str, Permission]] = {
    # Operations
    "/health": {"GET": P.PUBLIC},
    "/ready": {"GET": P.PUBLIC},
    # Prometheus metrics span every tenant (outbox rows per subscription): the instance's operators.
    "/metrics": {"GET": P.OPERATE},
    # NGSI-LD API (ETSI GS CIM 009 V1.9.1 clause 6)
    f"{_NGSI}/entities": {"GET": P.READ, "POST": P.WRITE, "DELETE": P.WRITE},
    f"{_NGSI}/entities/{{entity_id}}": _ITEM,
    f"{_NGSI}/entities/{{entity_id}}/attrs": {"POST": P.WRITE, "PATCH": P.WRITE},
    f"{_NGSI}/entities/{{entity_id}}/attrs/{{attr}}": {"PATCH": P.WRITE, "PUT": P.WRITE, "DELETE": P.WRITE},
    f"{_NGSI}/entityOperations/query": {"POST": P.READ},
    f"{_NGSI}/entityOperations/create": {"POST": P.WRITE},
    f"{_NGSI}/entityOperations/upsert": {"POST": P.WRITE},
    f"{_NGSI}/entityOperations/update": {"POST": P.WRITE},
    f"{_NGSI}/entityOperations/merge": {"POST": P.WRITE},
    f"{_NGSI}/entityOperations/delete": {"POST": P.WRITE},
    f"{_NGSI}/jsonldContexts": _COLLECTION,
    # A hosted @context is fetched by JSON-LD processors that hold no credentials.
    f"{_NGSI}/jsonldContexts/{{context_id}}": {"GET": P.PUBLIC, "DELETE": P.WRITE},
    f"{_NGSI}/types": _READ_ONLY,
    f"{_NGSI}/types/{{type}}": _READ_ONLY,
    f"{_NGSI}/attributes": _READ_ONLY,
    f"{_NGSI}/attributes/{{attr}}": _READ_ONLY,
    f"{_NGSI}/info/sourceIdentity": _READ_ONLY,
    f"{_NGSI}/subscriptions": _COLLECTION,
    f"{_NGSI}/subscriptions/{{subscription_id}}": {"GET": P.READ, "PATCH": P.WRITE, "DELETE": P.WRITE},
    # Registrations and their subscriptions: as /subscriptions (issue 14 items 1-2).
    f"{_NGSI}/csourceRegistrations": _COLLECTION,
    f"{_NGSI}/csourceRegistrations/{{registration_id}}": {"GET": P.READ, "PATCH": P.WRITE, "DELETE": P.WRITE},
    f"{_NGSI}/csourceSubscriptions": _COLLECTION,
    f"{_NGSI}/csourceSubscriptions/{{subscription_id}}": {"GET": P.READ, "PATCH": P.WRITE, "DELETE": P.WRITE},
    f"{_NGSI}/temporal/entities": _COLLECTION,
    f"{_NGSI}/temporal/entities/{{entity_id}}": {"GET": P.READ, "DELETE": P.WRITE},
    f"{_NGSI}/temporal/entities/{{entity_id}}/attrs": {"POST": P.WRITE},
    f"{_NGSI}/temporal/entities/{{entity_id}}/attrs/{{attr}}": {"DELETE": P.WRITE},
    f"{_NGSI}/temporal/entities/{{entity_id}}/attrs/{{attr}}/{{instance_id}}": {
        "PATCH": P.WRITE,
        "DELETE": P.WRITE,
    },
    f"{_NGSI}/temporal/entityOperations/query": {"POST": P.READ},
    # Not built yet (501): still not for anonymous callers.
    **{
        f"{_NGSI}/{resource}{tail}": {"*": P.READ}
        for resource in (
            "entityOperations/purge",
            "snapshots",
            "entityMaps",
            "info",
        )
        for tail in ("", "/{tail}")
    },
    # A tenant's administration
    "/admin/keys": {"GET": P.ADMIN, "POST": P.ADMIN},
    "/admin/keys/{key_id}": {"GET": P.ADMIN, "DELETE": P.ADMIN},
    "/admin/grants": {"GET": P.ADMIN, "POST": P.ADMIN},
    "/admin/grants/{grant_id}": {"GET": P.ADMIN, "DELETE": P.ADMIN},
    "/admin/personal": {"GET": P.ADMIN},
    "/admin/personal/{entity_type}": {"PUT": P.ADMIN, "DELETE": P.ADMIN},
    "/admin/audit": {"GET": P.ADMIN},
    "/admin/retention": {"GET": P.ADMIN},
    # Purge runs span every tenant: the instance's operators only.
    "/admin/retention/runs": {"GET": P.OPERATE, "POST": P.OPERATE},
    "/admin/retention/{entity_type}": {"GET": P.ADMIN, "PUT": P.ADMIN, "DELETE": P.ADMIN},
    "/admin/deadletters": {"GET": P.ADMIN},
    "/admin/forwarding/deadletters": {"GET": P.ADMIN},
    "/admin/deadletters/{letter_id}": {"GET": P.ADMIN, "DELETE": P.ADMIN},
    "/admin/deadletters/{letter_id}/replay": {"POST": P.ADMIN},
    "/admin/deadletters/replay": {"POST": P.ADMIN},
    # The operator dashboard (broker/dashboard): the page and its files hold no data and must load
    # before the page can ask for a key (a browser sends no bearer token on navigation); what it
    # shows comes from routes that need a tenant's admin or the operator.
    "/dashboard": {"GET": P.PUBLIC},
    "/dashboard/static/{name}": {"GET": P.PUBLIC},
    "/dashboard/api/config": {"GET": P.ADMIN},
    "/dashboard/api/tenants": {"GET": P.ADMIN},
    # IoT Agent provisioning API
    **{
        path: {"GET": P.ADMIN, "POST": P.ADMIN, "PUT": P.ADMIN, "DELETE": P.ADMIN}
        for path in ("/iot/services", "/iot/groups")
    },
    "/iot/devices": {"GET": P.ADMIN, "POST": P.ADMIN},
    "/iot/devices/{device_id}": {"GET": P.ADMIN, "PUT": P.ADMIN, "DELETE": P.ADMIN},
    # Southbound: IoT Agent HTTP bindings carry their group's apikey; webhooks a device key.
    "/iot/json": {"POST": P.APIKEY},
    "/iot/json/commands": {"POST": P.APIKEY},
    "/iot/d": {"POST": P.APIKEY},
    "/adapters/tts": {"POST": P.DEVICE},
    # The Things Stack appends a path per message type to the webhook's base URL.
    **{
        f"/adapters/tts/{kind}": {"POST": P.DEVICE}
        for kind in (
            "uplink",
            "join",
            "location",
            "service-data",
            "downlink-ack",
            "downlink-nack",
            "downlink-sent",
            "downlink-failed",
            "downlink-queued",
            "downlink-queue-invalidated",
        )
    },
    "/adapters/chirpstack": {"POST": P.DEVICE},
    "/adapters/sigfox/uplink": {"POST": P.DEVICE},
}


# The reads that apply a sharing grant or open data (broker/api/visibility.py): through a grant,
# only these answer; every other route is the owner tenant's alone.
SHAREABLE: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", f"{_NGSI}/entities"),
        ("GET", f"{_NGSI}/entities/{{entity_id}}"),
        ("POST", f"{_NGSI}/entityOperations/query"),
    }
)


def shareable(method: str, canonical: str) -> bool:
    return ("GET" if method == "HEAD" else method, canonical.rstrip("/")) in SHAREABLE


def permission_of(method: str, canonical: str) -> Permission | None:
    """The permission ``method`` on the route ``canonical`` needs; None when the table lacks it."""
    methods = PERMISSIONS.get(canonical.rstrip("/") or "/")
    if methods is None:
        return None
    return methods.get("GET" if method == "HEAD" else method) or methods.get("*")
