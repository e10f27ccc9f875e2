"""``city-data-hub keys|grants ...``: API keys and sharing grants, offline against DATABASE_URL (issue 12).

    keys create --role R [--role R2] [--tenant T] [--label L] [--expires P90D]
                prints the key's details, then the key itself on the last line (shown only here)
    keys list [--tenant T]
    keys revoke ID
    grants create --tenant A --to B --types T1,T2 [--attrs a,b]
                types and attributes as IRIs or terms of the core @context; --to '*' is open data
    grants list --tenant A
    grants revoke ID

The first operator key of an instance with authentication on is made this way; every later key
and grant can be made through ``POST /admin/keys`` and ``POST /admin/grants`` too.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from broker.api.apikeys import key_json, parse_expiry, parse_roles
from broker.api.grants import grant_json
from broker.auth.grants import Grants
from broker.auth.keys import KeyRing
from broker.clock import SYSTEM
from broker.config import Settings
from broker.errors import BadRequestData, NgsiLdError
from broker.jsonld.context import core_term_map
from broker.model.parse import check_name
from broker.store import create_pool, migrate
from broker.store.grants import EVERYONE
from broker.store.tenants import check_tenant_name

COMMANDS = ("keys", "grants")


def add_parsers(commands: Any) -> None:
    """Add the ``keys`` command to ``commands`` (argparse subparsers)."""
    keys = commands.add_parser("keys", help="create, list and revoke API keys (offline, via DATABASE_URL)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key; its last output line is the key, shown once")
    create.add_argument(
        "--role", action="append", required=True, help="operator, admin, writer, reader, device, personal"
    )
    create.add_argument("--tenant", help="the tenant the key acts in (not for operator keys)")
    create.add_argument("--label", default="", help="what the key is for, e.g. 'gateway 12, Kan'onji'")
    create.add_argument("--expires", help="lifetime as an ISO 8601 duration, e.g. P90D (default: none)")
    listing = actions.add_parser("list", help="the keys (never their secrets)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")

    grants = commands.add_parser("grants", help="create, list and revoke sharing grants (offline)")
    actions = grants.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="let tenant --to read chosen types of tenant --tenant")
    create.add_argument("--tenant", required=True, help="the tenant whose data is shared")
    create.add_argument("--to", required=True, help="the tenant it is shared with, or '*' for open data")
    create.add_argument("--types", required=True, help="entity types, comma-separated (IRIs or core terms)")
    create.add_argument("--attrs", help="only these attributes, comma-separated (default: all)")
    listing = actions.add_parser("list", help="the grants a tenant made, revoked ones too")
    listing.add_argument("--tenant", required=True)
    revoke = actions.add_parser("revoke", help="revoke a grant by id")
    revoke.add_argument("id")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    pool = await create_pool(settings.database_url, min_size=1, max_size=2, connect_timeout=10)
    try:
        await migrate(pool)
        if args.command == "grants":
            return await _grants(Grants(pool), args)
        ring = KeyRing(pool)
        if args.action == "create":
            return await _create(ring, args)
        if args.action == "list":
            tenant = check_tenant_name(args.tenant) if args.tenant is not None else None
            for key in await ring.listing(tenant):
                print(orjson.dumps(key_json(key)).decode())
            return 0
        if not await ring.revoke(args.id, None):
            print(f"no API key {args.id} that is not revoked already", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
        return 0
    except NgsiLdError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        await pool.close()


async def _create(ring: KeyRing, args: argparse.Namespace) -> int:
    roles = parse_roles(args.role)
    lifetime = parse_expiry(args.expires)
    if "operator" in roles and args.tenant is not None:
        print("error: an operator key covers the whole instance: it names no tenant", file=sys.stderr)
        return 2
    if "operator" not in roles and args.tenant is None:
        print("error: a key other than an operator's needs --tenant", file=sys.stderr)
        return 2
    tenant = check_tenant_name(args.tenant) if args.tenant is not None else None
    expires_at = SYSTEM.now() + lifetime if lifetime is not None else None
    stored, token = await ring.create(tenant, roles, args.label, expires_at)
    print(orjson.dumps(key_json(stored)).decode())
    print(token)
    return 0


async def _grants(grants: Grants, args: argparse.Namespace) -> int:
    """The ``grants`` actions; the same rules as ``POST /admin/grants`` (broker/api/grants.py)."""
    tm = core_term_map()
    if args.action == "revoke":
        if not await grants.revoke(args.id, None):
            print(f"no grant {args.id} that is not revoked already", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
        return 0
    tenant = check_tenant_name(args.tenant)
    if args.action == "list":
        for grant in await grants.listing(tenant):
            print(orjson.dumps(grant_json(grant, tm)).decode())
        return 0
    grantee = args.to if args.to == EVERYONE else check_tenant_name(args.to)
    if grantee == tenant:
        print("error: a tenant reads its own data without a grant", file=sys.stderr)
        return 2
    types = _names(args.types, "types")
    attrs = _names(args.attrs, "attrs") if args.attrs is not None else None
    expanded = None if attrs is None else [tm.expand(a) for a in attrs]
    grant = await grants.create(tenant, grantee, [tm.expand(t) for t in types], expanded, False)
    print(orjson.dumps(grant_json(grant, tm)).decode())
    return 0


def _names(raw: str, what: str) -> list[str]:
    names = sorted({check_name(name.strip(), what) for name in raw.split(",") if name.strip()})
    if not names:
        raise BadRequestData(f"--{what} names nothing")
    return names
