"""Error types as the spec's table (clause 5.5.2) assigns them, and unknown URL parameters (issue 13 item 4).

InvalidRequest: the request is syntactically invalid or has wrong content (an unknown parameter or
options/format value, an array where an entity goes, an invalid @context to host). BadRequestData:
a well-formed request whose data does not meet the operation's requirements.
"""

from __future__ import annotations

import pytest

from tests.conftest import Api, new_id, problem
from tests.integration.helpers import CONTEXTS, assert_absent, batch, ensure_tenant, thing, value_of

ENTITIES = "/ngsi-ld/v1/entities"


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", ENTITIES, {"type": "Thing", "colour": "red"}),
        ("GET", ENTITIES, {"type": "Thing", "limt": "5"}),
        ("GET", ENTITIES + "/urn:ngsi-ld:Thing:x", {"attrss": "level"}),
        ("GET", "/ngsi-ld/v1/temporal/entities", {"type": "Thing", "timerell": "after"}),
        ("GET", CONTEXTS, {"detail": "true"}),
    ],
)
async def test_an_unknown_url_parameter_answers_400_invalid_request(
    api: Api, method: str, path: str, params: dict[str, str]
) -> None:
    """Clause 5.5.2: a parameter the operation does not define makes the request invalid."""
    await ensure_tenant(api)
    body = await problem(await api.request(method, path, params=params), 400, "InvalidRequest")
    assert set(params) - {"type"} <= {word.strip(",") for word in body["detail"].split()}


async def test_an_unknown_parameter_on_a_write_answers_400_and_changes_nothing(api: Api) -> None:
    """Clause 5.5.2 on Update Attributes (6.6.3.2) and Batch Create (6.14): nothing is written."""
    entity_id, fresh = new_id(), new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await api.request(
        "PATCH", f"{ENTITIES}/{entity_id}/attrs", {"level": 2}, params={"overwrite": "false"}
    )
    await problem(response, 400, "InvalidRequest")
    assert value_of(await api.get_json(entity_id), "level") == 1
    await problem(await batch(api, "create", [thing(fresh)], params={"dryRun": "1"}), 400, "InvalidRequest")
    await assert_absent(api, fresh)


async def test_the_parameters_an_operation_defines_are_accepted(api: Api) -> None:
    """Clause 6.4.3.2 and 6.5.3.1: the defined parameters pass the check."""
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    params = {"type": "Thing", "limit": "5", "offset": "0", "count": "true", "options": "keyValues"}
    response = await api.request("GET", ENTITIES, params=params)
    assert response.status == 200, await response.text()
    retrieved = await api.get_json(entity_id, params={"pick": "id,level", "format": "simplified"})
    assert retrieved == {"id": entity_id, "level": 1}


@pytest.mark.parametrize(
    "params", [{"options": "bogus"}, {"format": "tabular"}, {"options": "sysAttrs,wide"}]
)
async def test_an_unknown_options_or_format_value_answers_400_invalid_request(
    api: Api, params: dict[str, str]
) -> None:
    """Clauses 5.5.2 and 6.3.7: options and format take the values the spec defines."""
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    await problem(await api.get(entity_id, params=params), 400, "InvalidRequest")


async def test_an_array_where_an_entity_is_expected_answers_400_invalid_request(api: Api) -> None:
    """Clauses 5.5.2 and 6.4.3.1: Create Entity takes one entity object."""
    await ensure_tenant(api)
    entity_id = new_id()
    response = await api.request("POST", ENTITIES, [thing(entity_id, level=1)])
    await problem(response, 400, "InvalidRequest")
    await assert_absent(api, entity_id)


async def test_hosting_an_invalid_context_answers_400_invalid_request(api: Api) -> None:
    """Clauses 6.29.3.1 and 5.5.2: an @context whose term definitions are wrong is not hosted."""
    response = await api.request("POST", CONTEXTS, {"@context": {"level": 42}})
    await problem(response, 400, "InvalidRequest")


async def test_well_formed_but_wrong_data_stays_bad_request_data(api: Api) -> None:
    """Clause 5.5.2: an entity id that is not a URI is data the operation cannot take."""
    await problem(await api.create(thing("not a uri", level=1)), 400, "BadRequestData")
