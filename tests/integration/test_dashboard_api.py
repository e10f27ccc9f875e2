"""The dashboard's page, files and small endpoints over HTTP (the page itself: tests/browser)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from broker.auth.model import Role
from tests.conftest import Api, problem
from tests.integration.auth_helpers import Secured, refused

pytestmark = pytest.mark.asyncio

NOT_FOUND = "ResourceNotFound"


async def test_the_page_and_its_files_are_served_from_the_package(client: TestClient[Any, Any]) -> None:
    page = await client.get("/dashboard")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    for name in ("dashboard.js", "dashboard.css"):
        assert f"/dashboard/static/{name}" in html
        served = await client.get(f"/dashboard/static/{name}")
        assert served.status == 200, name
    # Offline: the files name no other server. The script's URLs are names, never fetched: the SDM
    # @contexts it sends in Link headers (bundled in the broker), the JSON-LD rel and SVG's namespace.
    style = await (await client.get("/dashboard/static/dashboard.css")).text()
    script = await (await client.get("/dashboard/static/dashboard.js")).text()
    assert re.findall(r"https?://", html + style) == []
    names = ("https://raw.githubusercontent.com/smart-data-models/", "http://www.w3.org/")
    urls = re.findall(r"https?://[^\s\"'`<>]*", script)
    assert urls
    assert all(url.startswith(names) for url in urls), urls


@pytest.mark.parametrize(
    "name",
    ["..%2F__init__.py", "__init__.py", ".hidden.js", "missing.js", "%2Fetc%2Fpasswd", "index.html%00.js"],
)
async def test_nothing_but_the_shipped_files_can_be_read(client: TestClient[Any, Any], name: str) -> None:
    response = await client.get(f"/dashboard/static/{name}")
    assert response.status in (400, 404), name
    if response.status == 404:
        await problem(response, 404, NOT_FOUND)


async def test_config_gives_the_settings_and_the_broker_clock(api: Api) -> None:
    response = await api.request("GET", "/dashboard/api/config")
    assert response.status == 200
    body = await response.json()
    assert body["tiles"] == ""
    assert body["refreshSeconds"] == 5
    assert body["silentFactor"] == 3
    assert body["deviceIntervalSeconds"] == 600
    assert body["now"].endswith("Z")


async def test_tenants_lists_the_tenants_with_authentication_off(api: Api) -> None:
    await api.create({"id": "urn:ngsi-ld:Thing:dash1", "type": "Thing"})
    response = await api.request("GET", "/dashboard/api/tenants")
    assert response.status == 200
    assert api.tenant in await response.json()


async def test_with_authentication_on_the_page_is_open_and_its_data_is_for_admins_and_operators(
    secured: Secured,
) -> None:
    assert (await secured.call("GET", "/dashboard", None)).status == 200
    assert (await secured.call("GET", "/dashboard/static/dashboard.js", None)).status == 200
    for path in ("/dashboard/api/config", "/dashboard/api/tenants"):
        await refused(await secured.call("GET", path, None), 401)
        await refused(await secured.call("GET", path, secured.keys[Role.READER]), 403)
        await refused(await secured.call("GET", path, secured.keys[Role.WRITER]), 403)
    admin = await secured.call("GET", "/dashboard/api/tenants", secured.keys[Role.ADMIN])
    assert admin.status == 200
    assert await admin.json() == [secured.tenant]
    operator = await secured.call("GET", "/dashboard/api/tenants", secured.keys[Role.OPERATOR])
    assert operator.status == 200
    assert secured.tenant in await operator.json()
    config = await secured.call("GET", "/dashboard/api/config", secured.keys[Role.ADMIN])
    assert config.status == 200
