"""Cached hits served before Flask dispatches, rate limit included, in one round trip.

``serve_fast`` runs from ``StoresFlask.wsgi_app`` (inside ProxyFix, so it sees the real
client address, host and scheme). For a request it can judge, one script
(``backend.LOOKUP_SCRIPT``) increments the client's fixed-window counters for the
endpoint (the very keys Flask-Limiter uses: ``ratelimit.Plan``) and reads the entry and
its generation. A hit is answered here: no routing hooks, ORM, schema or rendering.

Everything else goes to Flask, which then answers exactly as it would have:

- not judged here (nothing counted; Flask-Limiter counts): not GET/HEAD, credentials
  (``Authorization``, ``Cookie``), a path that is not a cached read, a repeated query
  parameter (Flask answers 422), a representation the Flask path has not negotiated yet
  or that is never stored, a limiter this path cannot mirror, Redis failing;
- counted here (the ``Counted`` state rides in the environ; Flask-Limiter skips the
  request, ``app.ratelimit`` raises its 429 when the budget is spent): a miss, which
  also carries the generation snapshot its render stores against.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Flask

from app import ratelimit
from app.caching.backend import Hit
from app.caching.keys import entry_key
from app.caching.readcache import STORED, ReadCache
from app.caching.responses import hit_headers, not_modified_headers
from app.errors import REQUEST_ID_RE
from app.extensions import redis_client
from app.query import RepeatedParameter, one_value_pairs

# (entry key, snapshot generation key, its token): a miss's lookup, reused by the view.
ENVIRON_SNAPSHOT = "stores.read_cache.snapshot"


def _request_id(environ: dict[str, Any]) -> str:
    given = environ.get("HTTP_X_REQUEST_ID", "")
    return given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex


def serve_fast(
    app: Flask, environ: dict[str, Any], start_response: Callable
) -> Iterable[bytes] | None:
    """Serve a hit before Flask dispatches; ``None`` lets Flask handle the request."""
    method = environ.get("REQUEST_METHOD")
    if method not in ("GET", "HEAD") or "HTTP_AUTHORIZATION" in environ:
        return None
    cache: ReadCache | None = app.extensions.get("read_cache")
    if cache is None or "HTTP_COOKIE" in environ:
        return None
    route = cache.route(environ.get("PATH_INFO", ""))
    if route is None or route.plan is None or not cache.available():
        return None
    try:
        pairs = one_value_pairs(environ.get("QUERY_STRING", ""))
    except RepeatedParameter:
        return None  # Flask's 422, counted by Flask-Limiter as any request
    wanted = next((v for k, v in pairs if k == "format"), None)
    fmt = cache.known_format(wanted, environ.get("HTTP_ACCEPT", ""))
    counters = route.plan.counters(environ)
    if fmt not in STORED or counters is None:
        return None
    key = entry_key(environ, fmt, pairs)
    try:
        found = cache.backend.lookup(
            key, environ.get("HTTP_IF_NONE_MATCH", ""), route.snapshot_key, counters
        )
    except redis.RedisError as exc:
        redis_client.failed(exc, "lookup")
        return None
    counted = route.plan.counted(found.counts)
    if counted is not None:
        environ[ratelimit.ENVIRON_COUNTED] = counted
    hit = found.found
    if not isinstance(hit, Hit):
        if isinstance(hit, str):
            environ[ENVIRON_SNAPSHOT] = (key, route.snapshot_key, hit)
        return None  # a miss, or a spent budget (429): Flask answers, counted already
    headers = [*hit_headers(hit), ("X-Request-ID", _request_id(environ))]
    if counted is not None:
        headers += ratelimit.headers(counted.window)
    if hit.body is None:
        start_response("304 NOT MODIFIED", not_modified_headers(hit.headers) + headers)
        return []
    body = hit.body
    start_response("200 OK", hit.headers + headers + [("Content-Length", str(len(body)))])
    return [] if method == "HEAD" else [body]
