"""Request heads larger than Heroku's router lets through: ``414`` and ``431`` problems.

Heroku's router refuses a request line or a header line over 8192 bytes itself (its own
error, before us). gunicorn accepts header lines up to twice that (``gunicorn.conf.py``),
so a client that reaches gunicorn some other way (locally, another proxy) gets a problem
document from here rather than gunicorn's ``text/html`` page, up to gunicorn's own
limits; beyond those gunicorn answers before the app (``docs/decisions.md``).

The check runs before the fast paths (``StoresFlask.wsgi_app`` sends an oversized request
to Flask) and first of all in Flask (``before_request``), so the answer is one problem
document, whatever the endpoint.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException, RequestHeaderFieldsTooLarge, RequestURITooLarge

# Heroku's router: https://devcenter.heroku.com/articles/http-routing ("HTTP Validation
# and Restrictions").
REQUEST_LINE_MAX = 8192
HEADER_LINE_MAX = 8192
_UNPREFIXED = ("CONTENT_TYPE", "CONTENT_LENGTH")


def _request_line(environ: dict[str, Any]) -> int:
    """The request line's length (gunicorn and werkzeug keep the target as sent)."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if target is None:
        target = f"{environ.get('PATH_INFO', '')}?{environ.get('QUERY_STRING', '')}"
    method, protocol = environ.get("REQUEST_METHOD", ""), environ.get("SERVER_PROTOCOL", "")
    return len(method) + len(target) + len(protocol) + 2


def oversized(environ: dict[str, Any]) -> HTTPException | None:
    """The ``414`` or ``431`` a request's head deserves, or ``None`` when it fits.

    A header line is ``name: value``; a header the client sent on several lines reaches
    the app joined, and is measured so."""
    if _request_line(environ) > REQUEST_LINE_MAX:
        return RequestURITooLarge(
            f"The request line is longer than {REQUEST_LINE_MAX} bytes; send a shorter URL."
        )
    for key, value in environ.items():
        if key.startswith("HTTP_") or key in _UNPREFIXED:
            name = key[5:] if key.startswith("HTTP_") else key
            if len(name) + 2 + len(value) > HEADER_LINE_MAX:
                header = name.replace("_", "-").title()
                return RequestHeaderFieldsTooLarge(
                    f"The {header} header is longer than {HEADER_LINE_MAX} bytes."
                )
    return None


def _refuse_oversized() -> None:
    refusal = oversized(request.environ)
    if refusal is not None:
        raise refusal


def init_app(app: Flask) -> None:
    """Refuse an oversized head before anything else looks at the request."""
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_oversized)
