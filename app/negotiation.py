"""The one place that picks a representation, renders responses and parses request bodies.

Views hand plain data (dicts and lists of JSON types, Decimals, datetimes as strings)
to ``render``; they never build responses themselves. ``render`` picks JSON, XML or
HTML (``csv_response`` streams CSV) from ``?format=`` or the ``Accept`` header:

- ``?format=json|xml|html|csv`` wins over ``Accept``; a format the resource does not
  offer is a ``406``;
- ``Accept`` is read as RFC 9110 §12.5.1 says: q-values, wildcards, and the most
  specific matching range deciding a type's quality; a range carrying parameters
  matches only when we serve those parameters (``charset=utf-8`` is the one we do);
  ties go to the more specific range, then to the server's order (JSON first);
- no ``Accept``, an empty one, or one with no valid range at all means JSON;
- every negotiated response carries ``Vary: Accept``.

Resources other modules add (``job``, ``jobs``, ``errors``) need nothing here: pass
``resource=`` and the XML mapping (``app.representations.xmlmap``) and the generic HTML
page apply. For a list also served as CSV, negotiate ``LIST_FORMATS`` and, when the
answer is ``"csv"``, return ``csv_response(columns, rows)`` (rows: an iterable of dicts,
consumed lazily inside the request context).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import orjson
from flask import Response, current_app, request, stream_with_context
from flask.json.provider import JSONProvider
from werkzeug.exceptions import BadRequest, NotAcceptable, UnsupportedMediaType

from app import query
from app.representations import csvstream, html, xmlmap

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "xml": "application/xml",
    "html": "text/html",
    "csv": "text/csv",
}
DEFAULT_FORMATS: tuple[str, ...] = ("json", "xml", "html")
LIST_FORMATS: tuple[str, ...] = ("json", "xml", "html", "csv")
PROBLEM_MEDIA: dict[str, tuple[str, ...]] = {
    "json": ("application/problem+json", "application/json"),
    "xml": ("application/problem+xml", "application/xml"),
}
JSON_MEDIA_TYPES = ("application/json",)
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
XML_MEDIA_TYPES = ("application/xml", "text/xml")
# What flask-smorest's ``@blp.doc`` takes to say an operation is also served as CSV.
CSV_DOC: dict[str, Any] = {"x-csv": True}
# The only media type parameter we serve: every body is UTF-8.
SERVED_PARAMS = {"charset": "utf-8"}
_QVALUE_RE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
_ELEMENT_RE = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')


# --- JSON -----------------------------------------------------------------------------


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


# --- choosing a representation --------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    """One element of an ``Accept`` header."""

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...]
    q: float

    @property
    def specificity(self) -> tuple[int, int, int]:
        return (self.type != "*", self.subtype != "*", len(self.params))

    def matches(self, media_type: str) -> bool:
        type_, subtype = media_type.split("/")
        return (
            self.type in ("*", type_)
            and self.subtype in ("*", subtype)
            and all(SERVED_PARAMS.get(name) == value for name, value in self.params)
        )


def _parse_range(element: str) -> MediaRange | None:
    media, *parts = (p.strip() for p in element.split(";"))
    type_, _, subtype = media.lower().partition("/")
    if not (_TOKEN_RE.match(type_) and _TOKEN_RE.match(subtype)):
        return None
    if type_ == "*" and subtype != "*":
        return None
    q, params = 1.0, []
    for part in parts:
        name, _, value = part.partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "q":
            if not _QVALUE_RE.match(value):
                return None
            q = float(value)
            break  # what follows q are accept-extensions, not media type parameters
        if name:
            params.append((name, value.lower() if name == "charset" else value))
    return MediaRange(type_, subtype, tuple(params), q)


def parse_accept(header: str) -> list[MediaRange]:
    """The valid media ranges of an ``Accept`` value; invalid elements are skipped."""
    ranges = (_parse_range(m.group(0)) for m in _ELEMENT_RE.finditer(header) if m.group(0).strip())
    return [r for r in ranges if r is not None]


def _quality(ranges: Sequence[MediaRange], media_type: str) -> tuple[float, tuple[int, ...]]:
    """The quality the client gives ``media_type``: that of the most specific range."""
    matching = [r for r in ranges if r.matches(media_type)]
    if not matching:
        return 0.0, ()
    best = max(matching, key=lambda r: r.specificity)
    return best.q, best.specificity


def choose(ranges: Sequence[MediaRange], offers: Mapping[str, Sequence[str]]) -> str | None:
    """The offered format the client prefers (``offers``: format -> its media types)."""
    best, best_key = None, (0.0, ())
    for fmt, media_types in offers.items():
        key = max(_quality(ranges, m) for m in media_types)
        if key[0] > 0 and key > best_key:
            best, best_key = fmt, key
    return best


def negotiate(
    formats: Sequence[str] = DEFAULT_FORMATS, *, media: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The format to answer in: ``?format=`` wins, then ``Accept`` (q-values, wildcards).

    Raises ``NotAcceptable`` (406) when the client accepts none of ``formats``.
    """
    offers = {f: (media or {}).get(f) or (MEDIA_TYPES[f],) for f in formats}
    wanted = request.args.get("format")
    if wanted:
        if wanted.lower() in formats:
            return wanted.lower()
        raise NotAcceptable(
            f"format={wanted!r} is not available here; choose one of: {', '.join(formats)}."
        )
    ranges = parse_accept(request.headers.get("Accept", ""))
    if not ranges:
        return formats[0]
    chosen = choose(ranges, offers)
    if chosen is None:
        raise NotAcceptable(
            "None of the requested media types is available; this resource is served as: "
            + ", ".join(m for f in formats for m in offers[f][:1])
            + "."
        )
    return chosen


