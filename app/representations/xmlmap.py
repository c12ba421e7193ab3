"""The one XML mapping, both ways: plain data (dicts, lists, scalars) to XML and back.

The mapping (documented in the README, section "Representations"):

- the root element is named after the resource: ``<store>``, ``<item>``, ``<job>``;
  a list resource's root is its plural (``<stores>``) and the list itself is unwrapped
  into repeated singular children (``<store>…</store><store>…</store>``), followed by
  the other keys (``<next>``);
- every other key becomes a child element, in order; a nested object becomes an element
  holding its own keys;
- a list under a key becomes an element holding one element per member, named by the
  singular of the key (``PLURALS``, else the key without its trailing ``s``);
- ``null`` is an empty element with ``nil="true"``; ``true``/``false`` are text;
  numbers are written as JSON writes them; control characters XML 1.0 cannot carry
  become U+FFFD;
- a key that is not an XML name becomes ``<field name="the key">``;
- problems follow RFC 9457 appendix B: ``<problem xmlns="urn:ietf:rfc:7807">`` with
  array members as ``<i>`` elements.

Reading (request bodies) applies the same rules backwards and returns strings, which
the schemas convert like form fields. Repeated children are a list only when they are
named by the singular of their parent (``<errors><error/><error/></errors>``); any other
element given twice is a field given twice, refused (``app.query.unique``). It uses
defusedxml: DTDs, entities and external references are refused before anything is
expanded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from app import query

PROBLEM_NAMESPACE = "urn:ietf:rfc:7807"
PLURALS: dict[str, str] = {
    "stores": "store",
    "items": "item",
    "users": "user",
    "jobs": "job",
    "errors": "error",
    "checks": "check",
}
MAX_DEPTH = 32
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class XMLBodyError(ValueError):
    """The body is not XML this API accepts (malformed, a DTD or entity, too deep)."""


def register_plural(plural: str, singular: str) -> None:
    """Name the elements of a list resource (e.g. ``register_plural("imports", "import")``)."""
    PLURALS[plural] = singular


def singular(plural: str) -> str:
    if plural in PLURALS:
        return PLURALS[plural]
    return plural[:-1] if plural.endswith("s") and len(plural) > 1 else "item"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    # XML 1.0 cannot carry most control characters, not even as references.
    return _ILLEGAL_RE.sub("\ufffd", str(value))


def _child(parent: Element, key: str) -> Element:
    if _NAME_RE.match(key) and not key.lower().startswith("xml"):
        return SubElement(parent, key)
    return SubElement(parent, "field", {"name": key})


def _fill(element: Element, value: Any, key: str, problem: bool) -> None:
    if value is None:
        element.set("nil", "true")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _fill(_child(element, str(k)), v, str(k), problem)
    elif isinstance(value, list | tuple):
        name = "i" if problem else singular(key)
        for member in value:
            _fill(SubElement(element, name), member, name, problem)
    else:
        element.text = _text(value)


def dumps(data: Any, root: str, *, problem: bool = False) -> bytes:
    """``data`` as an XML document whose root element is ``root``."""
    element = Element(root, {"xmlns": PROBLEM_NAMESPACE} if problem else {})
    if isinstance(data, Mapping) and isinstance(data.get(root), list | tuple):
        # A list resource: its members are the root's children, then the other keys.
        name = singular(root)
        for member in data[root]:
            _fill(SubElement(element, name), member, name, problem)
        rest = {k: v for k, v in data.items() if k != root}
        _fill(element, rest, root, problem)
    else:
        _fill(element, data, root, problem)
    declaration = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    return declaration + tostring(element, encoding="unicode").encode()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read(element: Element, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise XMLBodyError(f"The XML body is nested deeper than {MAX_DEPTH} levels.")
    if element.get("nil") == "true":
        return None
    children = list(element)
    if not children:
        return element.text or ""
    names = [_local(c.tag) for c in children]
    if len(children) > 1 and set(names) == {singular(_local(element.tag))}:
        return [_read(c, depth + 1) for c in children]
    keys = (c.get("name", n) if n == "field" else n for c, n in zip(children, names, strict=True))
    return query.unique((key, _read(c, depth + 1)) for key, c in zip(keys, children, strict=True))


def loads(raw: bytes) -> Any:
    """A request body in the XML mapping as plain data (strings, dicts, lists, None)."""
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise XMLBodyError(
            "The XML body declares a DTD, an entity or an external reference; none is accepted."
        ) from exc
    except SafeET.ParseError as exc:
        raise XMLBodyError(f"The XML body does not parse: {exc}.") from exc
    data = _read(root, 0)
    if data == "":
        return {}
    return data
