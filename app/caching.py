"""Cached reads: Redis-served GETs that are never stale.

Keys. An entry's key is ``rc:GET <format> <scheme>://<host><path>?<sorted query>``: the
method's meaning (HEAD is GET without a body, so both read the GET entry; only GET
stores), the negotiated representation, the host (absolute ``next``/``Link`` URLs are
built from it), the path and the query string with its pairs sorted. Long keys are
hashed. Entries are Redis hashes: body, ETag, replayable headers, and the *generation*
they were rendered at, with the name of the generation key it belongs to.

Generations. ``rg:s:<store id>`` belongs to a store (its reads, its items list, its
items); ``rg:all`` to every store (the stores list shows item counts and names). A
write bumps both after its transaction commits (``catalog.on_store_write``; bulk
imports call ``catalog.store_changed``). A generation is a token never used before (a
random one per bump), not a counter: a generation key lost to a restart or an eviction
comes back as a fresh token, so it can never make an old entry match again.

Never stale. A miss reads the generation it depends on *before* the query (the store's
when the URL names it, else ``rg:all``), renders, and stores the bytes only if that
generation is still the same, atomically (``cache_backend.STORE_SCRIPT``). A write that
committed after the snapshot has bumped it (store refused) or will (entry dead on
arrival).

Hits are one round trip: the entry and its generation's current token read together
(``HMGET`` + ``GET`` when the URL names the generation, else a Lua lookup), by
``cache_backend.ReadCacheBackend``, the flask-caching backend this app's ``Cache`` built.
With rate limiting off they are served before Flask dispatches (``serve_fast``, from
``StoresFlask.wsgi_app``): no routing hooks, ORM, schema or rendering. With rate
limiting on, the limiter must count them, so they are served by ``cached`` after
Flask's ``before_request`` hooks; both paths build the same response.

Fails open. Any Redis error opens the process's short breaker (``RedisClient``): reads
go to the database, ``X-Cache: MISS``. A bump that fails is kept and retried by a
background thread until Redis takes it; this process caches nothing while it has bumps
pending. Redis
errors are caught here, never left to flask-caching's decorators (which re-raise them in
debug mode): a dead Redis is never a 500, debug or not.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl, urlencode

import redis
from flask import Flask, Response, current_app, has_app_context, request
from werkzeug.exceptions import HTTPException, NotAcceptable
from werkzeug.routing import MapAdapter
from werkzeug.wrappers import Response as WerkzeugResponse

from app import negotiation
from app.cache_backend import (
    GLOBAL_GEN,
    Hit,
    ReadCacheBackend,
    inm_matches,
    store_gen_key,
)
from app.errors import REQUEST_ID_RE
from app.extensions import cache as flask_cache
from app.extensions import redis_client
from app.services import catalog

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.1
MAX_KEY = 240
ENVIRON_SNAPSHOT = "stores.read_cache.snapshot"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def sorted_query(query_string: str) -> tuple[str, str | None]:
    """The query string with its pairs sorted, and the first ``format`` value."""
    if not query_string:
        return "", None
    pairs = parse_qsl(query_string, keep_blank_values=True)
    wanted = next((v for k, v in pairs if k == "format"), None)
    return urlencode(sorted(pairs)), wanted


def entry_key(environ: dict[str, Any], fmt: str, query: str) -> str:
    """The cache key of a read (same function for the fast and the Flask path)."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    raw = f"GET {fmt} {environ.get('wsgi.url_scheme', 'http')}://{host}{path}?{query}"
    if len(raw) > MAX_KEY:
        raw = "h " + hashlib.blake2b(raw.encode("utf-8", "surrogateescape")).hexdigest()
    return "rc:" + raw


@dataclass(frozen=True)
class Policy:
    """How one view's reads are cached: the formats to negotiate for the key."""

    formats: tuple[str, ...] | None = None

    def offered(self) -> tuple[str, ...]:
        return self.formats or tuple(negotiation.MEDIA_TYPES)


