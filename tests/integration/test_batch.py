"""Batch entity operations: POST /ngsi-ld/v1/entityOperations/{create,upsert,update,delete,merge}.

Clauses 5.6.7-5.6.10 and 5.6.20 (HTTP 6.14-6.17, 6.31); BatchOperationResult is clause 5.2.16.
"""

from __future__ import annotations

import asyncio

from tests.conftest import Api, new_id, problem
from tests.integration.helpers import (
    CORE_UNVERSIONED,
    assert_absent,
    batch,
    batch_errors,
    body_of,
    context_server,
    ensure_tenant,
    thing,
    value_of,
)

# --- create -----------------------------------------------------------------------------------------


async def test_batch_create_answers_201_with_the_ids_and_stores_every_entity(api: Api) -> None:
    ids = [new_id() for _ in range(3)]
    response = await batch(api, "create", [thing(i, level=n) for n, i in enumerate(ids)])
    assert response.status == 201, await response.text()
    assert sorted(await body_of(response)) == sorted(ids)
    for n, entity_id in enumerate(ids):
        stored = await api.get_json(entity_id)
        assert stored["type"] == "Thing"
        assert value_of(stored, "level") == n


async def test_batch_create_accepts_the_path_with_a_trailing_slash(api: Api) -> None:
    entity_id = new_id()
    response = await batch(api, "create/", [thing(entity_id, level=1)])
    assert response.status == 201, await response.text()
    assert await body_of(response) == [entity_id]
    assert value_of(await api.get_json(entity_id), "level") == 1


async def test_batch_create_with_an_existing_id_answers_207_and_keeps_the_existing_entity(api: Api) -> None:
    existing, fresh = new_id(), new_id()
    assert (await api.create(thing(existing, level=1))).status == 201
    response = await batch(api, "create", [thing(existing, level=99), thing(fresh, level=2)])
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [fresh]
    errors = batch_errors(body)
    assert set(errors) == {existing}
    assert errors[existing]["type"].endswith("/AlreadyExists")
    assert errors[existing]["status"] == 409
    assert value_of(await api.get_json(existing), "level") == 1
    assert value_of(await api.get_json(fresh), "level") == 2


async def test_batch_create_reports_each_invalid_entity_and_stores_the_valid_ones(api: Api) -> None:
    good_a, good_b, null_coords, no_type = new_id(), new_id(), new_id(), new_id()
    bad_id = "not a uri"
    entities = [
        thing(good_a, level=1),
        thing(bad_id, level=2),
        thing(
            null_coords,
            location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [None, None]}},
        ),
        {"id": no_type, "level": {"type": "Property", "value": 3}},
        thing(good_b, level=4),
    ]
    response = await batch(api, "create", entities)
    body = await body_of(response)
    assert response.status == 207, body
    assert sorted(body["success"]) == sorted([good_a, good_b])
    errors = batch_errors(body)
    assert set(errors) == {bad_id, null_coords, no_type}
    for error in errors.values():
        assert error["type"].endswith("/BadRequestData"), error
        assert error["status"] == 400
    assert value_of(await api.get_json(good_a), "level") == 1
    assert value_of(await api.get_json(good_b), "level") == 4
    await assert_absent(api, null_coords)
    await assert_absent(api, no_type)


async def test_batch_create_refuses_an_ngsi_ld_null_value_in_one_entity(api: Api) -> None:
    good, bad = new_id(), new_id()
    response = await batch(api, "create", [thing(good, level=1), thing(bad, level="urn:ngsi-ld:null")])
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [good]
    assert batch_errors(body)[bad]["type"].endswith("/BadRequestData")
    await assert_absent(api, bad)


# --- upsert -----------------------------------------------------------------------------------------


async def test_batch_upsert_answers_201_with_the_ids_when_every_entity_is_new(api: Api) -> None:
    ids = [new_id(), new_id()]
    response = await batch(api, "upsert", [thing(i, level=7) for i in ids])
    assert response.status == 201, await response.text()
    assert sorted(await body_of(response)) == sorted(ids)
    for entity_id in ids:
        assert value_of(await api.get_json(entity_id), "level") == 7


async def test_batch_upsert_answers_204_when_every_entity_existed(api: Api) -> None:
    ids = [new_id(), new_id()]
    assert (await batch(api, "create", [thing(i, level=1) for i in ids])).status == 201
    response = await batch(api, "upsert", [thing(i, level=2) for i in ids])
    assert response.status == 204, await response.text()
    assert await response.read() == b""
    for entity_id in ids:
        assert value_of(await api.get_json(entity_id), "level") == 2


