"""HTML out: the browsable API. One page per resource, the raw JSON beside it.

``resources/<resource>.html`` renders a resource when it exists, else
``resources/generic.html`` (a table for a list, a field list for one record), so a
resource added elsewhere (``job``, ``jobs``, ``errors``) is browsable as soon as it is
rendered. ``context_for(resource)`` registers a function adding what a page shows
beyond the resource itself (a store page lists the store's items). Jinja escapes
everything; nothing user-supplied is marked safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import render_template, request

from app.representations.xmlmap import singular

ContextFunction = Callable[[Any], Mapping[str, Any]]
_extra_context: dict[str, ContextFunction] = {}
# Scripts and styles come from /static only: an injected <script> could not run anyway.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def context_for(resource: str) -> Callable[[ContextFunction], ContextFunction]:
    """Decorator: ``fn(data) -> dict`` adds template variables to ``resource``'s page."""

    def register(fn: ContextFunction) -> ContextFunction:
        _extra_context[resource] = fn
        return fn

    return register


def link(path: str, **args: Any) -> str:
    """``path`` with ``args``, keeping ``?format=html`` when this page was asked for so."""
    query = {k: v for k, v in args.items() if v is not None}
    if request.args.get("format") == "html":
        query["format"] = "html"
    return f"{path}?{urlencode(query)}" if query else path


def _pretty_json(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode()


def page(data: Any, resource: str | None, status: int = 200) -> str:
    """The HTML page for ``data``, a representation of ``resource``."""
    resource = resource or "response"
    rows = data.get(resource) if isinstance(data, Mapping) else None
    context: dict[str, Any] = {
        "data": data,
        "resource": resource,
        "rows": rows if isinstance(rows, list) else None,
        "row_name": singular(resource),
        "status": status,
        "raw_json": _pretty_json(data),
        "link": link,
        "first_page": link(
            request.path,
            **{k: v for k, v in request.args.items() if k not in ("cursor", "format")},
        ),
        "csv_query": urlencode(
            {
                **{k: v for k, v in request.args.items() if k not in ("cursor", "limit")},
                "format": "csv",
            }
        ),
    }
    if resource in _extra_context:
        context.update(_extra_context[resource](data))
    return render_template([f"resources/{resource}.html", "resources/generic.html"], **context)
