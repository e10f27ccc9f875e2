"""The operator dashboard in a real headless Chromium (Debian's package, driven by Playwright).

The app runs on a loopback port with PostgreSQL and the test's Mosquitto, under an MQTT topic
prefix of its own (so the session's app, subscribed to the usual topics, never takes these
messages). The dashboard measures silence on a clock of its own, which the tests set: the
messages carry their observation times, the page's "now" is the test's.
Screenshots go to the pytest tmp dir (dashboard-screenshots/), printed at the end of each test.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from broker import dashboard
from broker.app import create_app
from broker.auth.model import Role
from broker.clock import SystemClock
from broker.config import Settings
from tests.conftest import Api, eventually, forget_mqtt_session
from tests.integration.auth_helpers import Secured, serve_secured
from tests.integration.test_device_ingest import (
    SDM_DEVICE,
    SDM_ENVIRONMENT,
    SDM_TRANSPORTATION,
    dev_eui,
    entity_when,
    flood_id,
    gauge,
    link,
    mqtt_send,
    provision,
    tts_message,
    tts_topic,
)

pytestmark = pytest.mark.asyncio

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_PRESENT = CHROMIUM.exists()
# The page refreshes every second here (5 s by default): "turns red within a few seconds".
REFRESH = 1.0
WITHIN_MS = 10_000


class SetClock(SystemClock):
    """The system clock, except for ``now``, which reads what the test set."""

    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


class Dashboard:
    def __init__(self, client: TestClient[Any, Any], prefix: str, clock: SetClock) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock

    def url(self, tenant: str) -> str:
        return str(self.client.make_url(f"/dashboard?tenant={tenant}"))

    async def publish(self, device_id: str, message: dict[str, Any]) -> None:
        await mqtt_send(f"{self.prefix}/{tts_topic(device_id)}", orjson.dumps(message))


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is missing: `bash deploy/setup.sh --test` installs Debian's chromium")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def board(settings: Settings) -> AsyncIterator[Dashboard]:
    """An app of the test's own (topic prefix, MQTT session, share group), once it is subscribed."""
    client_id = f"ngsi-test-dash-{uuid.uuid4().hex[:10]}"
    prefix = f"dash{secrets.token_hex(3)}"
    app = create_app(
        settings.replace(
            mqtt_client_id=client_id,
            mqtt_share_group=f"g{uuid.uuid4().hex[:8]}",
            mqtt_topic_prefix=prefix,
            dashboard_refresh=REFRESH,
        )
    )
    clock = SetClock(datetime.now(UTC))
    app[dashboard.CLOCK] = clock
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:

            async def subscribed() -> bool:
                body = await (await client.get("/health")).json()
                return bool(body["devices"].get("mqtt", {}).get("connected"))

            await eventually(subscribed, within=10.0, what="the app subscribed")
            yield Dashboard(client, prefix, clock)
    finally:
        await asyncio.to_thread(forget_mqtt_session, settings.mqtt_url, client_id)