async def test_batch_upsert_with_new_and_existing_entities_answers_201_with_only_the_created_ids(
    api: Api,
) -> None:
    existing, created = new_id(), new_id()
    assert (await api.create(thing(existing, level=1))).status == 201
    response = await batch(api, "upsert", [thing(existing, level=2), thing(created, level=3)])
    assert response.status == 201, await response.text()
    assert await body_of(response) == [created]
    assert value_of(await api.get_json(existing), "level") == 2
    assert value_of(await api.get_json(created), "level") == 3


async def test_batch_upsert_replace_drops_the_attributes_not_given(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1, colour="red"))).status == 201
    response = await batch(api, "upsert", [thing(entity_id, level=2)], params={"options": "replace"})
    assert response.status == 204, await response.text()
    stored = await api.get_json(entity_id)
    assert value_of(stored, "level") == 2
    assert "colour" not in stored


async def test_batch_upsert_without_options_replaces_like_options_replace(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1, colour="red"))).status == 201
    response = await batch(api, "upsert", [thing(entity_id, level=2)])
    assert response.status == 204, await response.text()
    stored = await api.get_json(entity_id)
    assert value_of(stored, "level") == 2
    assert "colour" not in stored


async def test_batch_upsert_update_keeps_the_attributes_not_given(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1, colour="red"))).status == 201
    response = await batch(api, "upsert", [thing(entity_id, level=2)], params={"options": "update"})
    assert response.status == 204, await response.text()
    stored = await api.get_json(entity_id)
    assert value_of(stored, "level") == 2
    assert value_of(stored, "colour") == "red"


async def test_batch_upsert_as_an_iot_agent_sends_it_answers_201_then_204_and_never_207(api: Api) -> None:
    """IoT Agent (iotagent-node-lib) style: trailing slash, options=update, ld+json, @context per element."""
    devices = [new_id("Device"), new_id("Device")]
    context = [{"temperature": "https://example.org/iot#temperature"}, CORE_UNVERSIONED]

    def measures(temperature: float) -> list[dict[str, object]]:
        return [
            {
                "id": device,
                "type": "Device",
                "temperature": {
                    "type": "Property",
                    "value": temperature,
                    "unitCode": "CEL",
                    "observedAt": "2025-09-01T01:00:00Z",
                },
                "@context": context,
            }
            for device in devices
        ]

    path = "upsert/"
    headers = {"Accept": "application/json"}
    first = await batch(
        api,
        path,
        measures(21.5),
        params={"options": "update"},
        content_type="application/ld+json",
        headers=headers,
    )
    assert first.status == 201, await first.text()
    assert sorted(await body_of(first)) == sorted(devices)
    second = await batch(
        api,
        path,
        measures(22.5),
        params={"options": "update"},
        content_type="application/ld+json",
        headers=headers,
    )
    assert second.status == 204, await second.text()
    for device in devices:
        stored = await api.get_json(device)
        assert stored["https://example.org/iot#temperature"]["value"] == 22.5
        assert stored["https://example.org/iot#temperature"]["unitCode"] == "CEL"


async def test_batch_upsert_with_an_inline_core_context_url_per_element_answers_201(api: Api) -> None:
    ids = [new_id(), new_id()]
    entities = [{**thing(i, level=5), "@context": CORE_UNVERSIONED} for i in ids]
    response = await batch(
        api, "upsert/", entities, params={"options": "update"}, content_type="application/ld+json"
    )
    assert response.status == 201, await response.text()
    assert sorted(await body_of(response)) == sorted(ids)
    for entity_id in ids:
        assert value_of(await api.get_json(entity_id), "level") == 5


async def test_batch_upsert_applies_the_same_id_in_order_create_then_update(api: Api) -> None:
    entity_id = new_id()
    entities = [thing(entity_id, level=1), thing(entity_id, colour="blue")]
    response = await batch(api, "upsert", entities, params={"options": "update"})
    assert response.status == 201, await response.text()
    assert await body_of(response) == [entity_id]
    stored = await api.get_json(entity_id)
    assert value_of(stored, "level") == 1
    assert value_of(stored, "colour") == "blue"


