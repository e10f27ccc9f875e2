"""Secrets of a subscription's endpoint, shown as "***": stored and used in full, never given back.

An endpoint carries credentials: ``user:password@`` in its URI (an MQTT broker's login), query
parameters such as ``token=``, and receiverInfo / notifierInfo entries such as Authorization or
X-Auth-Token. Whoever may read a tenant's subscriptions need not learn them, and neither does
the broker's log. An update that sends a redacted value back unchanged keeps the stored secret
(``restore``), so a client can PATCH what it read without erasing the credentials.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Names of headers, notifierInfo keys and query parameters that hold credentials.
_SECRET = re.compile(
    r"auth|token|passw|pwd|secret|api[-_]?key|cookie|credential|session|signature|(^|[-_])key$",
    re.IGNORECASE,
)


def secret_name(name: str) -> bool:
    """Whether a header, notifierInfo key or query parameter called ``name`` holds a credential."""
    return bool(_SECRET.search(name))


def redact_uri(uri: str) -> str:
    """``uri`` with its password and secret-looking query values replaced by ***."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return uri
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(secret_name(k) for k, _ in pairs):
            query = urlencode([(k, MASK if secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_entries(entries: Any) -> Any:
    if not isinstance(entries, list):
        return entries
    return [
        {**e, "value": MASK}
        if isinstance(e, dict) and isinstance(e.get("key"), str) and secret_name(e["key"]) and "value" in e
        else e
        for e in entries
    ]


def redact_endpoint(endpoint: Any) -> Any:
    """The Endpoint member of a subscription body (clause 5.2.15) as it is shown."""
    if not isinstance(endpoint, dict):
        return endpoint
    shown = dict(endpoint)
    if isinstance(shown.get("uri"), str):
        shown["uri"] = redact_uri(shown["uri"])
    for member in ("receiverInfo", "notifierInfo"):
        if member in shown:
            shown[member] = _redact_entries(shown[member])
    return shown


def redact_body(body: dict[str, Any]) -> dict[str, Any]:
    """A subscription body with its endpoint's secrets shown as ***."""
    notification = body.get("notification")
    if not isinstance(notification, dict) or "endpoint" not in notification:
        return body
    return {**body, "notification": {**notification, "endpoint": redact_endpoint(notification["endpoint"])}}


def restore(new: Any, stored: Any) -> Any:
    """``new`` endpoint with the values it sends back redacted (as GET showed them) taken from ``stored``."""
    if not isinstance(new, dict) or not isinstance(stored, dict):
        return new
    kept = dict(new)
    uri, old_uri = kept.get("uri"), stored.get("uri")
    if isinstance(uri, str) and isinstance(old_uri, str) and uri == redact_uri(old_uri) and MASK in uri:
        kept["uri"] = old_uri
    for member in ("receiverInfo", "notifierInfo"):
        entries, old = kept.get(member), stored.get(member)
        if isinstance(entries, list) and isinstance(old, list):
            old_values = {e.get("key"): e.get("value") for e in old if isinstance(e, dict)}
            kept[member] = [
                {**e, "value": old_values[e.get("key")]}
                if isinstance(e, dict)
                and e.get("value") == MASK
                and isinstance(e.get("key"), str)
                and secret_name(e["key"])
                and e["key"] in old_values
                else e
                for e in entries
            ]
    return kept


def restore_body(merged: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """An updated subscription body whose endpoint secrets sent back as *** are kept as ``stored``."""
    new, old = merged.get("notification"), stored.get("notification")
    if not isinstance(new, dict) or not isinstance(old, dict) or "endpoint" not in new:
        return merged
    endpoint = restore(new["endpoint"], old.get("endpoint"))
    return {**merged, "notification": {**new, "endpoint": endpoint}}