class ReadCache:
    """The read cache of one app: keys and routes, dependencies, pending bumps.

    Redis is reached only through ``backend``, the flask-caching backend that
    ``extensions.cache`` built for this app (``app.cache_backend``).
    """

    def __init__(self, app: Flask, backend: ReadCacheBackend) -> None:
        self.app = app
        self.ttl = int(app.config["SETTINGS"].cache_ttl)
        self.backend: ReadCacheBackend = backend
        self._pending: set[int] = set()
        self._pending_lock = threading.Lock()
        self._retrier: threading.Thread | None = None
        # negotiate() is a pure function of (formats, ?format=, Accept); the fast path has
        # no request context, so it uses the answers the Flask path has already computed.
        self._formats_memo: dict[tuple[tuple[str, ...], str | None, str], str] = {}
        self._routes: dict[str, tuple[Policy, dict[str, Any]] | None] = {}
        self._item_stores: dict[int, int] = {}
        self._adapter: MapAdapter | None = None
        # Called with the entry key after a miss rendered and before it is stored: tests
        # use it to commit a write at exactly that moment.
        self.before_store: list[Callable[[str], None]] = []

    # --- Redis health -----------------------------------------------------------------

    def available(self) -> bool:
        if not redis_client.available():
            return False
        return not self._pending or self._flush_pending()

    # --- generations ------------------------------------------------------------------

    def bump(self, store_id: int) -> None:
        """After a committed write to a store: new generations for it and for all lists."""
        if redis_client.available():  # don't make writes wait on a dead Redis
            try:
                self.backend.new_generations([store_id])
                return
            except redis.RedisError as exc:
                redis_client.failed(exc, "bump")
        with self._pending_lock:
            self._pending.add(store_id)
        self._start_retrier()

    def _flush_pending(self) -> bool:
        with self._pending_lock:
            pending = set(self._pending)
        if not pending:
            return True
        try:
            self.backend.new_generations(pending)
        except redis.RedisError as exc:
            redis_client.failed(exc, "retrying bumps")
            return False
        with self._pending_lock:
            self._pending -= pending
        log.info("read cache: %d pending generation bump(s) applied", len(pending))
        return True

    def _start_retrier(self) -> None:
        with self._pending_lock:
            if self._retrier is not None and self._retrier.is_alive():
                return
            self._retrier = threading.Thread(
                target=self._retry_loop, name="read-cache-bumps", daemon=True
            )
            self._retrier.start()

    def _retry_loop(self) -> None:
        while True:
            time.sleep(RETRY_SECONDS)
            if self._flush_pending():
                return

    # --- formats and routes (for the fast path) ---------------------------------------

    def fmt_for(self, policy: Policy, wanted: str | None, accept: str) -> str | None:
        """The negotiated format, from the Flask path's memo (None: not known yet)."""
        return self._formats_memo.get((policy.offered(), wanted, accept))

    def negotiate(self, policy: Policy, wanted: str | None) -> str:
        offered = policy.offered()
        fmt = negotiation.negotiate(offered)
        if len(self._formats_memo) > 1024:  # Accept is the client's: keep the memo bounded
            self._formats_memo.clear()
        self._formats_memo[(offered, wanted, request.headers.get("Accept", ""))] = fmt
        return fmt

    def policy_for(self, environ: dict[str, Any]) -> tuple[Policy, dict[str, Any]] | None:
        """The cached view a path routes to, and its arguments (memoised per path)."""
        path = environ.get("PATH_INFO", "")
        found = self._routes.get(path, False)
        if found is False:
            found = self._route(path)
            if len(self._routes) > 4096:  # paths are the client's: keep the memo bounded
                self._routes.clear()
            self._routes[path] = found
        return found  # type: ignore[return-value]

    def _route(self, path: str) -> tuple[Policy, dict[str, Any]] | None:
        if self._adapter is None:
            self._adapter = self.app.url_map.bind("localhost")
        try:
            endpoint, args = self._adapter.match(path, "GET")
        except HTTPException:
            return None
        view = self.app.view_functions.get(endpoint)
        get = getattr(getattr(view, "view_class", None), "get", None)
        policy = getattr(get, "read_cache_policy", None)
        return (policy, args) if policy is not None else None

    # --- dependencies -----------------------------------------------------------------

    def expected_dep(self, view_args: dict[str, Any]) -> str | None:
        """The generation a read's entry belongs to, if known before running the view."""
        if "store_id" in view_args:
            return store_gen_key(view_args["store_id"])
        if "item_id" in view_args:
            store_id = self._item_stores.get(view_args["item_id"])
            return store_gen_key(store_id) if store_id is not None else None
        return GLOBAL_GEN

    def dependency_key(self, view_args: dict[str, Any]) -> str:
        """The generation an entry belongs to, known once the view has run."""
        if "item_id" in view_args:
            # Already in this request's identity map: no query. Items never change store
            # (an id reused by another store is caught: the entry names its generation).
            store_id = catalog.get_item(view_args["item_id"]).store_id
            if len(self._item_stores) > 100_000:
                self._item_stores.clear()
            self._item_stores[view_args["item_id"]] = store_id
            return store_gen_key(store_id)
        return self.expected_dep(view_args) or GLOBAL_GEN

    def store(self, key: str, snapshot: tuple[str, str], dep_key: str, response: Response) -> bool:
        for hook in self.before_store:
            hook(key)
        return self.backend.store_entry(
            key,
            snapshot,
            dep_key,
            headers=response.headers.items(),
            etag=response.headers["ETag"],
            body=response.get_data(),
            ttl=self.ttl,
        )


