"""PostgreSQL + PostGIS storage: the pool, migrations and the SQL of each resource."""

from broker.store.migrate import migrate
from broker.store.pool import create_pool

__all__ = ["create_pool", "migrate"]
