"""The read cache of one app: its backend, generations, routes and negotiation memos."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter

from app import negotiation, ratelimit
from app.caching.backend import ReadCacheBackend
from app.caching.generations import Generations
from app.caching.keys import snapshot_key, store_gen_key
from app.extensions import db
from app.models import Item

# The formats an entry may hold. Negotiation offers every format (CSV included), so a
# request that prefers CSV gets a "csv" key, never stored: it can never be answered from
# a JSON entry that a view negotiating fewer formats would have chosen differently.
OFFERED = tuple(negotiation.MEDIA_TYPES)
STORED = frozenset(negotiation.DEFAULT_FORMATS)


@dataclass(frozen=True)
class Route:
    """A cached read a path routes to: its endpoint, view arguments and rate-limit plan."""

    endpoint: str
    args: Mapping[str, Any]
    snapshot_key: str
    plan: ratelimit.Plan | None  # None: the fast path cannot count it; Flask must


class ReadCache:
    """Redis is reached only through ``backend``, the flask-caching backend that
    ``extensions.cache`` built for this app (``app.caching.backend``)."""

    def __init__(self, app: Flask, backend: ReadCacheBackend) -> None:
        self.app = app
        self.ttl = int(app.config["SETTINGS"].cache_ttl)
        self.backend = backend
        self.generations = Generations(backend)
        # negotiate() is a pure function of (?format=, Accept); the fast path has no
        # request context, so it uses the answers the Flask path has already computed.
        self._formats: dict[tuple[str | None, str], str] = {}
        self._routes: dict[str, Route | None] = {}
        self._adapter: MapAdapter | None = None
        # Called with the entry key after a miss rendered and before it is stored: tests
        # use it to commit a write at exactly that moment.
        self.before_store: list[Callable[[str], None]] = []

    def available(self) -> bool:
        return self.generations.available()

    # --- formats --------------------------------------------------------------------

    def known_format(self, wanted: str | None, accept: str) -> str | None:
        """The negotiated format if the Flask path has met this request's kind before."""
        return self._formats.get((wanted, accept))

    def negotiate(self, wanted: str | None) -> str:
        fmt = negotiation.negotiate(OFFERED)
        if len(self._formats) > 1024:  # Accept is the client's: keep the memo bounded
            self._formats.clear()
        self._formats[(wanted, request.headers.get("Accept", ""))] = fmt
        return fmt

    # --- routes (for the fast path) ---------------------------------------------------

    def route(self, path: str) -> Route | None:
        """The cached read a path routes to (memoised per path), or ``None``."""
        found = self._routes.get(path, False)
        if found is False:
            found = self._route(path)
            if len(self._routes) > 4096:  # paths are the client's: keep the memo bounded
                self._routes.clear()
            self._routes[path] = found
        return found  # type: ignore[return-value]

    def _route(self, path: str) -> Route | None:
        if self._adapter is None:
            self._adapter = self.app.url_map.bind("localhost")
        try:
            endpoint, args = self._adapter.match(path, "GET")
        except HTTPException:
            return None
        view = self.app.view_functions.get(endpoint)
        get = getattr(getattr(view, "view_class", None), "get", None)
        if not getattr(get, "read_cache", False):
            return None
        plan = ratelimit.plan_for(self.app, endpoint)
        return Route(endpoint, args, snapshot_key(args), plan)

    # --- storing --------------------------------------------------------------------

    def dependency_key(self, view_args: dict[str, Any]) -> str:
        """The generation an entry belongs to, known once the view has run."""
        if "item_id" in view_args:
            # The view has just loaded it: the session's identity map answers, no query.
            # Items never change store (an id reused by another store is caught: the
            # entry names its generation).
            item = db.session.get(Item, view_args["item_id"])
            assert item is not None  # a 200 for this item was just rendered
            return store_gen_key(item.store_id)
        return snapshot_key(view_args)

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
