"""The two peers of the cached read, served by gunicorn with the service's own settings.

- ``bare()``: a bare Flask ``def`` view returning the cached page's exact bytes
  (``BENCH_BODY_FILE``): what the cached hit must at least match.
- ``stock()``: what a Flask user would write with the stock libraries: flask-caching's
  ``@cache.cached`` (``RedisCache``) on a ``def`` view, behind Flask-Limiter with Redis
  storage and the same default limit (``RATELIMIT_DEFAULT``) as the service.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response
from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address


def _body() -> bytes:
    with open(os.environ["BENCH_BODY_FILE"], "rb") as file:
        return file.read()


def bare() -> Flask:
    body = _body()
    app = Flask("bare")

    @app.get("/page")
    def page() -> Response:
        return Response(body, mimetype="application/json")

    return app


def bare_redis() -> Flask:
    """The control: the bare view plus the one Redis round trip any shared cache's hit
    needs (a GET of the same bytes, hiredis, one pooled connection per greenlet)."""
    body = _body()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.set("bare-redis:page", body)
    app = Flask("bare_redis")

    @app.get("/page")
    def page() -> Response:
        return Response(client.get("bare-redis:page"), mimetype="application/json")

    return app


def stock() -> Flask:
    body = _body()
    app = Flask("stock")
    app.config.update(
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=os.environ["REDIS_URL"],
        CACHE_DEFAULT_TIMEOUT=300,
        CACHE_KEY_PREFIX="stock:",
    )
    cache = Cache(app)
    Limiter(
        get_remote_address,
        app=app,
        default_limits=[os.environ["RATELIMIT_DEFAULT"]],
        storage_uri=os.environ["REDIS_URL"],
        key_prefix="stock",
    )

    @app.get("/page")
    @cache.cached()
    def page() -> Response:
        return Response(body, mimetype="application/json")

    return app