def negotiate_problem() -> str:
    """``json`` or ``xml`` for an error; never raises (an error must always be sent)."""
    try:
        return negotiate(tuple(PROBLEM_MEDIA), media=PROBLEM_MEDIA)
    except NotAcceptable:
        return "json"


def refuse_unreadable_write() -> None:
    """Before a write: ``406`` now if no representation of its answer would be acceptable,
    so a refused answer never leaves a change behind."""
    if request.method in ("POST", "PUT", "PATCH"):
        negotiate(DEFAULT_FORMATS)


# --- rendering ------------------------------------------------------------------------


def _body(data: Any, fmt: str, resource: str | None, status: int) -> bytes:
    if fmt == "xml":
        return xmlmap.dumps(data, resource or "response", problem=resource == "problem")
    if fmt == "html":
        return html.page(data, resource, status).encode()
    if fmt == "csv":
        rows = data.get(resource, []) if isinstance(data, Mapping) else data
        columns = list(rows[0]) if rows else []
        return "".join(csvstream.lines(columns, rows)).encode()
    return dumps_json(data)


def render(
    data: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    resource: str | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    fmt: str | None = None,
) -> Response:
    """Render ``data`` in the negotiated representation. ``resource`` names the XML root
    and the HTML page (``store``, ``stores``, ``item``, ``items``, ``job``…)."""
    fmt = fmt or negotiate(formats)
    body = _body(data, fmt, resource, status) if data is not None and status != 204 else b""
    response = current_app.response_class(body, status=status, mimetype=MEDIA_TYPES[fmt])
    if status == 204:
        del response.headers["Content-Type"]
    if fmt == "html":
        response.headers["Content-Security-Policy"] = html.CONTENT_SECURITY_POLICY
    response.vary.add("Accept")
    if headers:
        response.headers.update(headers)
    return response


def no_content() -> Response:
    return render(None, 204, fmt="json")


def csv_response(
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    *,
    filename: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Stream ``rows`` as CSV (header row first, formula cells neutralised).

    ``rows`` is consumed while the body is sent, inside this request's context, so it may
    be a lazy database query (``catalog.iter_items``): memory stays flat however many.
    """
    body = stream_with_context(csvstream.lines(columns, rows))
    response = current_app.response_class(body, mimetype="text/csv")
    if filename:
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.vary.add("Accept")
    if headers:
        response.headers.update(headers)
    return response


# --- request bodies -------------------------------------------------------------------


def _parse_urlencoded(raw: bytes) -> dict[str, str]:
    # Strict, unlike werkzeug's parser: a body that is not UTF-8 is a 400, not mojibake.
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("The form body is not valid UTF-8.") from exc
    return query.unique(pairs)


def _parse_multipart(raw: bytes) -> dict[str, str]:
    form = query.unique((key, value) for key, values in request.form.lists() for value in values)
    # werkzeug decodes parts with errors="replace": a U+FFFD the client did not send
    # means the part was not UTF-8.
    if any("\ufffd" in v for v in form.values()) and "\ufffd".encode() not in raw:
        raise BadRequest("The form body is not valid UTF-8.")
    return form


def _parse_xml(raw: bytes) -> Any:
    try:
        return xmlmap.loads(raw)
    except xmlmap.XMLBodyError as exc:
        raise BadRequest(str(exc)) from exc


def _key_count(data: Any) -> int:
    """How many keys the objects in ``data`` hold, all levels (no recursion)."""
    count, stack = 0, [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            count += len(value)
            stack.extend(v for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, dict | list))
    return count


def _parse_json(raw: bytes) -> Any:
    """orjson, then one value per key (``query.unique``).

    orjson keeps the last of a repeated key. Each member of an object has one ``:``, so
    when the body holds no more colons than the keys orjson kept (the usual body: no
    colon inside a string), no key was repeated; otherwise the standard library reads the
    body again, building its objects with ``query.unique``.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The JSON body does not parse: {exc}.") from exc
    colons = raw.count(b":")
    if colons and colons > _key_count(data):
        try:
            json.loads(raw, object_pairs_hook=query.unique)
        except RecursionError as exc:  # within orjson's 1024 levels, deeper than Python's
            raise BadRequest("The JSON body is nested too deeply to be read.") from exc
    return data


def parse_body() -> Any:
    """The request body as plain data, by its media type; ``None`` when there is no body.

    JSON (orjson bounds nesting at 1024 levels: deeper is a 400), form-encoded and
    multipart forms, XML in the mapping of ``xmlmap``. Anything else is a 415; a body
    that does not parse (or is not UTF-8) is a 400; one over ``MAX_CONTENT_LENGTH``, 413;
    a field given twice (JSON key, form field, XML element) is a 422 naming it.
    """
    raw = request.get_data(cache=True)
    mimetype = request.mimetype
    if not raw and mimetype not in FORM_MEDIA_TYPES:
        return None
    if mimetype in JSON_MEDIA_TYPES or mimetype.endswith("+json"):
        return _parse_json(raw)
    if mimetype == "application/x-www-form-urlencoded":
        return _parse_urlencoded(raw)
    if mimetype == "multipart/form-data":
        return _parse_multipart(raw)
    if mimetype in XML_MEDIA_TYPES or mimetype.endswith("+xml"):
        return _parse_xml(raw)
    raise UnsupportedMediaType(
        f"Content-Type {mimetype or '(none)'!r} is not accepted here; send "
        + ", ".join(JSON_MEDIA_TYPES + FORM_MEDIA_TYPES + XML_MEDIA_TYPES[:1])
        + "."
    )
