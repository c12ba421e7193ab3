"""RFC 9457 problem details for every error, in the negotiated format; request ids."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, g, request
from flask_limiter.errors import RateLimitExceeded
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError

from app import negotiation, ratelimit
from app.extensions import db
from app.services.errors import ServiceError

log = logging.getLogger(__name__)
DATABASE_RETRY_AFTER = 5
PROBLEM_FORMATS = ("json", "xml")
PROBLEM_MEDIA_TYPES = {"json": "application/problem+json", "xml": "application/problem+xml"}
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def request_id() -> str:
    """This request's id: the client's ``X-Request-ID`` when sane, else a new one."""
    rid = g.get("request_id")
    if rid is None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        g.request_id = rid
    return rid


def flatten_messages(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """marshmallow/webargs messages (nested dicts of lists) as ``[{field, message}]``."""
    if isinstance(messages, Mapping):
        out: list[dict[str, str]] = []
        for key, value in messages.items():
            # webargs puts a location ("json", "query") at the top: not part of the name
            # marshmallow's "_schema" is the body as a whole (e.g. an array, not an object)
            name = (
                prefix
                if key in ("json", "query", "form", "view_args", "_schema") and not prefix
                else (f"{prefix}.{key}" if prefix else str(key))
            )
            out.extend(flatten_messages(value, name))
        return out
    if isinstance(messages, list | tuple):
        out = []
        for value in messages:
            out.extend(flatten_messages(value, prefix))
        return out
    return [{"field": prefix or "body", "message": str(messages)}]


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem document in JSON (or XML when negotiated), with the request id."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": request_id(),
    }
    if errors is not None:
        body["errors"] = errors
    # A 406 is always JSON (the contract): the client accepts nothing else we have.
    fmt = "json" if status == 406 else negotiation.negotiate_problem()
    response = negotiation.render(body, status, headers, resource="problem", fmt=fmt)
    response.mimetype = PROBLEM_MEDIA_TYPES[fmt]
    return response


# RFC 9110's names; Python before 3.13 still has the older ones for these.
_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def _phrase(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        return handle_unexpected(exc)
    headers: dict[str, str] = {}
    for name, value in exc.get_headers():
        if name.lower() in ("allow", "retry-after", "www-authenticate"):
            headers[name] = value
    errors = None
    data = getattr(exc, "data", None) or {}
    detail = exc.description or _phrase(status)
    if status == 422 and "messages" in data:
        errors = flatten_messages(data["messages"])
        detail = (
            "The request has invalid fields: "
            + ", ".join(sorted({e["field"] for e in errors}))
            + "."
        )
    elif status == 400 and "messages" in data:
        detail = "; ".join(e["message"] for e in flatten_messages(data["messages"]))
    if isinstance(exc, RateLimitExceeded):
        detail = f"Rate limit exceeded ({exc.description}). Try again later."
        headers["Retry-After"] = str(ratelimit.retry_after(ratelimit.current_window()))
    elif status == 413:
        detail = "The request body is larger than this endpoint accepts."
    elif status == 405:
        detail = f"{request.method} is not allowed here; allowed: {headers.get('Allow', '')}."
    elif status == 404 and exc.description == type(exc).description:
        detail = f"Nothing is at {request.path}."
    return problem(status, detail, errors=errors, headers=headers)


def handle_service_error(exc: ServiceError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem(exc.status, exc.detail, title=exc.title, errors=exc.errors, headers=headers)


def handle_database_unavailable(exc: Exception) -> Response:
    """Unreachable, locked or overloaded database: a transient 503, never a 500."""
    log.warning("database unavailable (request %s): %s", request_id(), exc)
    try:
        db.session.rollback()
    except Exception:  # the connection may be gone as well; the session is reset anyway
        log.debug("rollback after a database error failed", exc_info=True)
    return problem(
        503,
        f"The database is unavailable right now; retry in {DATABASE_RETRY_AFTER} seconds.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def handle_unexpected(exc: Exception) -> Response:
    original = getattr(exc, "original_exception", None) or exc
    log.error("unhandled error (request %s)", request_id(), exc_info=original)
    return problem(
        500,
        f"An unexpected error occurred. Quote request id {request_id()} when reporting it.",
        title="Internal Server Error",
    )


def init_app(app: Flask) -> None:
    """Register the one error layer and the request id on every response."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ServiceError, handle_service_error)
    for database_error in (OperationalError, InterfaceError, PoolTimeoutError):
        app.register_error_handler(database_error, handle_database_unavailable)
    app.register_error_handler(InternalServerError, handle_unexpected)
    app.register_error_handler(Exception, handle_unexpected)

    @app.before_request
    def _assign_request_id() -> None:
        request_id()

    @app.after_request
    def _add_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response
