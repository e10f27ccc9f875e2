"""Identities and the tenants they act in: one tenant, every tenant, or several (a token's)."""

from __future__ import annotations

import pytest

from broker.auth.model import Identity, Role

READER = frozenset({Role.READER})


def test_a_tenant_identity_acts_in_its_tenant_and_an_operator_in_every_one() -> None:
    key = Identity("key", "k1", "kanonji", READER)
    assert key.acts_in("kanonji")
    assert not key.acts_in("ayagawa")
    assert key.within("kanonji") is key
    operator = Identity("key", "k0", None, frozenset({Role.OPERATOR}))
    assert operator.acts_in("kanonji")
    assert operator.within("ayagawa") is operator


def test_an_identity_of_several_tenants_is_narrowed_to_the_one_a_request_names() -> None:
    token = Identity("token", "alice", "kanonji", READER, tenants=frozenset({"kanonji", "ayagawa"}))
    assert token.acts_in("ayagawa")
    assert not token.acts_in("takamatsu")
    narrowed = token.within("ayagawa")
    assert (narrowed.tenant, narrowed.tenants) == ("ayagawa", None)
    assert not narrowed.acts_in("kanonji")
    with pytest.raises(ValueError, match="takamatsu"):
        token.within("takamatsu")


def test_an_identity_of_several_tenants_never_has_no_tenant() -> None:
    # tenant None means the whole instance: it must not creep in next to a list of tenants.
    with pytest.raises(ValueError, match="several tenants"):
        Identity("token", "alice", None, READER, tenants=frozenset({"kanonji"}))
    with pytest.raises(ValueError, match="several tenants"):
        Identity("token", "alice", "takamatsu", READER, tenants=frozenset({"kanonji"}))
