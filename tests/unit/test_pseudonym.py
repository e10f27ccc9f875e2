"""Watch-tag pseudonyms: stable per tenant, unrelated across tenants and secrets, and redacted dead letters."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.pseudonym import DIGITS, Pseudonymiser

SECRET = b"unit-test-secret-0123456789abcdef"
PSEUDONYMS = Pseudonymiser(SECRET)
TAGS = st.binary(min_size=6, max_size=6).map(bytes.hex)


@given(raw=TAGS, tenant=st.sampled_from(["kakogawa", "himeji", "akashi"]))
def test_a_pseudonym_is_stable_hex_of_fixed_length_and_not_the_raw_id(raw: str, tenant: str) -> None:
    pseudonym = PSEUDONYMS.tag_id(tenant, raw)
    assert pseudonym == Pseudonymiser(SECRET).tag_id(tenant, raw.upper())
    assert len(pseudonym) == DIGITS
    assert int(pseudonym, 16) >= 0
    assert raw not in pseudonym


@given(raw=TAGS)
def test_another_tenant_or_another_secret_gives_an_unrelated_pseudonym(raw: str) -> None:
    here = PSEUDONYMS.tag_id("kakogawa", raw)
    assert here != PSEUDONYMS.tag_id("himeji", raw)
    assert here != Pseudonymiser(b"another-secret-0123456789abcdef!").tag_id("kakogawa", raw)


def test_the_pseudonym_is_not_a_plain_hash_of_the_tag() -> None:
    # Whoever has the database but not the secret cannot hash all 2^48 tag ids to find one.
    raw = "a1f3c09e7b22"
    assert PSEUDONYMS.tag_id("kakogawa", raw) not in hashlib.sha256(raw.encode()).hexdigest()
    assert PSEUDONYMS.tag_id("kakogawa", raw) not in hmac.new(SECRET, raw.encode(), "sha256").hexdigest()


def test_a_short_secret_is_refused_and_never_shown() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymiser(b"short")
    assert "unit-test-secret" not in repr(PSEUDONYMS)


def test_redact_replaces_tag_ids_in_measures() -> None:
    measures = {"tag": "a1f3c09e7b22", "rssi": -71}
    assert PSEUDONYMS.redact("kakogawa", measures) == {
        "tag": PSEUDONYMS.tag_id("kakogawa", "a1f3c09e7b22"),
        "rssi": -71,
    }


def test_a_json_dead_letter_keeps_its_shape_with_every_tag_replaced() -> None:
    body = orjson.dumps([{"tag": "a1f3c09e7b22", "rssi": -71}, {"nested": {"tag": "0c9d55e21a40"}}])
    redacted = PSEUDONYMS.redact_body("kakogawa", body)
    assert b"a1f3c09e7b22" not in redacted
    assert b"0c9d55e21a40" not in redacted
    assert orjson.loads(redacted) == [
        {"tag": PSEUDONYMS.tag_id("kakogawa", "a1f3c09e7b22"), "rssi": -71},
        {"nested": {"tag": PSEUDONYMS.tag_id("kakogawa", "0c9d55e21a40")}},
    ]


def test_an_ultralight_dead_letter_has_its_tags_replaced_even_after_a_timestamp() -> None:
    body = b"2025-10-03T06:41:12Z|tag|a1f3c09e7b22|rssi|-71#tag|0c9d55e21a40|rssi|-88"
    redacted = PSEUDONYMS.redact_body("kakogawa", body).decode()
    first, second = (PSEUDONYMS.tag_id("kakogawa", t) for t in ("a1f3c09e7b22", "0c9d55e21a40"))
    assert redacted == f"2025-10-03T06:41:12Z|tag|{first}|rssi|-71#tag|{second}|rssi|-88"


def _not_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return b"|" not in body
    return False


@given(body=st.binary(max_size=64).filter(_not_json))
def test_a_dead_letter_that_is_neither_json_nor_ultralight_is_withheld(body: bytes) -> None:
    redacted = orjson.loads(PSEUDONYMS.redact_body("kakogawa", body))
    assert redacted == {"withheld": "not JSON or UltraLight; may hold tag ids", "bytes": len(body)}


def test_a_dead_letter_nested_too_deep_to_search_is_withheld_not_a_crash() -> None:
    """Issue 11 defect 1: orjson could not write a 300-deep body back and the pipeline died."""
    body = b'{"x": ' + b"[" * 300 + b"]" * 300 + b"}"
    redacted = orjson.loads(PSEUDONYMS.redact_body("kakogawa", body))
    assert redacted == {"withheld": "nested deeper than 200 levels; may hold tag ids", "bytes": len(body)}
