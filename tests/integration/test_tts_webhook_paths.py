"""The Things Stack webhooks append a path per message type to the base URL (issue 13 item 15).

/adapters/tts/uplink is /adapters/tts; the other message types a webhook may enable (join accept,
location solved, service data, downlink events) are acknowledged with 200 and counted, not stored.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.integration.test_device_ingest import (
    SDM_ENVIRONMENT,
    dev_eui,
    entity_when,
    flood_id,
    gauge,
    provision,
    tts_message,
    uplink,
)
from tests.integration.test_mqtt_neighbours import letters_at

pytestmark = pytest.mark.asyncio


async def tts_events(api: Api) -> dict[str, int]:
    response = await api.request("GET", "/health")
    body: dict[str, Any] = await response.json()
    return body["devices"]["ttsEvents"]  # type: ignore[no-any-return]


async def test_an_uplink_posted_to_the_uplink_path_is_stored_as_on_the_base_url(api: Api) -> None:
    eui, entity_id = dev_eui(), flood_id()
    await provision(api, gauge(eui, entity_id))

    response = await api.request(
        "POST", "/adapters/tts/uplink", tts_message(eui, f"wl-{eui[:6]}", 0.1, f_cnt=1, flood=1)
    )

    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "accepted"
    entity = await entity_when(api, entity_id, context=SDM_ENVIRONMENT, within=0.5)
    assert entity["floodLevelStatus"]["value"] == "Danger"


@pytest.mark.parametrize("kind", ["join", "location", "service-data", "downlink-ack", "downlink-failed"])
async def test_other_message_types_are_acknowledged_and_counted_without_a_dead_letter(
    api: Api, kind: str
) -> None:
    before = (await tts_events(api)).get(kind, 0)
    body = uplink("tts_v3_uplink_waterlevel.json")["message"]
    body.pop("uplink_message")
    body[{"join": "join_accept", "location": "location_solved"}.get(kind, kind.replace("-", "_"))] = {}

    response = await api.request("POST", f"/adapters/tts/{kind}", body)

    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "ignored"
    assert (await tts_events(api))[kind] == before + 1
    assert await letters_at(f"/adapters/tts/{kind}") == []


async def test_a_path_that_names_no_message_type_is_not_found(api: Api) -> None:
    response = await api.request("POST", "/adapters/tts/no-such-type", {})
    assert response.status == 404
