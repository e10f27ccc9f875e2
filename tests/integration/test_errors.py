"""Error reporting: ProblemDetails (clauses 5.5.2, 6.3.2), body checks, GeoJSON validation, 501 for unbuilt parts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse

from tests.conftest import Api, new_id, problem
from tests.integration.helpers import ERRORS, assert_absent, body_of, ensure_tenant, thing

ENTITIES = "/ngsi-ld/v1/entities"


async def assert_problem_details(response: ClientResponse, status: int) -> dict[str, Any]:
    """Every error: status, Content-Type application/json and type, title, status, detail members."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await body_of(response)
    assert isinstance(body, dict), body
    assert body["type"].startswith(ERRORS), body
    assert isinstance(body["title"], str), body
    assert body["title"], body
    assert body["status"] == status, body
    assert isinstance(body["detail"], str), body
    assert body["detail"], body
    return body


# --- request bodies ---------------------------------------------------------------------------------


async def test_malformed_json_answers_400_invalid_request(api: Api) -> None:
    await ensure_tenant(api)
    response = await api.request("POST", ENTITIES, raw=b'{"id": "urn:ngsi-ld:Thing:x", "type": ')
    await problem(response, 400, "InvalidRequest")
    await assert_problem_details(response, 400)


async def test_malformed_json_in_a_batch_answers_400_invalid_request(api: Api) -> None:
    response = await api.request("POST", "/ngsi-ld/v1/entityOperations/upsert", raw=b"[{,]")
    await problem(response, 400, "InvalidRequest")


async def test_content_type_text_plain_answers_415_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    response = await api.request("POST", ENTITIES, thing(entity_id, level=1), content_type="text/plain")
    await assert_problem_details(response, 415)
    await assert_absent(api, entity_id)


async def test_a_body_without_content_type_answers_415_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    response = await api.client.post(
        ENTITIES,
        data=orjson.dumps(thing(entity_id, level=1)),
        headers={"NGSILD-Tenant": api.tenant},
        skip_auto_headers=["Content-Type"],
    )
    await response.read()
    assert "Content-Type" not in response.request_info.headers
    await assert_problem_details(response, 415)
    await assert_absent(api, entity_id)


async def test_an_empty_body_answers_400(api: Api) -> None:
    response = await api.request("POST", ENTITIES, raw=b"")
    await assert_problem_details(response, 400)
    batch_response = await api.request("POST", "/ngsi-ld/v1/entityOperations/create", raw=b"")
    await assert_problem_details(batch_response, 400)


async def test_a_body_over_the_size_limit_answers_413_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    big = thing(entity_id, blob="x" * 270_000)
    assert len(orjson.dumps(big)) > 262_144
    response = await api.create(big)
    await assert_problem_details(response, 413)
    await assert_absent(api, entity_id)


async def test_a_batch_over_the_size_limit_answers_413_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    ids = [new_id() for _ in range(3)]
    response = await api.request(
        "POST", "/ngsi-ld/v1/entityOperations/upsert", [thing(i, blob="y" * 100_000) for i in ids]
    )
    await assert_problem_details(response, 413)
    for entity_id in ids:
        await assert_absent(api, entity_id)


async def test_a_body_just_under_the_size_limit_is_accepted(api: Api) -> None:
    entity_id = new_id()
    big = thing(entity_id, blob="x" * 250_000)
    assert len(orjson.dumps(big)) < 262_144
    response = await api.create(big)
    assert response.status == 201, await response.text()
    assert len((await api.get_json(entity_id))["blob"]["value"]) == 250_000


async def test_a_body_that_is_not_an_object_answers_400(api: Api) -> None:
    for body in ([thing(new_id(), level=1)], "urn:ngsi-ld:Thing:x", 42):
        response = await api.request("POST", ENTITIES, body)
        await assert_problem_details(response, 400)