async def test_batch_upsert_of_the_same_id_twice_keeps_the_last_value(api: Api) -> None:
    entity_id = new_id()
    entities = [thing(entity_id, level=1), thing(entity_id, level=2)]
    response = await batch(api, "upsert", entities)
    assert response.status == 201, await response.text()
    assert await body_of(response) == [entity_id]
    assert value_of(await api.get_json(entity_id), "level") == 2


async def test_batch_upsert_of_an_existing_id_twice_keeps_the_last_value_and_answers_204(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=0))).status == 201
    entities = [thing(entity_id, level=1), thing(entity_id, level=2)]
    response = await batch(api, "upsert", entities, params={"options": "update"})
    assert response.status == 204, await response.text()
    assert value_of(await api.get_json(entity_id), "level") == 2


async def test_batch_upsert_with_one_invalid_entity_answers_207_and_stores_the_rest(api: Api) -> None:
    good, bad = new_id(), new_id()
    entities = [
        thing(good, level=1),
        thing(bad, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 10]}}),
    ]
    response = await batch(api, "upsert", entities)
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [good]
    assert batch_errors(body)[bad]["type"].endswith("/BadRequestData")
    assert value_of(await api.get_json(good), "level") == 1
    await assert_absent(api, bad)


# --- update -----------------------------------------------------------------------------------------


async def test_batch_update_appends_and_overwrites_attributes_and_answers_204(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1, colour="red"))).status == 201
    response = await batch(api, "update", [thing(entity_id, level=2, size=10)])
    assert response.status == 204, await response.text()
    stored = await api.get_json(entity_id)
    assert value_of(stored, "level") == 2
    assert value_of(stored, "size") == 10
    assert value_of(stored, "colour") == "red"


async def test_batch_update_with_no_overwrite_keeps_existing_attributes_and_adds_new_ones(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await batch(api, "update", [thing(entity_id, size=10)], params={"options": "noOverwrite"})
    assert response.status == 204, await response.text()
    stored = await api.get_json(entity_id)
    assert value_of(stored, "level") == 1
    assert value_of(stored, "size") == 10


async def test_batch_update_of_a_nonexistent_entity_answers_207_with_resource_not_found(api: Api) -> None:
    existing, missing = new_id(), new_id()
    assert (await api.create(thing(existing, level=1))).status == 201
    response = await batch(api, "update", [thing(existing, level=2), thing(missing, level=3)])
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [existing]
    errors = batch_errors(body)
    assert set(errors) == {missing}
    assert errors[missing]["type"].endswith("/ResourceNotFound")
    assert errors[missing]["status"] == 404
    assert value_of(await api.get_json(existing), "level") == 2
    await assert_absent(api, missing)


# --- merge ------------------------------------------------------------------------------------------


async def test_batch_merge_deletes_an_attribute_given_as_ngsi_ld_null_and_merges_the_rest(api: Api) -> None:
    first, second = new_id(), new_id()
    created = await batch(
        api,
        "create",
        [
            thing(first, level=1, colour="red", size={"type": "Property", "value": 3, "unitCode": "MTR"}),
            thing(second, level=1, colour="green"),
        ],
    )
    assert created.status == 201, await created.text()
    response = await batch(
        api,
        "merge",
        [
            {
                "id": first,
                "type": "Thing",
                "colour": {"type": "Property", "value": "urn:ngsi-ld:null"},
                "size": 4,
            },
            {"id": second, "type": "Thing", "level": {"type": "Property", "value": 2}},
        ],
    )
    assert response.status == 204, await response.text()
    stored_first = await api.get_json(first)
    assert "colour" not in stored_first
    assert value_of(stored_first, "level") == 1
    assert stored_first["size"] == {"type": "Property", "value": 4, "unitCode": "MTR"}
    stored_second = await api.get_json(second)
    assert value_of(stored_second, "level") == 2
    assert value_of(stored_second, "colour") == "green"


async def test_batch_merge_of_a_nonexistent_entity_answers_207_and_does_not_create_it(api: Api) -> None:
    existing, missing = new_id(), new_id()
    assert (await api.create(thing(existing, level=1))).status == 201
    response = await batch(api, "merge", [thing(existing, level=2), thing(missing, level=3)])
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [existing]
    assert batch_errors(body)[missing]["type"].endswith("/ResourceNotFound")
    assert value_of(await api.get_json(existing), "level") == 2
    await assert_absent(api, missing)


# --- delete -----------------------------------------------------------------------------------------


async def test_batch_delete_of_existing_entities_answers_204_and_removes_them(api: Api) -> None:
    keep = await ensure_tenant(api)
    ids = [new_id(), new_id()]
    assert (await batch(api, "create", [thing(i, level=1) for i in ids])).status == 201
    response = await batch(api, "delete", ids)
    assert response.status == 204, await response.text()
    for entity_id in ids:
        await assert_absent(api, entity_id)
    assert (await api.get(keep)).status == 200


async def test_batch_delete_with_one_unknown_id_answers_207_and_deletes_the_others(api: Api) -> None:
    ids = [new_id(), new_id()]
    unknown = new_id()
    assert (await batch(api, "create", [thing(i, level=1) for i in ids])).status == 201
    response = await batch(api, "delete", [ids[0], unknown, ids[1]])
    body = await body_of(response)
    assert response.status == 207, body
    assert sorted(body["success"]) == sorted(ids)
    errors = batch_errors(body)
    assert set(errors) == {unknown}
    assert errors[unknown]["type"].endswith("/ResourceNotFound")
    for entity_id in ids:
        await assert_absent(api, entity_id)


# --- request-level errors ---------------------------------------------------------------------------


async def test_batch_operations_answer_400_when_the_body_is_not_an_array(api: Api) -> None:
    entity_id = new_id()
    await ensure_tenant(api)
    for operation in ("create", "upsert", "update", "merge", "delete"):
        body = entity_id if operation == "delete" else thing(entity_id, level=1)
        response = await batch(api, operation, body)
        error = await body_of(response)
        assert response.status == 400, (operation, error)
        assert error["type"] in (
            "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
        ), (operation, error)
    await assert_absent(api, entity_id)


async def test_batch_create_over_the_batch_limit_answers_400_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    ids = [new_id() for _ in range(201)]
    response = await batch(api, "create", [thing(i, level=1) for i in ids])
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, ids[0])
    await assert_absent(api, ids[-1])


