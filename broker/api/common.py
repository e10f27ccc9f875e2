"""The names api/subscriptions.py still reads from here; every other handler imports
broker.api.request, .representation and .paging (and broker.edge) directly. Goes once
api/subscriptions.py does the same."""

from __future__ import annotations

from broker.api.paging import page_links, paging
from broker.api.representation import accepted, json_response, no_content, options
from broker.api.request import link_context, read_body, term_map
from broker.edge import tenant_of

__all__ = [
    "accepted",
    "json_response",
    "link_context",
    "no_content",
    "options",
    "page_links",
    "paging",
    "read_body",
    "tenant_of",
    "term_map",
]
