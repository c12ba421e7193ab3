"""The one place that picks a representation, renders responses and parses request bodies.

Views hand plain data (dicts and lists of JSON types, Decimals, datetimes as strings)
to ``render``; they never build responses themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
from flask import Response, current_app, request
from flask.json.provider import JSONProvider
from werkzeug.exceptions import BadRequest, NotAcceptable, UnsupportedMediaType

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
}
DEFAULT_FORMATS: tuple[str, ...] = ("json",)
JSON_MEDIA_TYPES = ("application/json",)
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_json(data: Any) -> bytes:
    return orjson.dumps(data, default=_default)


class OrjsonProvider(JSONProvider):
    """Flask's JSON provider backed by orjson (the hot path of every read)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps_json(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def negotiate(formats: Sequence[str] = DEFAULT_FORMATS) -> str:
    """The format to answer in: ``?format=`` wins, then ``Accept`` (q-values, wildcards).

    Raises ``NotAcceptable`` (406) when the client accepts none of ``formats``.
    """
    wanted = request.args.get("format")
    if wanted:
        if wanted in formats:
            return wanted
        raise NotAcceptable(
            f"format={wanted!r} is not available here; choose one of: {', '.join(formats)}."
        )
    if not request.headers.get("Accept", "").strip():
        return formats[0]
    offered = [MEDIA_TYPES[f] for f in formats]
    best = request.accept_mimetypes.best_match(offered)
    if best is None:
        raise NotAcceptable(
            "None of the requested media types is available; this resource is served as: "
            + ", ".join(offered)
            + "."
        )
    return formats[offered.index(best)]


def render(
    data: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    resource: str | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    fmt: str | None = None,
) -> Response:
    """Render ``data`` in the negotiated representation. ``resource`` names the XML root."""
    fmt = fmt or negotiate(formats)
    body = dumps_json(data) if data is not None else b""
    response = current_app.response_class(body, status=status, mimetype=MEDIA_TYPES[fmt])
    if status == 204:
        response.set_data(b"")
        del response.headers["Content-Type"]
    response.vary.add("Accept")
    if headers:
        response.headers.update(headers)
    return response


def no_content() -> Response:
    return render(None, 204)


def parse_body() -> Any:
    """The request body as plain data, by its media type; ``None`` when there is no body.

    JSON (nesting is bounded by the parser: too deep is a 400), form-encoded and
    multipart forms. Anything else is a 415; a body that does not parse is a 400.
    """
    raw = request.get_data(cache=True)
    mimetype = request.mimetype
    if not raw and mimetype not in FORM_MEDIA_TYPES:
        return None
    if mimetype in JSON_MEDIA_TYPES or mimetype.endswith("+json"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"The JSON body does not parse: {exc}.") from exc
    if mimetype in FORM_MEDIA_TYPES:
        return {key: request.form.get(key) for key in request.form}
    raise UnsupportedMediaType(
        f"Content-Type {mimetype or '(none)'!r} is not accepted here; send "
        + ", ".join(JSON_MEDIA_TYPES + FORM_MEDIA_TYPES)
        + "."
    )
