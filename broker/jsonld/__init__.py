"""JSON-LD @context handling: the bundled core context, term maps, remote context resolution."""

from broker.jsonld.context import CORE_URL, TermMap, core_term_map, is_core_url
from broker.jsonld.resolver import ContextRef, ContextResolver

__all__ = ["CORE_URL", "ContextRef", "ContextResolver", "TermMap", "core_term_map", "is_core_url"]
