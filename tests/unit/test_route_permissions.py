"""Every route of the application declares the permission it needs (issue 12 item 2).

A route missing from broker/auth/routes.py would be refused to everyone but still a hole waiting
to be opened by a hurried fix: this fails first, naming it. The table holds no stale entries either.
"""

from __future__ import annotations

from broker.app import create_app
from broker.auth.model import ROLE_PERMISSIONS, Permission, Role
from broker.auth.routes import PERMISSIONS, permission_of
from broker.config import load


def _routes() -> list[tuple[str, str]]:
    app = create_app(load({}))
    return [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None]


def test_every_route_of_the_application_declares_its_permission() -> None:
    missing = [f"{method} {path}" for method, path in _routes() if permission_of(method, path) is None]
    assert not missing, "routes without a permission in broker/auth/routes.py:\n" + "\n".join(missing)


def test_the_table_names_only_routes_that_exist() -> None:
    served = {(path.rstrip("/"), method) for method, path in _routes()}
    stale = [
        f"{method} {path}"
        for path, methods in PERMISSIONS.items()
        for method in methods
        if (path, method) not in served
    ]
    assert not stale, "permissions declared for routes the application does not serve:\n" + "\n".join(stale)


def test_head_needs_what_get_needs_and_a_trailing_slash_changes_nothing() -> None:
    assert permission_of("HEAD", "/ngsi-ld/v1/entities/") == Permission.READ
    assert permission_of("POST", "/ngsi-ld/v1/entities/") == Permission.WRITE
    assert permission_of("GET", "/ngsi-ld/v1/snapshots/{tail}") == Permission.READ
    assert permission_of("GET", "/no/such/route") is None


def test_roles_nest_as_the_readme_says() -> None:
    assert ROLE_PERMISSIONS[Role.OPERATOR] == frozenset(Permission)
    assert ROLE_PERMISSIONS[Role.READER] < ROLE_PERMISSIONS[Role.WRITER] < ROLE_PERMISSIONS[Role.ADMIN]
    assert Permission.OPERATE not in ROLE_PERMISSIONS[Role.ADMIN]
    assert ROLE_PERMISSIONS[Role.DEVICE] == {Permission.DEVICE}
