"""Cached reads: Redis-served GETs that are never stale, rate limits included.

- ``keys``: an entry's key and the generation keys entries belong to;
- ``generations``: bumps on ``app.signals.store_changed`` (sent by the services after
  commit), retried while Redis is away;
- ``backend``: the flask-caching backend (``CACHE_TYPE``) and its Redis scripts;
- ``fastpath``: hits served before Flask dispatches, the rate limit counted in the same
  round trip;
- ``flaskpath``: the same reads inside Flask (misses, first-seen representations).

Fails open: any Redis error opens the process's short breaker (``RedisClient``) and reads
go to the database (``X-Cache: MISS``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask

from app.caching import flaskpath
from app.caching.backend import ReadCacheBackend
from app.caching.fastpath import serve_fast
from app.caching.readcache import ReadCache
from app.extensions import cache as flask_cache

__all__ = ["ReadCache", "cached", "init_app", "serve_fast"]


def cached(view: Callable[..., Any]) -> Callable[..., Any]:
    """Serve this read from Redis when possible; put it above the view's other decorators.

    An entry only ever holds the representation its key names (``readcache.STORED``).
    """

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return flaskpath.serve(view, args, kwargs)

    wrapper.read_cache = True  # type: ignore[attr-defined]  # found by the fast path's router
    return wrapper


def init_app(app: Flask) -> None:
    """Create the app's read cache; its generations follow the services' signals."""
    backend = app.extensions["cache"][flask_cache]  # built by flask-caching from CACHE_TYPE
    if not isinstance(backend, ReadCacheBackend):
        raise RuntimeError(f"CACHE_TYPE must name {ReadCacheBackend.__module__}.ReadCacheBackend")
    read_cache = ReadCache(app, backend)
    read_cache.generations.listen(app)
    app.extensions["read_cache"] = read_cache
