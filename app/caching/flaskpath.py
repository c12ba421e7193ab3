"""The Flask path of a cached read: a hit, or a render stored if still current.

Never stale: a miss reads the generation it depends on *before* the query (the store's
when the URL names it, else ``rg:all``), renders, and stores the bytes only if that
generation is still the same, atomically (``backend.STORE_SCRIPT``). A write that
committed after the snapshot has bumped it (store refused) or will (entry dead on
arrival). Redis errors are caught here, never left to flask-caching's decorators (which
re-raise them in debug mode): a dead Redis is never a 500, debug or not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from flask import Response, current_app, request
from werkzeug.exceptions import NotAcceptable
from werkzeug.wrappers import Response as WerkzeugResponse

from app import negotiation
from app.caching.backend import Hit, inm_matches
from app.caching.fastpath import ENVIRON_SNAPSHOT
from app.caching.keys import entry_key, etag_of, snapshot_key
from app.caching.readcache import ReadCache
from app.caching.responses import hit_headers, not_modified_headers
from app.extensions import redis_client
from app.query import one_value_pairs


def serve(view: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Answer a cached read inside Flask (after the limiter and the query check)."""
    cache: ReadCache | None = current_app.extensions.get("read_cache")
    if cache is None or request.method not in ("GET", "HEAD"):
        return view(*args, **kwargs)
    # Repeats were refused (422) by app.query's before_request: this cannot raise.
    pairs = one_value_pairs(request.environ.get("QUERY_STRING", ""))
    try:
        fmt = cache.negotiate(next((v for k, v in pairs if k == "format"), None))
    except NotAcceptable:
        return view(*args, **kwargs)  # the view answers 406 in its own words
    public = "Authorization" not in request.headers and "Cookie" not in request.headers
    if not public or not cache.available():
        return _finish(view(*args, **kwargs), "MISS")
    key = entry_key(request.environ, fmt, pairs)
    view_args = request.view_args or {}
    snapshot: tuple[str, str, str] | None = request.environ.get(ENVIRON_SNAPSHOT)
    try:
        if snapshot is None or snapshot[0] != key:
            gen_key = snapshot_key(view_args)
            found = cache.backend.lookup(key, request.headers.get("If-None-Match", ""), gen_key)
            if isinstance(found.found, Hit):
                return _hit_response(found.found)
            assert isinstance(found.found, str)  # no counters: never a spent budget
            snapshot = (key, gen_key, found.found)
    except redis.RedisError as exc:
        redis_client.failed(exc, "lookup")
        return _finish(view(*args, **kwargs), "MISS")
    response = view(*args, **kwargs)
    if not _markable(response):
        return response
    _mark(response, "MISS")
    if request.method == "GET" and _cacheable(response, fmt):
        try:
            cache.store(key, (snapshot[1], snapshot[2]), cache.dependency_key(view_args), response)
        except redis.RedisError as exc:
            redis_client.failed(exc, "store")
    return _conditional(response)


def _mark(response: Response, x_cache: str) -> Response:
    if "ETag" not in response.headers:
        response.headers["ETag"] = etag_of(response.get_data())
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Cache"] = x_cache
    return response


def _conditional(response: Response) -> Response:
    """``304`` without a body when the client's ``If-None-Match`` names this ETag."""
    if not inm_matches(request.headers.get("If-None-Match", ""), response.headers["ETag"]):
        return response
    kept = not_modified_headers(list(response.headers.items()))
    kept += [(k, response.headers[k]) for k in ("ETag", "Cache-Control", "X-Cache")]
    return _not_modified(kept)


def _not_modified(headers: list[tuple[str, str]]) -> Response:
    response = current_app.response_class(status=304, headers=headers)
    del response.headers["Content-Type"]
    return response


def _hit_response(hit: Hit) -> Response:
    if hit.body is None:
        return _not_modified(not_modified_headers(hit.headers) + hit_headers(hit))
    return current_app.response_class(hit.body, status=200, headers=hit.headers + hit_headers(hit))


def _cacheable(response: Response, fmt: str) -> bool:
    return (
        "Set-Cookie" not in response.headers
        and response.mimetype == negotiation.MEDIA_TYPES.get(fmt)
    )


def _markable(response: Any) -> bool:
    """A complete 200 (a streamed body, such as CSV, is neither hashed nor stored)."""
    return (
        isinstance(response, WerkzeugResponse)
        and response.status_code == 200
        and not response.is_streamed
    )


def _finish(response: Any, x_cache: str) -> Any:
    return _conditional(_mark(response, x_cache)) if _markable(response) else response
