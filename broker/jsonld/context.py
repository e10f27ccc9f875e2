"""Term maps: the part of a JSON-LD @context an NGSI-LD broker needs, compiled once.

Running the full JSON-LD expansion and compaction algorithms on every request is
what makes some brokers slow. NGSI-LD payloads only need their *terms* (entity
types, attribute names, vocab values) turned into IRIs and back, so a context is
compiled into a ``TermMap``: term -> IRI plus the reverse map, built once per
distinct context and cached by the resolver.

Values of Properties are kept as they are (not expanded as JSON-LD would), as
Orion-LD does: apps get back exactly the JSON they stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import orjson

CORE_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
_CORE_URL_RE = re.compile(
    r"^https?://uri\.etsi\.org/ngsi-ld/(v1(\.\d+)*/)?ngsi-ld-core-context(-v1(\.\d+)*)?\.jsonld$"
)


def is_core_url(url: str) -> bool:
    """True for every published URL of the NGSI-LD core @context (all v1.x and unversioned)."""
    return _CORE_URL_RE.match(url) is not None


class ContextError(ValueError):
    """A @context document that cannot be used (not JSON-LD, wrong shapes)."""


@dataclass(slots=True)
class TermMap:
    """Compiled @context: expands terms to IRIs and compacts IRIs back to terms."""

    terms: dict[str, str] = field(default_factory=dict)
    vocab: str | None = DEFAULT_VOCAB
    _reverse: dict[str, str] | None = None
    _prefixes: list[tuple[str, str]] | None = None

    def expand(self, term: str) -> str:
        """Expand a term (entity type, attribute name, vocab value) to an absolute IRI."""
        iri = self.terms.get(term)
        if iri is not None:
            return iri
        if term.startswith("@"):
            return term
        prefix, colon, suffix = term.partition(":")
        if colon:
            if prefix == "_" or suffix.startswith("//"):
                return term
            base = self.terms.get(prefix)
            if base is not None:
                return base + suffix
            return term
        if self.vocab is not None:
            return self.vocab + term
        return term

    def compact(self, iri: str) -> str:
        """Compact an IRI to the shortest term this context offers for it."""
        if self._reverse is None:
            self._build_reverse()
        assert self._reverse is not None
        assert self._prefixes is not None
        term = self._reverse.get(iri)
        if term is not None:
            return term
        # As JSON-LD IRI compaction: a vocab-relative term beats a compact IRI.
        if self.vocab is not None and iri.startswith(self.vocab) and len(iri) > len(self.vocab):
            suffix = iri[len(self.vocab) :]
            if suffix not in self.terms and ":" not in suffix:
                return suffix
        for base, prefix in self._prefixes:
            if iri.startswith(base) and len(iri) > len(base):
                return f"{prefix}:{iri[len(base) :]}"
        return iri

    def _build_reverse(self) -> None:
        reverse: dict[str, str] = {}
        for term, iri in self.terms.items():
            current = reverse.get(iri)
            # JSON-LD picks the shortest, then lexicographically least term.
            if current is None or (len(term), term) < (len(current), current):
                reverse[iri] = term
        prefixes = [
            (iri, term)
            for term, iri in self.terms.items()
            if ":" not in term and iri.endswith(("/", "#", ":")) and iri != self.vocab
        ]
        prefixes.sort(key=lambda pair: -len(pair[0]))
        self._reverse = reverse
        self._prefixes = prefixes


def _term_iri(definition: Any) -> str | bool | None:
    """The raw IRI of a term definition; None when it unmaps the term, False when it has no @id."""
    if definition is None:
        return None
    if isinstance(definition, str):
        return definition
    if isinstance(definition, Mapping):
        if "@id" not in definition:
            return False
        raw = definition["@id"]
        if raw is None or isinstance(raw, str):
            return raw
    raise ContextError(f"invalid term definition: {definition!r}")


def compile_contexts(documents: Iterable[Mapping[str, Any]], core: Mapping[str, Any] | None) -> TermMap:
    """Compile local context objects (already dereferenced) in order; the core context wins last."""
    raw: dict[str, str | bool | None] = {}
    vocab: str | None = DEFAULT_VOCAB
    ordered = list(documents)
    if core is not None:
        ordered.append(core)
    for doc in ordered:
        for key, definition in doc.items():
            if key == "@vocab":
                if definition is not None and not isinstance(definition, str):
                    raise ContextError("@vocab must be a string")
                vocab = definition
            elif not key.startswith("@"):
                raw[key] = _term_iri(definition)
    terms: dict[str, str] = {}
    for term, iri in raw.items():
        if iri is None:
            continue
        resolved = _resolve_iri(iri if isinstance(iri, str) else term, raw, vocab)
        if resolved is not None:
            terms[term] = resolved
    return TermMap(terms=terms, vocab=vocab)


def _resolve_iri(value: str, raw: Mapping[str, str | bool | None], vocab: str | None) -> str | None:
    """Resolve a compact IRI or vocab-relative term used inside a context."""
    for _ in range(8):  # prefixes may chain; a loop longer than this is a broken context
        prefix, colon, suffix = value.partition(":")
        if not colon:
            return vocab + value if vocab is not None else None
        if prefix == "_" or suffix.startswith("//"):
            return value
        base = raw.get(prefix)
        if not isinstance(base, str):
            return value
        value = base + suffix
    raise ContextError(f"cyclic prefix definitions around {value!r}")


def context_objects(document: Any) -> list[Any]:
    """The entries of a document's @context member, as a list (URLs and objects)."""
    if not isinstance(document, Mapping) or "@context" not in document:
        raise ContextError("a JSON-LD context document must be an object with an @context member")
    ctx = document["@context"]
    return list(ctx) if isinstance(ctx, list) else [ctx]


@cache
def core_document() -> dict[str, Any]:
    """The bundled core @context object: v1.9, plus the few v1.8 terms v1.9 dropped."""
    merged: dict[str, Any] = {}
    for name in ("ngsi-ld-core-context-v1.8.jsonld", "ngsi-ld-core-context-v1.9.jsonld"):
        text = resources.files("broker.jsonld").joinpath("bundled", name).read_bytes()
        merged.update(orjson.loads(text)["@context"])
    return merged


@cache
def _bundled_index() -> dict[str, str]:
    text = resources.files("broker.jsonld").joinpath("bundled", "index.json").read_bytes()
    index: dict[str, str] = orjson.loads(text)
    return index


def bundled_document(url: str) -> dict[str, Any] | None:
    """A @context document shipped with the broker (Smart Data Models), or None."""
    name = _bundled_index().get(url)
    if name is None:
        return None
    document: dict[str, Any] = orjson.loads(
        resources.files("broker.jsonld").joinpath("bundled", name).read_bytes()
    )
    return document


@cache
def core_term_map() -> TermMap:
    """The term map of the core context alone (used when a request brings no @context)."""
    return compile_contexts([], core_document())
