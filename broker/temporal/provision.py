"""The transactions of temporal provision (clauses 5.6.11-5.6.16), for api/temporal_provision.py.

Each function is one transaction on the tenant's history; ResourceNotFound when what it names
has no history here.
"""

from __future__ import annotations

import asyncpg

from broker.errors import BadRequestData, ResourceNotFound
from broker.model.entity import Entity, Instance
from broker.model.ops import stamp
from broker.store import history
from broker.store.tenants import Tenants


async def append(
    pool: asyncpg.Pool, tenants: Tenants, tenant: str, entity: Entity, now: str, *, creates: bool
) -> bool:
    """Append the entity's instances (creating the tenant when ``creates``); True when it had no history."""
    async with tenants.writing(pool, tenant) as scope:
        if creates:
            await scope.ensure()
        else:
            await scope.require()
        await history.lock_entity(scope.conn, tenant, entity.id)
        known = await history.types_of(scope.conn, tenant, entity.id)
        if known is None and not creates:
            raise ResourceNotFound(f"entity {entity.id} has no temporal evolution here")
        if not entity.types:
            entity.types = known or []
        await history.append_rows(scope.conn, tenant, history.provided_rows(entity, now))
    return known is None


async def delete_entity(pool: asyncpg.Pool, tenants: Tenants, tenant: str, entity_id: str) -> None:
    """Remove an entity's whole history (6.19.3.2)."""
    async with tenants.writing(pool, tenant) as scope:
        await scope.require()
        if not await history.delete_entity(scope.conn, tenant, entity_id):
            raise ResourceNotFound(f"entity {entity_id} has no temporal evolution here")


async def delete_attribute(
    pool: asyncpg.Pool, tenants: Tenants, tenant: str, entity_id: str, attr: str, datasets: list[str] | None
) -> None:
    """Remove an attribute's history, of the given datasetIds ('' default) or all (6.21.3.1)."""
    async with tenants.writing(pool, tenant) as scope:
        await scope.require()
        if not await history.delete_attribute(scope.conn, tenant, entity_id, attr, datasets):
            raise ResourceNotFound(f"entity {entity_id} has no temporal evolution of {attr} here")


async def modify_instance(
    pool: asyncpg.Pool,
    tenants: Tenants,
    tenant: str,
    entity_id: str,
    attr: str,
    instance_uri: str,
    patch: Instance,
    now: str,
) -> None:
    """Merge ``patch`` into one stored instance, keeping its instanceId and datasetId (6.22.3.1)."""
    row_id = _row_id(instance_uri)
    async with tenants.writing(pool, tenant) as scope:
        await scope.require()
        old = await history.find_instance(scope.conn, tenant, entity_id, attr, row_id)
        if old is None:
            raise ResourceNotFound(f"attribute instance {instance_uri} does not exist")
        if patch.get("datasetId", old.get("datasetId")) != old.get("datasetId"):
            raise BadRequestData("an instance's datasetId cannot be changed")
        merged = stamp({**old, **patch}, now, old.get("createdAt"))
        await history.replace_instance(scope.conn, tenant, entity_id, attr, row_id, merged, now)


async def delete_instance(
    pool: asyncpg.Pool, tenants: Tenants, tenant: str, entity_id: str, attr: str, instance_uri: str
) -> None:
    """Remove one stored instance (6.22.3.2)."""
    row_id = _row_id(instance_uri)
    async with tenants.writing(pool, tenant) as scope:
        await scope.require()
        if not await history.delete_instance(scope.conn, tenant, entity_id, attr, row_id):
            raise ResourceNotFound(f"attribute instance {instance_uri} does not exist")


def _row_id(instance_uri: str) -> int:
    row_id = history.row_id_of(instance_uri)
    if row_id is None:
        raise ResourceNotFound(f"attribute instance {instance_uri} does not exist")
    return row_id
