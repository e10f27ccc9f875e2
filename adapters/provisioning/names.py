"""Entity ids of provisioned devices: IoT Agent names made NGSI-LD URIs, and entityNameExp templates.

NGSI-LD needs a URI. A name that is not one (the IoT Agents' default is "<entity_type>:<device_id>")
becomes "urn:ngsi-ld:<entity_type>:<device_id>", a leading "<entity_type>:" not repeated; names
starting with "urn:" or "<scheme>://" are kept as given.
"""

from __future__ import annotations

import re

from adapters.provisioning.fields import WRONG_SYNTAX
from broker.errors import BadRequestData
from broker.model.parse import check_uri

NAME_VARIABLES = ("id", "type", "entityType", "service", "subservice")
_SCHEME_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# One term of an entityNameExp and what follows it: '+' or the end.
_TERM = re.compile(r"\s*(?:'([^']*)'|\"([^\"]*)\"|([A-Za-z_]\w*))\s*(\+|$)")

# (is_literal, text): a quoted string, or the name of a variable.
Template = tuple[tuple[bool, str], ...]


def entity_uri(name: str, entity_type: str) -> str:
    """``name`` as an NGSI-LD entity id: kept when it is a URN or URL, else urn:ngsi-ld:<type>:<id>."""
    if name.lower().startswith("urn:") or _SCHEME_URL.match(name):
        return check_uri(name, "entity_name")
    rest = name[len(entity_type) + 1 :] if name.startswith(entity_type + ":") else name
    return check_uri(f"urn:ngsi-ld:{entity_type}:{rest}", "entity_name")


def name_template(source: str) -> Template:
    """An entityNameExp as parts: quoted strings and variables joined by '+'.

    The IoT Agents evaluate JEXL here; the subset kept covers the usual
    ``'urn:ngsi-ld:Gauge:' + id``. Measures cannot take part: the entity id must not depend on a
    message, or one device would scatter over entities.
    """
    parts: list[tuple[bool, str]] = []
    position, ended = 0, False
    while not ended:
        match = _TERM.match(source, position)
        variable = None if match is None else match.group(3)
        if match is None or (variable is not None and variable not in NAME_VARIABLES):
            raise BadRequestData(
                f"entityNameExp {source!r}: only quoted strings and {', '.join(NAME_VARIABLES)}"
                " joined by '+' are supported",
                name=WRONG_SYNTAX,
            )
        literal = match.group(1) if match.group(1) is not None else match.group(2)
        parts.append((False, variable) if variable is not None else (True, literal or ""))
        position, ended = match.end(), match.group(4) == ""
    return tuple(parts)


def render_name(template: Template, values: dict[str, str]) -> str:
    return "".join(text if literal else values[text] for literal, text in template)
