"""One value, one place: every query parameter of this API takes one value.

The rule lives here and nowhere else: the Flask path answers ``422`` from a
``before_request`` hook, and the read cache's fast path (which runs before Flask) declines
a request that breaks it, so such a request never reaches a cache lookup. Keys are built
from the pairs this module returns, so two spellings of a repeated parameter can never
share (or poison) an entry.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Flask, Response, request

from app.errors import problem


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


def _refuse_repeated() -> Response | None:
    # Unknown routes and wrong methods keep their 404/405: only a routed request is judged.
    if request.routing_exception is not None:
        return None
    try:
        one_value_pairs(request.environ.get("QUERY_STRING", ""))
    except RepeatedParameter as exc:
        message = f"Give {exc.name!r} once: this parameter takes one value."
        return problem(
            422,
            f"The request has invalid fields: {exc.name}.",
            errors=[{"field": exc.name, "message": message}],
        )
    return None


def init_app(app: Flask) -> None:
    """Answer ``422`` to a repeated query parameter, before any view or cache lookup."""
    app.before_request(_refuse_repeated)