async def test_batch_upsert_over_the_batch_limit_answers_400_and_stores_nothing(api: Api) -> None:
    await ensure_tenant(api)
    ids = [new_id() for _ in range(201)]
    response = await batch(api, "upsert", [thing(i, level=1) for i in ids])
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, ids[0])


async def test_batch_delete_over_the_batch_limit_answers_400_and_deletes_nothing(api: Api) -> None:
    ids = [new_id() for _ in range(200)]
    assert (await batch(api, "create", [thing(i, level=1) for i in ids])).status == 201
    response = await batch(api, "delete", [*ids, new_id()])
    await problem(response, 400, "BadRequestData")
    assert (await api.get(ids[0])).status == 200
    assert (await api.get(ids[-1])).status == 200


async def test_batch_of_exactly_the_limit_is_accepted(api: Api) -> None:
    ids = [new_id() for _ in range(200)]
    response = await batch(api, "create", [thing(i, level=1) for i in ids])
    assert response.status == 201, await response.text()
    assert len(await body_of(response)) == 200
    assert (await api.get(ids[-1])).status == 200


async def test_batch_ld_json_with_one_element_missing_its_context_answers_207_and_stores_the_other(
    api: Api,
) -> None:
    """Clauses 6.3.5 and 5.2.16: the element without @context is reported, the other written (item 5)."""
    await ensure_tenant(api)
    with_context, without_context = new_id(), new_id()
    entities = [
        {**thing(with_context, level=1), "@context": CORE_UNVERSIONED},
        thing(without_context, level=2),
    ]
    response = await batch(api, "upsert", entities, content_type="application/ld+json")
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [with_context]
    assert batch_errors(body)[without_context]["type"].endswith("/BadRequestData")
    assert value_of(await api.get_json(with_context), "level") == 1
    await assert_absent(api, without_context)


async def test_batch_json_with_an_element_carrying_a_context_answers_207_and_stores_the_other(
    api: Api,
) -> None:
    """Clauses 6.3.5 and 5.2.16: an @context in an application/json element fails that element only."""
    await ensure_tenant(api)
    plain, with_context = new_id(), new_id()
    entities = [thing(plain, level=1), {**thing(with_context, level=2), "@context": CORE_UNVERSIONED}]
    response = await batch(api, "create", entities, content_type="application/json")
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [plain]
    assert batch_errors(body)[with_context]["type"].endswith("/BadRequestData")
    await assert_absent(api, with_context)


