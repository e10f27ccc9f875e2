"""Parsing IoT Agent provisioning JSON into typed groups and devices, resolving and rendering them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.device import Codec
from adapters.message import Family
from adapters.provisioning.fields import ld_type, parse_layout
from adapters.provisioning.model import (
    DEVICE_FIELDS,
    GROUP_FIELDS,
    autoprovisioned,
    check_service_path,
    device_json,
    group_json,
    parse_device,
    parse_group,
    resolve,
)
from adapters.provisioning.names import entity_uri, name_template
from broker.errors import BadRequestData


@pytest.mark.parametrize(
    ("given_type", "expected"),
    [
        ("Number", "Property"),
        ("Text", "Property"),
        ("commandStatus", "Property"),
        ("geo:point", "GeoProperty"),
        ("geo:json", "GeoProperty"),
        ("Point", "GeoProperty"),
        ("GeoProperty", "GeoProperty"),
        ("Relationship", "Relationship"),
        ("LanguageProperty", "LanguageProperty"),
    ],
)
def test_iot_agent_attribute_types_become_ngsi_ld_types(given_type: str, expected: str) -> None:
    assert ld_type(given_type) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Gauge:g1", "urn:ngsi-ld:Gauge:g1"),
        ("g1", "urn:ngsi-ld:Gauge:g1"),
        ("urn:ngsi-ld:Device:x", "urn:ngsi-ld:Device:x"),
        ("https://city.example/gauges/1", "https://city.example/gauges/1"),
    ],
)
def test_entity_names_that_are_not_uris_become_ngsi_ld_urns(name: str, expected: str) -> None:
    assert entity_uri(name, "Gauge") == expected


def test_an_entity_name_that_cannot_be_a_uri_is_refused() -> None:
    with pytest.raises(BadRequestData):
        entity_uri("has space", "Gauge")


def test_an_entity_name_expression_joins_quoted_text_and_variables() -> None:
    assert name_template("'urn:ngsi-ld:' + type + \":\" + id") == (
        (True, "urn:ngsi-ld:"),
        (False, "type"),
        (True, ":"),
        (False, "id"),
    )


def test_a_plus_inside_quotes_is_part_of_the_text() -> None:
    assert name_template("'a+b:' + id") == ((True, "a+b:"), (False, "id"))


@pytest.mark.parametrize("source", ["id + sn", "id +", "+ id", "id ? 'a' : 'b'", "'open", ""])
def test_an_entity_name_expression_outside_the_subset_is_refused(source: str) -> None:
    with pytest.raises(BadRequestData, match="entityNameExp"):
        name_template(source)


@pytest.mark.parametrize("path", ["/", "/north", "/a/b_2"])
def test_service_paths_of_the_iot_agents_are_accepted(path: str) -> None:
    assert check_service_path(path) == path


@pytest.mark.parametrize("path", ["north", "/north/", "/a b", "//"])
def test_service_paths_the_iot_agents_refuse_are_refused(path: str) -> None:
    with pytest.raises(BadRequestData):
        check_service_path(path)


def test_a_missing_service_path_is_the_root() -> None:
    assert check_service_path(None) == "/"


def test_a_device_overrides_its_group_and_inherits_the_rest() -> None:
    group = parse_group(
        {
            "apikey": "k",
            "entity_type": "FloodMonitoring",
            "attributes": [
                {"object_id": "d", "name": "distance", "type": "Number"},
                {"object_id": "b", "name": "battery"},
            ],
            "static_attributes": [{"name": "source", "type": "Text", "value": "group"}],
            "model_params": {"alertLevel": 2.0, "dangerLevel": 3.0},
            "codec": "cayennelpp",
            "timestamp": False,
        },
        "town",
        "/",
    )
    device = parse_device(
        {
            "device_id": "g1",
            "apikey": "k",
            "attributes": [{"object_id": "d", "name": "measuredDistance", "type": "Number"}],
            "static_attributes": [{"name": "source", "type": "Text", "value": "device"}],
            "model_params": {"dangerLevel": 2.5},
        },
        "town",
        "/",
        [group],
    )

    config = resolve(device, group)

    assert [(a.object_id, a.name) for a in config.attributes] == [("d", "measuredDistance"), ("b", "battery")]
    assert [s.value for s in config.static_attributes] == ["device"]
    assert config.model_params == {"alertLevel": 2.0, "dangerLevel": 2.5}
    assert (config.entity_type, config.codec, config.timestamp, config.apikey) == (
        "FloodMonitoring",
        "cayennelpp",
        False,
        "k",
    )
    assert config.entity_name == "urn:ngsi-ld:FloodMonitoring:g1"


def test_a_device_without_type_or_group_gets_the_iot_agent_default_type() -> None:
    device = parse_device({"device_id": "x1"}, "town", "/", [])

    assert resolve(device, None).entity_name == "urn:ngsi-ld:Thing:x1"


def test_an_autoprovisioned_device_takes_its_name_from_the_group_expression() -> None:
    group = parse_group(
        {"apikey": "k", "entity_type": "Device", "entityNameExp": "'urn:ngsi-ld:Tag:' + id"}, "t", "/"
    )

    config = resolve(autoprovisioned(group, "tag-1"), group, provisioned=False)

    assert (config.entity_name, config.entity_type, config.provisioned) == (
        "urn:ngsi-ld:Tag:tag-1",
        "Device",
        False,
    )


def test_a_layout_is_parsed_with_defaults_and_bit_fields() -> None:
    layout = parse_layout(
        [
            {"name": "level", "offset": 0, "length": 2, "signed": True, "scale": 0.01},
            {"name": "mode", "offset": 2, "length": 1, "bits": [0, 3]},
            {"name": "id", "offset": 3, "length": 3, "kind": "hex"},
        ],
        "layout",
    )

    assert [(f.name, f.signed, f.scale, f.big_endian, f.bits, f.kind) for f in layout] == [
        ("level", True, 0.01, True, None, "int"),
        ("mode", False, 1.0, True, (0, 3), "int"),
        ("id", False, 1.0, True, None, "hex"),
    ]


@pytest.mark.parametrize(
    "field",
    [
        {"name": "x", "offset": -1, "length": 2},
        {"name": "x", "offset": 0, "length": 3},
        {"name": "x", "offset": 0, "length": 2, "kind": "float"},
        {"name": "x", "offset": 0, "length": 1, "bits": [5, 4]},
        {"name": "x", "offset": 0, "length": 1, "scale": "big"},
        {"name": "x", "offset": 0, "length": 1, "signed": "no"},
        {"name": "x", "offset": 0, "length": 0, "kind": "hex"},
    ],
)
def test_a_layout_field_that_cannot_be_decoded_is_refused(field: dict[str, Any]) -> None:
    with pytest.raises(BadRequestData):
        parse_layout([field], "layout")


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"explicitAttrs": "yes"}, "service group 'k': explicitAttrs must be true or false"),
        ({"model_params": [1]}, "service group 'k': model_params must be a JSON object"),
        (
            {"attributes": [{"name": "t", "object_id": ""}]},
            "service group 'k': attributes: 't': object_id must be a non-empty string",
        ),
        (
            {"layout": [{"name": "x", "offset": 0, "length": 1, "scale": "big"}]},
            "service group 'k': layout: 'x': scale must be a number",
        ),
        ({"apikey": "   "}, "service group: apikey must be a non-empty string"),
    ],
)
def test_provisioning_fields_are_read_with_the_broker_shape_kit_and_named_wrong_syntax(
    change: dict[str, Any], detail: str
) -> None:
    """One shape-validation kit (broker.shape) for the NGSI-LD bodies and the IoT Agent API: the
    messages have its form, the errors carry the IoT Agent name WRONG_SYNTAX."""
    with pytest.raises(BadRequestData) as caught:
        parse_group({"apikey": "k", **change}, "town", "/")
    assert (caught.value.detail, caught.value.extra) == (detail, {"name": "WRONG_SYNTAX"})


def test_a_null_provisioning_field_counts_as_not_given() -> None:
    group = parse_group(
        {"apikey": "k", "explicitAttrs": None, "attributes": None, "model_params": None}, "town", "/"
    )
    assert (group.profile.explicit_attrs, group.profile.attributes, group.profile.model_params) == (
        None,
        (),
        {},
    )


# --- rendering and parsing again gives the same values ----------------------------------------

_INNER_KEYS = (
    "name",
    "object_id",
    "type",
    "value",
    "offset",
    "length",
    "bits",
    "kind",
    "metadata",
    "lorawan",
    "dev_eui",
)
_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True)
_v2_types = st.sampled_from(
    ["Number", "Text", "Boolean", "geo:point", "Property", "GeoProperty", "commandStatus"]
)
_scalars = st.one_of(st.integers(-1000, 1000), st.booleans(), st.text(max_size=8), st.floats(allow_nan=False))
_attributes = st.lists(
    st.fixed_dictionaries(
        {"object_id": _names, "name": _names, "type": _v2_types},
        optional={"unitCode": st.sampled_from(["CEL", "MTR", "KMH"])},
    ),
    max_size=4,
    unique_by=lambda a: a["object_id"],
)
_layout = st.lists(
    st.builds(
        lambda name, offset, length, signed, scale: {
            "name": name,
            "offset": offset,
            "length": length,
            "signed": signed,
            "scale": scale,
        },
        _names,
        st.integers(0, 20),
        st.sampled_from([1, 2, 4, 8]),
        st.booleans(),
        st.floats(-100, 100, allow_nan=False),
    ),
    max_size=3,
    unique_by=lambda f: f["name"],
)
_profile = st.fixed_dictionaries(
    {},
    optional={
        "entity_type": _names,
        "attributes": _attributes,
        "commands": st.lists(st.fixed_dictionaries({"name": _names}), max_size=2),
        "explicitAttrs": st.booleans(),
        "timestamp": st.booleans(),
        "protocol": st.sampled_from(["IoTA-UL", "iota-json", "TTS", "chirpstack"]),
        "layout": _layout,
        "model": _names,
        "model_params": st.dictionaries(_names, _scalars, max_size=3),
        "health": st.booleans(),
        "transport": st.sampled_from(["MQTT", "HTTP"]),
    },
)


@given(profile=_profile, apikey=_names, autoprovision=st.booleans())
def test_a_group_rendered_and_parsed_again_is_the_same_group(
    profile: dict[str, Any], apikey: str, autoprovision: bool
) -> None:
    group = parse_group({**profile, "apikey": apikey, "autoprovision": autoprovision}, "town", "/north")

    assert parse_group(group_json(group), "town", "/north") == group


@given(profile=_profile, device_id=_names, dev_eui=st.none() | st.from_regex(r"[0-9A-F]{16}", fullmatch=True))
def test_a_device_rendered_and_parsed_again_is_the_same_device(
    profile: dict[str, Any], device_id: str, dev_eui: str | None
) -> None:
    data = {**profile, "device_id": device_id} | ({"dev_eui": dev_eui} if dev_eui else {})
    device = parse_device(data, "town", "/", [])

    assert parse_device(device_json(device), "town", "/", []) == device
    if dev_eui:
        assert device.dev_eui == dev_eui.lower()


_json = st.recursive(
    _scalars | st.none(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(_INNER_KEYS), kids, max_size=4),
    max_leaves=12,
)


def _refusal(parse: Callable[[], object]) -> str | None:
    """None when ``parse`` accepts, the detail when it refuses with BadRequestData (anything else fails)."""
    try:
        parse()
    except BadRequestData as error:
        return error.detail
    return None


@given(data=st.dictionaries(st.sampled_from(sorted(GROUP_FIELDS | DEVICE_FIELDS)), _json, max_size=6))
def test_any_json_in_known_fields_is_parsed_or_refused_with_a_reason(data: dict[str, Any]) -> None:
    for parse in (lambda: parse_group(data, "t", "/"), lambda: parse_device(data, "t", "/", [])):
        assert _refusal(parse) != ""


def test_an_iota_lorawan_device_takes_network_server_codec_and_dev_eui_from_internal_attributes() -> None:
    lorawan = {
        "application_server": {"host": "eu1.cloud.thethings.network", "provider": "TTN"},
        "dev_eui": "70B3D57ED0000001",
        "app_eui": "70B3D57ED00006EC",
        "application_id": "kasuga-gauges",
        "data_model": "cayennelpp",
    }
    data = {"device_id": "gauge-1", "protocol": "IoTA-LoRaWAN", "internal_attributes": {"lorawan": lorawan}}

    device = parse_device(data, "town", "/", [])

    assert (device.profile.protocol, device.profile.codec, device.dev_eui) == (
        "tts",
        "cayennelpp",
        "70b3d57ed0000001",
    )
    assert device.extra["internal_attributes"]["lorawan"]["application_id"] == "kasuga-gauges"
    assert parse_device(device_json(device), "town", "/", []) == device


def test_an_iota_lorawan_data_model_this_broker_cannot_decode_is_refused() -> None:
    lorawan = {
        "application_server": {"provider": "loraserver.io"},
        "dev_eui": "70B3D57ED0000001",
        "data_model": "cbor",
    }

    with pytest.raises(BadRequestData, match="data_model"):
        parse_device({"device_id": "g", "internal_attributes": {"lorawan": lorawan}}, "town", "/", [])


@pytest.mark.parametrize("device_id", ["", "x" * 300, "tag\ud800"])
def test_an_autoprovisioned_device_id_that_cannot_be_stored_is_refused(device_id: str) -> None:
    group = parse_group({"apikey": "k", "entityNameExp": "'urn:ngsi-ld:Tag:' + id"}, "t", "/")

    with pytest.raises(BadRequestData):
        autoprovisioned(group, device_id)


def test_a_provisioned_protocol_and_codec_are_members_of_their_enums() -> None:
    device = parse_device({"device_id": "g", "protocol": "TTN", "codec": "cayennelpp"}, "town", "/", [])
    again = parse_device(device_json(device), "town", "/", [])  # as the store reads it back
    for profile in (device.profile, again.profile):
        assert profile.protocol is Family.TTS
        assert profile.codec is Codec.CAYENNE
