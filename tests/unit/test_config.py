"""Settings from the environment: defaults, parse errors that name the variable, and --help text."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import broker
from broker.config import SETTINGS, ConfigError, Setting, Settings, help_text, load

BROKER_SOURCE = Path(broker.__file__).parent


def _kind(field: str) -> str:
    """The annotated type of a Settings field ('int', 'float', 'bool', 'str')."""
    annotation = {f.name: f.type for f in dataclasses.fields(Settings)}[field]
    return annotation if isinstance(annotation, str) else annotation.__name__


def _settings_of(kind: str) -> list[str]:
    return [s.env for s in SETTINGS if _kind(s.field) == kind]


# --- defaults -------------------------------------------------------------------------------------


def test_an_empty_environment_loads_with_defaults() -> None:
    settings = load({})
    assert settings.host == "127.0.0.1"
    assert settings.port == 1026
    assert settings.public_url == ""
    assert settings.base_url == "http://127.0.0.1:1026"
    assert settings.context_allow_fetch is True
    assert settings.db_pool_min <= settings.db_pool_max
    for name in ("max_body_bytes", "max_batch", "context_max_bytes", "db_pool_min", "db_pool_max"):
        assert getattr(settings, name) > 0
    assert settings.context_fetch_timeout > 0


def test_every_settings_field_comes_from_exactly_one_environment_variable() -> None:
    fields = [f.name for f in dataclasses.fields(Settings)]
    assert sorted(s.field for s in SETTINGS) == sorted(fields)
    envs = [s.env for s in SETTINGS]
    assert len(envs) == len(set(envs))


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.env for s in SETTINGS])
def test_each_default_has_the_type_of_its_field(setting: Setting) -> None:
    value = getattr(load({}), setting.field)
    kinds = {"int": int, "float": float, "bool": bool, "str": str, "tuple[int, ...]": tuple}
    kinds["tuple[tuple[str, float], ...]"] = tuple
    kind = _kind(setting.field)
    if kind not in kinds:
        pytest.skip(f"{setting.env} has a parsed type of its own ({kind})")
    assert type(value) is kinds[kind]


def test_values_from_the_environment_override_the_defaults() -> None:
    settings = load(
        {
            "NGSI_HOST": "0.0.0.0",
            "NGSI_PORT": "8080",
            "NGSI_CONTEXT_FETCH_TIMEOUT": "0.5",
            "NGSI_CONTEXT_ALLOW_FETCH": "false",
            "NGSI_PUBLIC_URL": "https://broker.example.org/",
            "NGSI_DB_POOL_MIN": "1",
            "NGSI_DB_POOL_MAX": "12",
        }
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.context_fetch_timeout == 0.5
    assert settings.context_allow_fetch is False
    assert (settings.db_pool_min, settings.db_pool_max) == (1, 12)
    assert settings.base_url == "https://broker.example.org"


def test_load_reads_the_mapping_it_is_given_not_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NGSI_PORT", "not-a-port")
    assert load({"NGSI_PORT": "2000"}).port == 2000
    with pytest.raises(ConfigError):
        load()


def test_load_without_a_mapping_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NGSI_PORT", "4242")
    assert load().port == 4242


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True), (" On ", True)],
        *[("false", False), ("False", False), ("0", False), ("no", False), ("off", False), ("", False)],
    ],
)
def test_booleans_accept_the_usual_spellings(text: str, value: bool) -> None:
    assert load({"NGSI_CONTEXT_ALLOW_FETCH": text}).context_allow_fetch is value


def test_settings_are_immutable_and_replace_returns_a_new_value() -> None:
    settings = load({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    changed = settings.replace(port=2000)
    assert changed.port == 2000
    assert settings.port == 1026


# --- errors ---------------------------------------------------------------------------------------

BAD_VALUES = {
    "int": ["abc", "", "0", "-1", "1.5", "1e3", "0x10"],
    "float": ["abc", "", "0", "-2.5", "nan"],
    "bool": ["maybe", "2", "enabled", "tru"],
}
# 0 is a valid worker count (one per CPU core) and a valid token leeway (none).
VALID = {("NGSI_WORKERS", "0"), ("NGSI_OIDC_LEEWAY", "0")}
CASES = [
    (env, text)
    for kind, texts in BAD_VALUES.items()
    for env in _settings_of(kind)
    for text in texts
    if (env, text) not in VALID
]


@pytest.mark.parametrize(("env", "text"), CASES, ids=[f"{env}={text!r}" for env, text in CASES])
def test_a_value_that_does_not_parse_is_a_config_error_naming_the_variable(env: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({env: text})
    assert env in str(caught.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_a_pool_minimum_above_its_maximum_is_a_config_error_naming_both() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"NGSI_DB_POOL_MIN": "5", "NGSI_DB_POOL_MAX": "4"})
    assert "NGSI_DB_POOL_MIN" in str(caught.value)
    assert "NGSI_DB_POOL_MAX" in str(caught.value)


# --- help -----------------------------------------------------------------------------------------


def test_help_text_lists_every_environment_variable_with_its_default() -> None:
    text = help_text()
    lines = text.splitlines()
    for setting in SETTINGS:
        matching = [line for line in lines if re.search(rf"(^|\s){re.escape(setting.env)}\s", line)]
        assert len(matching) == 1, setting.env
        assert (setting.default or "(empty)") in matching[0]
        assert setting.help in matching[0]


def test_help_text_lists_every_variable_the_broker_mentions() -> None:
    mentioned: set[str] = set()
    for path in BROKER_SOURCE.rglob("*.py"):
        mentioned |= set(re.findall(r"\bNGSI_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
    mentioned.discard("NGSI_LD")  # the namespace constant, not a variable
    text = help_text()
    missing = sorted(name for name in mentioned if not re.search(rf"\b{name}\b", text))
    assert missing == []


OIDC = {
    "NGSI_OIDC_ISSUER": "https://idp.example.org/realms/kagawa",
    "NGSI_OIDC_AUDIENCE": "city-data-hub",
    "NGSI_OIDC_JWKS_URL": "https://idp.example.org/realms/kagawa/protocol/openid-connect/certs",
}


def test_an_oidc_issuer_with_an_audience_and_one_key_source_loads() -> None:
    settings = load(OIDC)
    assert settings.oidc_enabled
    assert (settings.oidc_tenant_claim, settings.oidc_roles_claim, settings.oidc_leeway) == (
        "tenant",
        "roles",
        30,
    )
    assert not load({}).oidc_enabled
    assert load({**OIDC, "NGSI_OIDC_JWKS_URL": "", "NGSI_OIDC_JWKS_FILE": "/etc/hub/jwks.json"}).oidc_enabled


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({**OIDC, "NGSI_OIDC_AUDIENCE": ""}, "NGSI_OIDC_AUDIENCE"),
        ({**OIDC, "NGSI_OIDC_JWKS_URL": ""}, "NGSI_OIDC_JWKS_FILE"),
        ({**OIDC, "NGSI_OIDC_JWKS_FILE": "/etc/hub/jwks.json"}, "exactly one"),
        ({**OIDC, "NGSI_OIDC_ISSUER": ""}, "without NGSI_OIDC_ISSUER"),
        ({"NGSI_OIDC_JWKS_FILE": "/etc/hub/jwks.json"}, "NGSI_OIDC_JWKS_FILE set without"),
        ({**OIDC, "NGSI_OIDC_JWKS_URL": "ftp://idp.example.org/certs"}, "NGSI_OIDC_JWKS_URL"),
        ({**OIDC, "NGSI_OIDC_LEEWAY": "-1"}, "NGSI_OIDC_LEEWAY"),
    ],
)
def test_an_incomplete_oidc_configuration_is_a_config_error(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load(environ)


def test_iota_ports_are_a_comma_separated_list() -> None:
    assert load({"NGSI_IOTA_PORTS": "4041, 7896"}).iota_ports == (4041, 7896)
    assert load({}).iota_ports == ()
    with pytest.raises(ConfigError, match="NGSI_IOTA_PORTS"):
        load({"NGSI_IOTA_PORTS": "4041,70000"})


def test_zero_workers_means_one_per_core_and_negative_is_refused() -> None:
    assert load({"NGSI_WORKERS": "0"}).workers == 0
    with pytest.raises(ConfigError, match="NGSI_WORKERS"):
        load({"NGSI_WORKERS": "-1"})


def test_the_readme_lists_every_setting_with_its_default() -> None:
    readme = (BROKER_SOURCE.parent / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", readme, flags=re.MULTILINE))
    for setting in SETTINGS:
        assert setting.env in rows, f"README's configuration table lacks {setting.env}"
        shown = rows[setting.env].strip()
        assert shown == (f"`{setting.default}`" if setting.default else "(empty)"), setting.env


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"NGSI_HOST": "::1"}, False),
        ({"NGSI_HOST": "localhost"}, False),
        ({"NGSI_HOST": "127.0.0.2"}, False),
        ({"NGSI_HOST": "0.0.0.0"}, True),
        ({"NGSI_HOST": "192.0.2.10"}, True),
        ({"NGSI_HOST": "hub.example.org"}, True),
        ({"NGSI_AUTH": "on"}, True),
        ({"NGSI_AUTH": "off", "NGSI_HOST": "0.0.0.0"}, False),
    ],
)
def test_auth_auto_is_on_as_soon_as_the_api_listens_beyond_loopback(
    environ: dict[str, str], enabled: bool
) -> None:
    assert load(environ).auth_enabled is enabled


def test_an_unknown_auth_mode_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="NGSI_AUTH"):
        load({"NGSI_AUTH": "maybe"})


def test_a_pool_too_small_for_the_listens_and_deliveries_is_refused_at_start() -> None:
    # Four LISTEN connections held a pool of 4 for good (seen: every request waited, silently, until
    # the client gave up); the deliveries need theirs on top.
    with pytest.raises(ConfigError, match=r"NGSI_DB_POOL_MAX=8 is too small.*at least 10"):
        load({"NGSI_DB_POOL_MAX": "8", "NGSI_DB_POOL_MIN": "1"})
    assert (
        load({"NGSI_DB_POOL_MAX": "7", "NGSI_DB_POOL_MIN": "1", "NGSI_NOTIFY_CONCURRENCY": "1"}).db_pool_max
        == 7
    )


def test_mqtt_families_default_to_all_and_refuse_an_unknown_one() -> None:
    assert load({}).mqtt_families == ("json", "ul", "tts", "chirpstack")
    assert load({"NGSI_MQTT_FAMILIES": " UL, tts ,ul"}).mqtt_families == ("ul", "tts")
    assert load({"NGSI_MQTT_FAMILIES": ""}).mqtt_families == ()
    with pytest.raises(ConfigError, match=r"NGSI_MQTT_FAMILIES.*sigfox"):
        load({"NGSI_MQTT_FAMILIES": "json,sigfox"})


@pytest.mark.parametrize("prefix", ["hub1/+", "hub1/#", "/hub1", "hub1/", "$share"])
def test_an_mqtt_topic_prefix_with_wildcards_or_outer_slashes_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="NGSI_MQTT_TOPIC_PREFIX"):
        load({"NGSI_MQTT_TOPIC_PREFIX": prefix})
    assert load({"NGSI_MQTT_TOPIC_PREFIX": "city/hub1"}).mqtt_topic_prefix == "city/hub1"
