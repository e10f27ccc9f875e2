"""Paging of query results (clauses 6.3.10, 6.3.13): the page asked for and the links to its neighbours."""

from __future__ import annotations

from aiohttp import web

from broker.edge import Paging, paging

__all__ = ["Paging", "page_links", "paging"]


def page_links(
    request: web.Request, page: Paging, more: bool, *, media_type: str = "application/json"
) -> list[str]:
    """Link rel=prev/next to the neighbouring pages (clause 6.3.10), prev first as the ETSI test
    suite reads them; the path as requested, and ``media_type`` the response's own."""
    links = []
    if page.offset > 0 and page.limit > 0:
        url = request.rel_url.update_query(offset=max(page.offset - page.limit, 0), limit=page.limit)
        links.append(f'<{url}>; rel="prev"; type="{media_type}"')
    if more and page.limit > 0:
        url = request.rel_url.update_query(offset=page.offset + page.limit, limit=page.limit)
        links.append(f'<{url}>; rel="next"; type="{media_type}"')
    return links