# --- responses ----------------------------------------------------------------------------


def _request_id(environ: dict[str, Any]) -> str:
    given = environ.get("HTTP_X_REQUEST_ID", "")
    return given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex


def _hit_headers(hit: Hit, request_id: str | None) -> list[tuple[str, str]]:
    headers = [
        ("ETag", hit.etag),
        ("Cache-Control", "no-cache"),
        ("X-Cache", "HIT"),
    ]
    if request_id is not None:
        headers.append(("X-Request-ID", request_id))
    return headers


def _not_modified_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # RFC 9110 §15.4.5: a 304 repeats Vary (and the validators), no content headers.
    return [(k, v) for k, v in headers if k.lower() == "vary"]


def serve_fast(
    app: Flask, environ: dict[str, Any], start_response: Callable
) -> Iterable[bytes] | None:
    """Serve a hit before Flask dispatches; ``None`` lets Flask handle the request."""
    method = environ.get("REQUEST_METHOD")
    if method not in ("GET", "HEAD"):
        return None
    cache: ReadCache | None = app.extensions.get("read_cache")
    if (
        cache is None
        or app.config.get("RATELIMIT_ENABLED", True)
        or "HTTP_AUTHORIZATION" in environ
        or "HTTP_COOKIE" in environ
    ):
        return None
    matched = cache.policy_for(environ)
    if matched is None or not cache.available():
        return None
    policy, args = matched
    query, wanted = sorted_query(environ.get("QUERY_STRING", ""))
    fmt = cache.fmt_for(policy, wanted, environ.get("HTTP_ACCEPT", ""))
    if fmt is None:
        return None
    key = entry_key(environ, fmt, query)
    snapshot_key = _snapshot_key(args)
    try:
        found = cache.backend.lookup(
            key, environ.get("HTTP_IF_NONE_MATCH", ""), snapshot_key, cache.expected_dep(args)
        )
    except redis.RedisError as exc:
        redis_client.failed(exc, "lookup")
        return None
    if not isinstance(found, Hit):
        environ[ENVIRON_SNAPSHOT] = (key, snapshot_key, found)
        return None
    headers = _hit_headers(found, _request_id(environ))
    if found.body is None:
        start_response("304 NOT MODIFIED", _not_modified_headers(found.headers) + headers)
        return []
    body = found.body
    start_response("200 OK", found.headers + headers + [("Content-Length", str(len(body)))])
    return [] if method == "HEAD" else [body]


