"""Term maps: core @context URL detection, term expansion and compaction (JSON-LD 1.1 rules)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from broker.jsonld.context import (
    DEFAULT_VOCAB,
    TermMap,
    bundled_document,
    compile_contexts,
    core_document,
    core_term_map,
    is_core_url,
)

NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
EXAMPLE = "https://example.org/"
USER_CONTEXT = {"ex": EXAMPLE, "temperature": EXAMPLE + "temperature"}
SDM_ENVIRONMENT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"
)
SDM_ENVIRONMENT_NS = "https://smartdatamodels.org/dataModel.Environment/"


def user_term_map() -> TermMap:
    return compile_contexts([USER_CONTEXT], core_document())


# --- core URL detection ---------------------------------------------------------------------------

CORE_URLS = [
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    *[f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{minor}.jsonld" for minor in range(3, 10)],
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.1.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1.9/ngsi-ld-core-context-v1.9.jsonld",
    "https://uri.etsi.org/ngsi-ld/ngsi-ld-core-context-v1.9.jsonld",
]


@pytest.mark.parametrize("url", CORE_URLS)
def test_every_published_core_context_url_is_recognised_as_core(url: str) -> None:
    assert is_core_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/ngsi-ld-core-context.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/other-context.jsonld",
        "https://uri.etsi.org.evil.example/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld.evil",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld?x=1",
        "https://uri.etsi.org/ngsi-ld/v2/ngsi-ld-core-context-v2.0.jsonld",
        SDM_ENVIRONMENT,
        "",
    ],
)
def test_a_url_that_is_not_the_etsi_core_context_is_not_core(url: str) -> None:
    assert not is_core_url(url)


# --- expansion ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "iri"),
    [
        ("location", NGSI_LD + "location"),
        ("observedAt", NGSI_LD + "observedAt"),
        ("unitCode", NGSI_LD + "unitCode"),
        ("datasetId", NGSI_LD + "datasetId"),
        ("createdAt", NGSI_LD + "createdAt"),
        ("modifiedAt", NGSI_LD + "modifiedAt"),
        ("Property", NGSI_LD + "Property"),
        ("Relationship", NGSI_LD + "Relationship"),
        ("GeoProperty", NGSI_LD + "GeoProperty"),
    ],
)
def test_core_terms_expand_to_the_ngsi_ld_namespace(term: str, iri: str) -> None:
    assert core_term_map().expand(term) == iri
    assert user_term_map().expand(term) == iri


def test_a_user_term_expands_to_the_iri_its_context_gives() -> None:
    assert user_term_map().expand("temperature") == EXAMPLE + "temperature"


def test_a_compact_iri_expands_with_its_prefix() -> None:
    assert user_term_map().expand("ex:foo") == EXAMPLE + "foo"


@pytest.mark.parametrize(
    "iri",
    ["https://other.example/vocab#speed", "urn:ngsi-ld:Vehicle:A4567", "http://example.com/a/b"],
)
def test_an_absolute_iri_expands_to_itself(iri: str) -> None:
    assert user_term_map().expand(iri) == iri
    assert core_term_map().expand(iri) == iri


def test_an_unknown_term_expands_into_the_default_context_vocabulary() -> None:
    assert DEFAULT_VOCAB == "https://uri.etsi.org/ngsi-ld/default-context/"
    assert core_term_map().expand("brandName") == DEFAULT_VOCAB + "brandName"
    assert user_term_map().expand("brandName") == DEFAULT_VOCAB + "brandName"


def test_a_user_term_is_unknown_without_its_context() -> None:
    assert core_term_map().expand("temperature") == DEFAULT_VOCAB + "temperature"


# --- compaction is the inverse --------------------------------------------------------------------


@pytest.mark.parametrize(
    "term",
    ["location", "observedAt", "Property", "temperature", "ex:foo", "brandName", "urn:ngsi-ld:Thing:1"],
)
def test_compacting_an_expanded_term_gives_the_term_back(term: str) -> None:
    tm = user_term_map()
    assert tm.compact(tm.expand(term)) == term


@pytest.mark.parametrize(
    ("iri", "term"),
    [
        (NGSI_LD + "location", "location"),
        (EXAMPLE + "temperature", "temperature"),
        (EXAMPLE + "foo", "ex:foo"),
        (DEFAULT_VOCAB + "brandName", "brandName"),
        ("https://other.example/vocab#speed", "https://other.example/vocab#speed"),
    ],
)
def test_an_iri_compacts_to_the_term_the_context_offers(iri: str, term: str) -> None:
    assert user_term_map().compact(iri) == term


_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True) | st.sampled_from(
    ["temperature", "location", "id", "type", "ex", "value", "ngsi-ld", "Property", "observedAt", "brandName"]
)


@given(_NAMES)
def test_any_plain_term_survives_expand_then_compact(name: str) -> None:
    tm = user_term_map()
    iri = tm.expand(name)
    assume(not iri.startswith("@"))  # keyword aliases such as id -> @id
    assert ":" in iri
    assert tm.expand(tm.compact(iri)) == iri


@pytest.mark.parametrize("suffix", ["temperature", "location", "id", "type", "ex", "ngsi-ld", "Property"])
def test_a_default_vocabulary_iri_never_compacts_to_a_term_defined_as_something_else(suffix: str) -> None:
    tm = user_term_map()
    iri = DEFAULT_VOCAB + suffix
    assert tm.expand(tm.compact(iri)) == iri


@given(_NAMES)
def test_any_iri_under_a_prefix_survives_compact_then_expand(suffix: str) -> None:
    tm = user_term_map()
    for base in (EXAMPLE, DEFAULT_VOCAB, NGSI_LD, "https://elsewhere.example/ns#"):
        iri = base + suffix
        assert tm.expand(tm.compact(iri)) == iri


# --- protection of the core context -----------------------------------------------------------------


def test_a_user_context_cannot_redefine_core_terms() -> None:
    hostile = {"location": EXAMPLE + "myLocation", "Property": EXAMPLE + "P", "observedAt": EXAMPLE + "t"}
    tm = compile_contexts([hostile], core_document())
    assert tm.expand("location") == NGSI_LD + "location"
    assert tm.expand("Property") == NGSI_LD + "Property"
    assert tm.expand("observedAt") == NGSI_LD + "observedAt"
    assert tm.compact(NGSI_LD + "location") == "location"


def test_a_user_context_given_after_the_core_still_cannot_redefine_core_terms() -> None:
    tm = compile_contexts([core_document(), {"location": EXAMPLE + "myLocation"}], core_document())
    assert tm.expand("location") == NGSI_LD + "location"


def test_later_user_contexts_override_earlier_user_terms() -> None:
    tm = compile_contexts([{"speed": EXAMPLE + "a"}, {"speed": EXAMPLE + "b"}], core_document())
    assert tm.expand("speed") == EXAMPLE + "b"


def test_a_user_term_defined_by_compact_iri_resolves_through_its_prefix() -> None:
    tm = compile_contexts(
        [{"ex": EXAMPLE, "depth": "ex:depth", "level": {"@id": "ex:level"}}], core_document()
    )
    assert tm.expand("depth") == EXAMPLE + "depth"
    assert tm.expand("level") == EXAMPLE + "level"
    assert tm.compact(EXAMPLE + "depth") == "depth"


# --- bundled Smart Data Models ----------------------------------------------------------------------


def test_the_bundled_environment_context_maps_flood_monitoring_terms() -> None:
    document = bundled_document(SDM_ENVIRONMENT)
    assert document is not None
    assert "@context" in document
    context = document["@context"]
    contexts = context if isinstance(context, list) else [context]
    tm = compile_contexts([c for c in contexts if isinstance(c, dict)], core_document())
    assert tm.expand("FloodMonitoring") == SDM_ENVIRONMENT_NS + "FloodMonitoring"
    assert tm.expand("currentLevel") == SDM_ENVIRONMENT_NS + "currentLevel"
    assert tm.compact(SDM_ENVIRONMENT_NS + "currentLevel") == "currentLevel"
    # The core context still wins over anything the Smart Data Models context says.
    assert tm.expand("location") == NGSI_LD + "location"


def test_an_unknown_url_has_no_bundled_document() -> None:
    assert bundled_document("https://example.org/not-bundled.jsonld") is None