# --- entity content ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["not a uri", "Thing1", "urn:ngsi-ld:Thing:has space", "", 42])
async def test_an_entity_id_that_is_not_a_uri_answers_400_bad_request_data(api: Api, bad_id: Any) -> None:
    await ensure_tenant(api)
    response = await api.create({"id": bad_id, "type": "Thing", "level": {"type": "Property", "value": 1}})
    await problem(response, 400, "BadRequestData")
    await assert_problem_details(response, 400)


async def test_an_entity_without_id_or_type_answers_400_bad_request_data(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    await problem(await api.create({"type": "Thing", "level": 1}), 400, "BadRequestData")
    await problem(await api.create({"id": entity_id, "level": 1}), 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_a_path_entity_id_that_is_not_a_uri_answers_400_bad_request_data(api: Api) -> None:
    await ensure_tenant(api)
    await problem(await api.get("not-a-uri"), 400, "BadRequestData")


INVALID_GEOMETRIES = {
    "null coordinates": {"type": "Point", "coordinates": [None, None]},
    "longitude 200": {"type": "Point", "coordinates": [200, 10]},
    "latitude 95": {"type": "Point", "coordinates": [10, 95]},
    "string coordinates": {"type": "Point", "coordinates": ["134.0", "34.3"]},
    "one number": {"type": "Point", "coordinates": [134.0]},
    "unclosed polygon": {
        "type": "Polygon",
        "coordinates": [[[134.0, 34.0], [134.1, 34.0], [134.1, 34.1], [134.0, 34.1]]],
    },
    "polygon of three positions": {
        "type": "Polygon",
        "coordinates": [[[134.0, 34.0], [134.1, 34.0], [134.0, 34.0]]],
    },
    "line of one position": {"type": "LineString", "coordinates": [[134.0, 34.0]]},
    "unknown geometry type": {"type": "Circle", "coordinates": [134.0, 34.0]},
}


@pytest.mark.parametrize("case", sorted(INVALID_GEOMETRIES))
async def test_an_invalid_geojson_geoproperty_answers_400_and_stores_nothing(api: Api, case: str) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    geometry = INVALID_GEOMETRIES[case]
    response = await api.create(thing(entity_id, location={"type": "GeoProperty", "value": geometry}))
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


@pytest.mark.parametrize("case", ["null coordinates", "longitude 200", "unclosed polygon"])
async def test_an_invalid_geojson_in_concise_form_answers_400_and_stores_nothing(api: Api, case: str) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    geometry = INVALID_GEOMETRIES[case]
    response = await api.create(thing(entity_id, location=geometry))
    await problem(response, 400, "BadRequestData")
    second = new_id()
    response = await api.create(thing(second, location={"value": geometry}))
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)
    await assert_absent(api, second)


async def test_an_invalid_geojson_in_an_update_answers_400_and_keeps_the_stored_location(api: Api) -> None:
    entity_id = new_id()
    point = {"type": "Point", "coordinates": [134.05, 34.34]}
    assert (
        await api.create(thing(entity_id, location={"type": "GeoProperty", "value": point}))
    ).status == 201
    bad = {"location": {"type": "GeoProperty", "value": INVALID_GEOMETRIES["null coordinates"]}}
    await problem(await api.request("PATCH", f"{ENTITIES}/{entity_id}", bad), 400, "BadRequestData")
    await problem(await api.request("POST", f"{ENTITIES}/{entity_id}/attrs", bad), 400, "BadRequestData")
    assert (await api.get_json(entity_id))["location"]["value"] == point


@pytest.mark.parametrize(
    "attribute",
    [
        {"type": "Property", "value": "urn:ngsi-ld:null"},
        {"type": "Relationship", "object": "urn:ngsi-ld:null"},
        {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}},
        "urn:ngsi-ld:null",
    ],
    ids=["property", "relationship", "language-property", "concise"],
)
async def test_ngsi_ld_null_in_a_create_answers_400_bad_request_data(api: Api, attribute: Any) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    response = await api.create(thing(entity_id, level=1, gone=attribute))
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_ngsi_ld_null_as_a_sub_attribute_in_a_create_answers_400(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    level = {"type": "Property", "value": 1, "accuracy": {"type": "Property", "value": "urn:ngsi-ld:null"}}
    response = await api.create(thing(entity_id, level=level))
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_ngsi_ld_null_in_a_replace_answers_400_and_keeps_the_entity(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await api.request("PUT", f"{ENTITIES}/{entity_id}", thing(entity_id, level="urn:ngsi-ld:null"))
    await problem(response, 400, "BadRequestData")
    assert (await api.get_json(entity_id))["level"]["value"] == 1


async def test_creating_an_existing_entity_answers_409_already_exists(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await api.create(thing(entity_id, level=2))
    await problem(response, 409, "AlreadyExists")
    await assert_problem_details(response, 409)
    assert (await api.get_json(entity_id))["level"]["value"] == 1


async def test_an_unknown_entity_answers_404_resource_not_found(api: Api) -> None:
    await ensure_tenant(api)
    response = await api.get(new_id())
    await problem(response, 404, "ResourceNotFound")
    await assert_problem_details(response, 404)


# --- resources that do not exist or are not built ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ngsi-ld/v1/snapshots"),
        ("POST", "/ngsi-ld/v1/snapshots/"),
    ],
)
async def test_resources_not_built_yet_answer_501_operation_not_supported(
    api: Api, method: str, path: str
) -> None:
    body = {"type": "Subscription"} if method == "POST" else None
    response = await api.request(method, path, body)
    await problem(response, 501, "OperationNotSupported")
    await assert_problem_details(response, 501)


@pytest.mark.parametrize("param", ["csf", "entityMap", "containedBy", "expandValues"])
async def test_querying_entities_with_a_parameter_not_built_yet_answers_501(api: Api, param: str) -> None:
    """A parameter V1.9.1 defines but this broker does not honour is 501, never silently ignored."""
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await api.request("GET", ENTITIES, params={"type": "Thing", param: "x"})
    await problem(response, 501, "OperationNotSupported")
    await assert_problem_details(response, 501)
    response = await api.request("GET", f"{ENTITIES}/{entity_id}", params={param: "x"})
    await problem(response, 501, "OperationNotSupported")
    if param in ("csf", "expandValues"):
        # entityMap and containedBy are no parameters of the temporal retrieval (6.19.3.1): 400 there.
        response = await api.request("GET", f"/ngsi-ld/v1/temporal/entities/{entity_id}", params={param: "x"})
        await problem(response, 501, "OperationNotSupported")


@pytest.mark.parametrize("path", ["/nothing-here", "/ngsi-ld/v2/entities", "/ngsi-ld/v1/unknownResource"])
async def test_a_path_that_is_no_ngsi_ld_resource_answers_404_problem_details(api: Api, path: str) -> None:
    response = await api.request("GET", path)
    await problem(response, 404, "ResourceNotFound")
    await assert_problem_details(response, 404)


async def test_a_method_not_allowed_answers_405_problem_details_with_an_allow_header(api: Api) -> None:
    response = await api.request("PUT", ENTITIES, thing(new_id(), level=1))
    await assert_problem_details(response, 405)
    # RFC 9110 15.5.6: a 405 response MUST carry Allow.
    assert "GET" in response.headers.get("Allow", ""), dict(response.headers)


async def test_every_error_is_problem_details_with_content_type_application_json(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    cases = [
        (await api.request("POST", ENTITIES, raw=b"{"), 400),
        (await api.request("POST", ENTITIES, thing(entity_id), content_type="text/plain"), 415),
        (await api.create(thing(entity_id, level=1)), 409),
        (await api.get(new_id()), 404),
        (await api.get(entity_id, headers={"Accept": "text/csv"}), 406),
        (await api.get(entity_id, params={"options": "bogus"}), 400),
        (await api.request("GET", "/ngsi-ld/v1/snapshots"), 501),
        (await api.request("GET", "/nowhere"), 404),
        (await api.request("GET", "/ngsi-ld/v1/jsonldContexts/none"), 404),
        (await api.request("POST", "/ngsi-ld/v1/entityOperations/delete", {"not": "array"}), 400),
    ]
    for response, status in cases:
        await assert_problem_details(response, status)