def _snapshot_key(view_args: dict[str, Any]) -> str:
    store_id = view_args.get("store_id")
    return store_gen_key(store_id) if store_id is not None else GLOBAL_GEN


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
    kept = [(k, v) for k, v in response.headers.items() if k.lower() == "vary"]
    kept += [(k, response.headers[k]) for k in ("ETag", "Cache-Control", "X-Cache")]
    return _not_modified(kept)


def _not_modified(headers: list[tuple[str, str]]) -> Response:
    response = current_app.response_class(status=304, headers=headers)
    del response.headers["Content-Type"]
    return response


def _hit_response(hit: Hit) -> Response:
    headers = hit.headers + _hit_headers(hit, None)
    if hit.body is None:
        return _not_modified(_not_modified_headers(hit.headers) + _hit_headers(hit, None))
    return current_app.response_class(hit.body, status=200, headers=headers)


def _cacheable(response: Response, fmt: str) -> bool:
    return (
        "Set-Cookie" not in response.headers
        and response.mimetype == negotiation.MEDIA_TYPES.get(fmt)
    )


def _serve(view: Callable[..., Any], policy: Policy, args: tuple, kwargs: dict) -> Any:
    """The Flask path of a cached read: hit, or render and store if still current."""
    cache: ReadCache | None = current_app.extensions.get("read_cache")
    if cache is None or request.method not in ("GET", "HEAD"):
        return view(*args, **kwargs)
    query, wanted = sorted_query(request.environ.get("QUERY_STRING", ""))
    try:
        fmt = cache.negotiate(policy, wanted)
    except NotAcceptable:
        return view(*args, **kwargs)  # the view answers 406 in its own words
    public = "Authorization" not in request.headers and "Cookie" not in request.headers
    if not public or not cache.available():
        return _finish(view(*args, **kwargs), "MISS")
    key = entry_key(request.environ, fmt, query)
    view_args = request.view_args or {}
    snapshot = request.environ.get(ENVIRON_SNAPSHOT)
    try:
        if snapshot is None or snapshot[0] != key:
            snapshot_key = _snapshot_key(view_args)
            found = cache.backend.lookup(
                key,
                request.headers.get("If-None-Match", ""),
                snapshot_key,
                cache.expected_dep(view_args),
            )
            if isinstance(found, Hit):
                return _hit_response(found)
            snapshot = (key, snapshot_key, found)
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


def _markable(response: Any) -> bool:
    """A complete 200 (a streamed body, such as CSV, is neither hashed nor stored)."""
    return (
        isinstance(response, WerkzeugResponse)
        and response.status_code == 200
        and not response.is_streamed
    )


def _finish(response: Any, x_cache: str) -> Any:
    return _conditional(_mark(response, x_cache)) if _markable(response) else response


def cached(view: Callable[..., Any] | None = None, *, formats: Sequence[str] | None = None):
    """Serve this read from Redis when possible; put it above the view's other decorators.

    ``formats``: the representations to negotiate for the key (default: every one
    ``negotiation`` knows); an entry only ever holds the representation its key names.
    """
    policy = Policy(tuple(formats) if formats else None)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return _serve(func, policy, args, kwargs)

        wrapper.read_cache_policy = policy  # type: ignore[attr-defined]
        return wrapper

    return decorate(view) if view is not None else decorate


# --- wiring -------------------------------------------------------------------------------

_hook_registered = False


def _on_store_write(store_id: int) -> None:
    if not has_app_context():
        return
    cache: ReadCache | None = current_app.extensions.get("read_cache")
    if cache is not None:
        cache.bump(store_id)


def init_app(app: Flask) -> None:
    """Create the app's read cache and hook generation bumps to every store write."""
    global _hook_registered
    backend = app.extensions["cache"][flask_cache]  # built by flask-caching from CACHE_TYPE
    if not isinstance(backend, ReadCacheBackend):
        raise RuntimeError(f"CACHE_TYPE must name {ReadCacheBackend.__module__}.ReadCacheBackend")
    app.extensions["read_cache"] = ReadCache(app, backend)
    if not _hook_registered:
        catalog.on_store_write(_on_store_write)
        _hook_registered = True