@pytest.fixture
async def page(browser: Browser, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A phone-sized page that records console errors and failed requests (each test asserts none)."""
    context = await browser.new_context(viewport={"width": 412, "height": 915}, device_scale_factor=1)
    tab = await context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.errors = errors  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        shots = tmp_path / "dashboard-screenshots"
        shots.mkdir(exist_ok=True)
        await tab.screenshot(path=str(shots / f"{request.node.name}.png"), full_page=True)
        print(f"screenshot: {shots / (request.node.name + '.png')}")
        await context.close()


def console_errors(page: Page) -> list[str]:
    errors: list[str] = page.errors  # type: ignore[attr-defined]
    return errors


def at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def uplink(
    eui: str, device_id: str, level: float, *, f_cnt: int, observed: datetime, flood: int = 0
) -> dict[str, Any]:
    message = tts_message(eui, device_id, level, f_cnt=f_cnt, flood=flood)
    message["uplink_message"]["received_at"] = at(observed)
    return message


async def test_the_page_loads_with_no_console_error_and_shows_every_panel(
    board: Dashboard, page: Page
) -> None:
    api = Api(board.client, f"t{secrets.token_hex(4)}")
    eui, entity_id = dev_eui(), flood_id()
    await provision(api, gauge(eui, entity_id))
    await board.publish(
        f"wl-{eui[:6]}", uplink(eui, f"wl-{eui[:6]}", -1.5, f_cnt=1, observed=board.clock.moment)
    )
    await entity_when(api, entity_id)

    await page.goto(board.url(api.tenant))

    await expect(page.locator(f'#markers circle[data-id="{entity_id}"]')).to_have_count(1, timeout=WITHIN_MS)
    await expect(page.locator("#broker-state")).to_have_text("ready", timeout=WITHIN_MS)
    assert await page.locator("#tenant").input_value() == api.tenant
    for panel in ("#map", "#gauges", "#devices", "#letters", "#subscriptions", "#broker"):
        assert await page.locator(panel).count() == 1, panel
    # A few refreshes later there is still no error.
    await expect(page.locator("body")).to_have_attribute("data-refreshed", "3", timeout=WITHIN_MS)
    assert console_errors(page) == []


async def test_a_gauge_pushed_past_its_danger_level_over_mqtt_turns_red_on_the_map(
    board: Dashboard, page: Page
) -> None:
    api = Api(board.client, f"t{secrets.token_hex(4)}")
    eui, entity_id = dev_eui(), flood_id()
    device_id = f"wl-{eui[:6]}"
    # bank 2.0 m; alert 1.4 m, danger 2.0 m above the bed
    await provision(api, gauge(eui, entity_id))
    now = board.clock.moment
    await board.publish(device_id, uplink(eui, device_id, -1.5, f_cnt=1, observed=now))  # 0.5 m
    await entity_when(api, entity_id)
    await page.goto(board.url(api.tenant))
    marker = page.locator(f'#markers circle[data-id="{entity_id}"]')
    await expect(marker).to_have_attribute("data-status", "normal", timeout=WITHIN_MS)
    await expect(marker).to_have_class("marker gauge status-normal")

    # The gauge's flood-mode flag: it passed its observation-start level (still below alert).
    await board.publish(device_id, uplink(eui, device_id, -1.0, f_cnt=2, observed=now, flood=1))  # 1.0 m
    await expect(marker).to_have_attribute("data-status", "observation", timeout=WITHIN_MS)
    await board.publish(device_id, uplink(eui, device_id, -0.4, f_cnt=3, observed=now, flood=1))  # 1.6 m
    await expect(marker).to_have_attribute("data-status", "alert", timeout=WITHIN_MS)
    await board.publish(device_id, uplink(eui, device_id, 0.25, f_cnt=4, observed=now, flood=1))  # 2.25 m

    await expect(marker).to_have_attribute("data-status", "danger", timeout=WITHIN_MS)
    await expect(marker).to_have_class("marker gauge status-danger")
    fill = await marker.evaluate("node => getComputedStyle(node).fill")
    assert fill == "rgb(198, 40, 40)"  # red: --danger
    row = page.locator(f'#gauges tr[data-id="{entity_id}"]')
    await expect(row.locator("td").nth(3)).to_have_text("danger")
    assert console_errors(page) == []


async def test_a_dead_letter_appears_and_replays_once_its_device_is_provisioned(
    board: Dashboard, page: Page
) -> None:
    api = Api(board.client, f"t{secrets.token_hex(4)}")
    known_eui, known_id = dev_eui(), flood_id()
    await provision(api, gauge(known_eui, known_id))
    known = f"wl-{known_eui[:6]}"
    await board.publish(known, uplink(known_eui, known, -1.5, f_cnt=1, observed=board.clock.moment))
    await entity_when(api, known_id)  # the tenant exists
    apikey = f"late{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Sensor:{secrets.token_hex(4)}"
    headers = {"NGSILD-Tenant": api.tenant}
    refused = await api.request("POST", f"/iot/json?k={apikey}&i=late1", {"v": 5}, headers=headers)
    assert refused.status == 400

    await page.goto(board.url(api.tenant))
    row = page.locator("#letters tr").filter(has_text="unknown device")
    await expect(row).to_have_count(1, timeout=WITHIN_MS)
    await row.locator("button.show-raw").click()
    await expect(page.locator("#raw")).to_contain_text('{"v":5}', timeout=WITHIN_MS)
    # Replayed before the cause is fixed: refused again, and still offered for replay.
    await row.locator("button.replay").click()
    await expect(row).to_contain_text("last replay: unknown device", timeout=WITHIN_MS)
    assert (await api.get(entity_id)).status == 404

    await provision(
        api,
        {"device_id": "late1", "entity_name": entity_id, "entity_type": "Sensor"},
        groups=[{"apikey": apikey, "entity_type": "Sensor", "resource": "/iot/json", "autoprovision": False}],
    )
    await row.locator("button.replay").click()

    await expect(row).to_contain_text("replayed: accepted", timeout=WITHIN_MS)
    await expect(row.locator("button.replay")).to_have_count(0)
    entity = await entity_when(api, entity_id, within=5.0)
    assert entity["v"]["value"] == 5
    assert console_errors(page) == []


def device_row(page: Page, eui: str) -> Any:
    return page.locator("#devices tr").filter(has_text=f"wl-{eui[:6]}")


async def test_a_silent_device_is_flagged_and_listed_first(board: Dashboard, page: Page) -> None:
    api = Api(board.client, f"t{secrets.token_hex(4)}")
    now = board.clock.moment
    # Default interval 600 s, silent after 3 of them (30 min): one gauge reported 1 min ago, one 2 h ago.
    fresh, stale = dev_eui(), dev_eui()
    await provision(api, gauge(fresh, flood_id()), gauge(stale, flood_id()))
    for eui, observed in ((stale, now - timedelta(hours=2)), (fresh, now - timedelta(minutes=1))):
        device_id = f"wl-{eui[:6]}"
        await board.publish(device_id, uplink(eui, device_id, -1.5, f_cnt=1, observed=observed))

    async def both_stored() -> bool:
        response = await api.request("GET", "/ngsi-ld/v1/entities?type=Device", headers=link(SDM_DEVICE))
        return response.status == 200 and len(await response.json()) == 2

    await eventually(both_stored, within=10.0, what="both Device entities")

    await page.goto(board.url(api.tenant))
    await expect(device_row(page, stale)).to_have_class("silent", timeout=WITHIN_MS)
    await expect(device_row(page, fresh)).not_to_have_class("silent")
    await expect(page.locator("#devices tr").first).to_contain_text(f"wl-{stale[:6]}")
    await expect(device_row(page, fresh)).to_contain_text("60 s ago")

    # 30 minutes on, by the broker's clock, the fresh one is silent too.
    board.clock.moment = now + timedelta(minutes=30)
    await expect(device_row(page, fresh)).to_have_class("silent", timeout=WITHIN_MS)
    assert console_errors(page) == []


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[Secured]:
    async for served in serve_secured(settings):
        yield served


async def test_with_authentication_on_the_page_asks_for_a_key_once_and_keeps_it_for_the_tab(
    secured: Secured, page: Page
) -> None:
    url = str(secured.client.make_url("/dashboard"))
    await page.goto(url)
    await expect(page.locator("#login")).to_be_visible(timeout=WITHIN_MS)
    await expect(page.locator("#board")).to_be_hidden()
    before = list(console_errors(page))
    assert before, "the unanswered config request is logged"
    assert all("401" in error for error in before), before

    # A reader's key may not see the dashboard: asked again, with the reason.
    await page.fill("#api-key", secured.keys[Role.READER])
    await page.click("#login button")
    await expect(page.locator("#login-error")).to_have_text(
        "this key may not see the dashboard", timeout=WITHIN_MS
    )
    await page.fill("#api-key", secured.keys[Role.ADMIN])
    await page.click("#login button")

    await expect(page.locator("#board")).to_be_visible(timeout=WITHIN_MS)
    await expect(page.locator("#broker-state")).to_have_text("ready", timeout=WITHIN_MS)
    # A tenant's admin sees that tenant only.
    assert await page.locator("#tenant option").all_inner_texts() == [secured.tenant]
    assert await page.evaluate("sessionStorage.getItem('ngsiDashboardKey')") == secured.keys[Role.ADMIN]
    seen = len(console_errors(page))
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-refreshed", "2", timeout=WITHIN_MS)
    await expect(page.locator("#login")).to_be_hidden()
    # After the admin's key, only the reader's refusal (a 403) was logged.
    assert all("403" in error for error in console_errors(page)[len(before) : seen]), console_errors(page)
    assert console_errors(page)[seen:] == []


async def test_a_snowplow_is_drawn_at_its_last_position_with_the_last_hours_track(
    board: Dashboard, page: Page
) -> None:
    api = Api(board.client, f"t{secrets.token_hex(4)}")
    plow = f"urn:ngsi-ld:Vehicle:plow-{secrets.token_hex(4)}"
    now = board.clock.moment
    route = [(139.93, 37.49), (139.94, 37.495), (139.95, 37.50)]
    # Two hours ago it was far away: not part of the last hour's track.
    positions = [((139.5, 37.0), now - timedelta(hours=2))] + [
        (where, now - timedelta(minutes=30 - 10 * n)) for n, where in enumerate(route)
    ]

    def location(where: tuple[float, float], moment: datetime) -> dict[str, Any]:
        return {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": list(where)},
            "observedAt": at(moment),
        }

    vehicle = {
        "id": plow,
        "type": "Vehicle",
        "vehicleType": "specialUsage",
        "location": location(*positions[0]),
    }
    created = await api.request("POST", "/ngsi-ld/v1/entities", vehicle, headers=link(SDM_TRANSPORTATION))
    assert created.status == 201, await created.text()
    for where, moment in positions[1:]:
        patched = await api.request(
            "PATCH",
            f"/ngsi-ld/v1/entities/{plow}/attrs",
            {"location": location(where, moment)},
            headers=link(SDM_TRANSPORTATION),
        )
        assert patched.status == 204, await patched.text()

    await page.goto(board.url(api.tenant))

    marker = page.locator(f'#markers rect.plow[data-id="{plow}"]')
    track = page.locator(f'#tracks polyline[data-id="{plow}"]')
    await expect(marker).to_have_count(1, timeout=WITHIN_MS)
    await expect(track).to_have_count(1, timeout=WITHIN_MS)
    points = [tuple(map(float, p.split(","))) for p in (await track.get_attribute("points") or "").split()]
    assert len(points) == 3  # the last hour's three positions, oldest first, west to east
    assert points[0][0] < points[1][0] < points[2][0]
    x, y = float(await marker.get_attribute("x") or 0) + 6, float(await marker.get_attribute("y") or 0) + 6
    assert (x, y) == pytest.approx(points[-1], abs=0.01)  # the marker is at the last position
    assert console_errors(page) == []


# A 1x1 PNG: what the test's tile server answers for every tile.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@asynccontextmanager
async def tile_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A tile server on loopback: its URL template and the tiles asked for."""
    asked: list[str] = []

    async def tile(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(body=PIXEL, content_type="image/png")

    app = web.Application()
    app.router.add_get("/tiles/{z}/{x}/{y}.png", tile)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/tiles/")) + "{z}/{x}/{y}.png", asked


@asynccontextmanager
async def plain_board(settings: Settings, tiles: str) -> AsyncIterator[TestClient[Any, Any]]:
    """An app without device ingest (nothing comes over MQTT here) showing ``tiles`` under the map."""
    app = create_app(settings.replace(mqtt_ingest=False, dashboard_tiles=tiles, dashboard_refresh=REFRESH))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_tiles_from_the_configured_server_lie_under_the_map_and_an_unreachable_one_leaves_it_plain(
    settings: Settings, page: Page
) -> None:
    tenant = f"t{secrets.token_hex(4)}"
    gauge_id = flood_id()
    body = {
        "id": gauge_id,
        "type": "FloodMonitoring",
        "currentLevel": {"type": "Property", "value": 0.5},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.0631, 34.3335]}},
    }
    async with tile_server() as (template, asked), plain_board(settings, template) as client:
        api = Api(client, tenant)
        created = await api.request("POST", "/ngsi-ld/v1/entities", body, headers=link(SDM_ENVIRONMENT))
        assert created.status == 201, await created.text()
        await page.goto(str(client.make_url(f"/dashboard?tenant={tenant}")))
        await expect(page.locator(f'#markers circle[data-id="{gauge_id}"]')).to_have_count(
            1, timeout=WITHIN_MS
        )
        tiles = page.locator("#tiles image")
        await expect(tiles.first).to_be_attached(timeout=WITHIN_MS)
        hrefs = [await tile.get_attribute("href") or "" for tile in await tiles.all()]
        assert all(href.startswith(template.split("{z}")[0]) for href in hrefs), hrefs
        await eventually(lambda: len(asked) >= len(hrefs), within=10.0, what="the tiles fetched")
        assert console_errors(page) == []

    unreachable = f"http://127.0.0.1:{free_port()}/tiles/{{z}}/{{x}}/{{y}}.png"
    async with plain_board(settings, unreachable) as client:
        await page.goto(str(client.make_url(f"/dashboard?tenant={tenant}")))
        await expect(page.locator(f'#markers circle[data-id="{gauge_id}"]')).to_have_count(
            1, timeout=WITHIN_MS
        )
        await expect(page.locator("body")).to_have_attribute("data-refreshed", "2", timeout=WITHIN_MS)
        # Every tile that failed is taken away: the plain background shows, the markers stay.
        await expect(page.locator("#tiles image")).to_have_count(0, timeout=WITHIN_MS)
        await expect(page.locator("#map .background")).to_be_visible()
        assert all("ERR_CONNECTION_REFUSED" in error for error in console_errors(page)), console_errors(page)
