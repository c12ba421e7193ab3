"""The Stores API: ``create_app`` builds the Flask application in small named steps."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from app import aio, bodies, caching, errors, heads, job_polls, query, ratelimit, routing, security
from app.api import register_blueprints
from app.config import Settings
from app.extensions import api, cache, db, limiter, migrate, redis_client
from app.negotiation import OrjsonProvider
from app.representations.openapi import MediaTypesPlugin
from app.services import job_notices, job_state
from workers import celery_init_app


class StoresFlask(Flask):
    """Flask, with async views on pooled event loops and cache hits served first."""

    def async_to_sync(self, func: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        return aio.to_sync(func)

    def wsgi_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        # Inside ProxyFix (which wraps this method), so hits see the real host and scheme.
        # An oversized head goes to Flask, which refuses it (app.heads).
        if heads.oversized(environ) is not None:
            return super().wsgi_app(environ, start_response)
        fast = caching.serve_fast(self, environ, start_response)
        if fast is None:
            fast = job_polls.serve_fast(self, environ, start_response)
        return fast if fast is not None else super().wsgi_app(environ, start_response)


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment; ``config`` overrides environment variables."""
    settings = Settings.from_env({**os.environ, **(config or {})})
    app = StoresFlask(__name__, instance_relative_config=True)
    app.json = OrjsonProvider(app)
    app.config.update(settings.flask_config())
    _configure_logging(settings.log_level)
    bodies.init_app(app)
    heads.init_app(app)
    routing.init_app(app)  # before any route is added
    _trust_proxies(app, settings.trusted_proxy_hops)
    _init_extensions(app)
    register_blueprints(app)
    errors.init_app(app)
    query.init_app(app)
    celery_init_app(app)
    return app


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=False
    )


def _trust_proxies(app: Flask, hops: int) -> None:
    # With 0 hops a client's own X-Forwarded-For changes nothing, rate limits included.
    # The Host header is never taken from X-Forwarded-Host: Heroku's router keeps Host and
    # passes a client's own X-Forwarded-Host through, which would let it pick our URLs.
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=hops
        )


def _init_extensions(app: Flask) -> None:
    os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "..", "migrations"))
    redis_client.init_app(app)
    # The limiter shares the process's one Redis connection pool.
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {
        "connection_pool": redis_client.client.connection_pool
    }
    limiter.init_app(app)
    ratelimit.init_app(app)
    cache.init_app(app)
    caching.init_app(app)
    job_state.init_app(app)
    job_notices.init_app(app)
    job_polls.init_app(app)
    security.init_app(app)
    # The spec lists every media type negotiation serves, not only JSON.
    api.init_app(app, spec_kwargs={"extra_plugins": [MediaTypesPlugin()]})
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """SQLite: enforce foreign keys, and let the web and worker processes share the file."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
