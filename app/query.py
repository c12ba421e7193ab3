"""One value, one place: every query parameter and every body field takes one value.

The rule lives here and nowhere else: the Flask path answers ``422`` from a
``before_request`` hook, and the read cache's fast path (which runs before Flask) declines
a request that breaks it, so such a request never reaches a cache lookup. Keys are built
from the pairs this module returns, so two spellings of a repeated parameter can never
share (or poison) an entry. The body parsers (``app.negotiation``, ``xmlmap``) build
their objects with ``unique``: a repeated JSON key, XML element or form field is the same
``422``, never the first or the last value silently kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar
from urllib.parse import parse_qsl

from flask import Flask, request

from app.services.errors import Invalid

V = TypeVar("V")


class RepeatedParameter(ValueError):
    """A query parameter was given more than once."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def one_value_pairs(query_string: str) -> list[tuple[str, str]]:
    """The query's ``(name, value)`` pairs; raises ``RepeatedParameter`` on a repeat."""
    if not query_string:
        return []
    pairs = parse_qsl(query_string, keep_blank_values=True)
    seen: set[str] = set()
    for name, _value in pairs:
        if name in seen:
            raise RepeatedParameter(name)
        seen.add(name)
    return pairs


def repeated(name: str, kind: str = "field") -> Invalid:
    """The ``422`` for ``name`` given more than once (``kind``: field or parameter)."""
    message = f"Give {name!r} once: this {kind} takes one value."
    return Invalid(
        f"The request has invalid fields: {name}.", errors=[{"field": name, "message": message}]
    )


def unique(pairs: Iterable[tuple[str, V]]) -> dict[str, V]:
    """A body object's ``(name, value)`` pairs as a dict; a repeated name is a ``422``.

    Also a ``json.loads`` ``object_pairs_hook``."""
    out: dict[str, V] = {}
    for name, value in pairs:
        if name in out:
            raise repeated(name)
        out[name] = value
    return out


def _refuse_repeated() -> None:
    # Unknown routes and wrong methods keep their 404/405: only a routed request is judged.
    if request.routing_exception is not None:
        return
    try:
        one_value_pairs(request.environ.get("QUERY_STRING", ""))
    except RepeatedParameter as exc:
        raise repeated(exc.name, "parameter") from None


def init_app(app: Flask) -> None:
    """Answer ``422`` to a repeated query parameter, before any view or cache lookup."""
    app.before_request(_refuse_repeated)
