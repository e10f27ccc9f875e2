"""The changes adapter mode's target refused, for a tenant's admins (issue 14 item 5).

    GET /admin/forwarding/deadletters?limit=&offset=   the request's tenant's refused changes,
                                                      oldest first: entity, operation, the data
                                                      sent, the target's status and reason

This broker's operator API, not part of NGSI-LD (the dead letters of a forwarding are an
implementation's business; clause 4.3.6 leaves how changes reach other systems open).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.api.keys import POOL, SETTINGS
from broker.edge import json_reply, paging, tenant_of
from broker.model.entity import format_time
from broker.store import forwarding
from broker.store.forwarding import DeadLetter

routes = web.RouteTableDef()
DEAD_LETTERS = "/admin/forwarding/deadletters"


def shown(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "entityId": letter.entity_id,
        "operation": letter.op,
        "data": letter.data,
        "status": letter.status,
        "reason": letter.reason,
        "queuedAt": format_time(letter.queued_at),
        "failedAt": format_time(letter.failed_at),
    }


@routes.get(DEAD_LETTERS)
async def list_dead_letters(request: web.Request) -> web.Response:
    """List the tenant's changes the forwarding target refused (limit, offset), oldest first."""
    page = paging(request, request.app[SETTINGS].max_page)
    letters = await forwarding.dead_letters(
        request.app[POOL], tenant_of(request), limit=page.limit, offset=page.offset
    )
    return json_reply([shown(letter) for letter in letters])