async def test_batch_with_one_element_whose_context_cannot_be_fetched_answers_207(api: Api) -> None:
    """Clauses 5.5.2 (LdContextNotAvailable) and 5.2.16: one element's unreachable @context fails it alone."""
    await ensure_tenant(api)
    good, unreachable = new_id(), new_id()
    async with context_server({}) as server:
        entities = [
            {**thing(good, level=1), "@context": CORE_UNVERSIONED},
            {**thing(unreachable, level=2), "@context": server.url("/missing.jsonld")},
        ]
        response = await batch(api, "create", entities, content_type="application/ld+json")
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [good]
    assert batch_errors(body)[unreachable]["type"].endswith("/LdContextNotAvailable")
    await assert_absent(api, unreachable)


async def test_batch_operations_answer_400_for_an_empty_array(api: Api) -> None:
    """Clauses 5.6.7-5.6.10, 5.6.20: a batch of no entities is BadRequestData."""
    for operation in ("create", "upsert", "update", "merge", "delete"):
        await problem(await batch(api, operation, []), 400, "BadRequestData")


async def test_batch_update_with_no_overwrite_reports_the_attributes_not_updated(api: Api) -> None:
    """Clause 5.6.9 with noOverwrite: the entity whose attribute was kept is reported with notUpdated."""
    kept, fresh = new_id(), new_id()
    assert (await api.create(thing(kept, level=1))).status == 201
    assert (await api.create(thing(fresh, level=1))).status == 201
    response = await batch(
        api,
        "update",
        [thing(kept, level=2, size=10), thing(fresh, size=3)],
        params={"options": "noOverwrite"},
    )
    body = await body_of(response)
    assert response.status == 207, body
    assert body["success"] == [fresh]
    error = batch_errors(body)[kept]
    assert error["notUpdated"] == [
        {"attributeName": "level", "reason": "attribute exists and noOverwrite was requested"}
    ]
    assert error["updated"] == ["size"]
    stored = await api.get_json(kept)
    assert value_of(stored, "level") == 1
    assert value_of(stored, "size") == 10


async def test_batch_delete_accepts_an_array_of_ids_as_application_ld_json(api: Api) -> None:
    """Clause 6.17.3.1: the ids of a batch delete carry no @context, in either media type (ngsildclient)."""
    ids = [new_id(), new_id()]
    assert (await batch(api, "create", [thing(i, level=1) for i in ids])).status == 201
    response = await batch(api, "delete", ids, content_type="application/ld+json")
    assert response.status == 204, await response.text()
    for entity_id in ids:
        await assert_absent(api, entity_id)


async def test_batch_delete_with_an_id_that_is_not_a_uri_answers_400_and_deletes_nothing(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await batch(api, "delete", [entity_id, "not a uri"])
    await problem(response, 400, "BadRequestData")
    assert (await api.get(entity_id)).status == 200


async def test_batch_upsert_with_both_update_and_replace_options_answers_400_and_stores_nothing(
    api: Api,
) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    response = await batch(api, "upsert", [thing(entity_id, level=1)], params={"options": "update,replace"})
    await problem(response, 400, "BadRequestData")
    await assert_absent(api, entity_id)


async def test_concurrent_upserts_of_one_new_id_all_succeed_and_create_it_once(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    names = [f"attr{n}" for n in range(6)]
    responses = await asyncio.gather(
        *(
            batch(api, "upsert", [{**thing(entity_id), name: 1}], params={"options": "update"})
            for name in names
        )
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [204] * (len(names) - 1), [(r.status, await r.text()) for r in responses]
    stored = await api.get_json(entity_id)
    assert all(value_of(stored, name) == 1 for name in names), stored


async def test_concurrent_batch_creates_of_one_id_create_it_once_and_report_already_exists(api: Api) -> None:
    await ensure_tenant(api)
    entity_id = new_id()
    responses = await asyncio.gather(*(batch(api, "create", [thing(entity_id, level=n)]) for n in range(5)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201, 207, 207, 207, 207], [(r.status, await r.text()) for r in responses]
    for response in responses:
        if response.status == 207:
            errors = batch_errors(await body_of(response))
            assert errors[entity_id]["type"].endswith("/AlreadyExists")
    assert (await api.get(entity_id)).status == 200
