"""Unbound extension singletons; ``create_app`` binds them to an application."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Flask
from flask_caching import Cache
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from app import routing
from app.config import redis_connection_options
from app.schemas import ProblemSchema


class Base(DeclarativeBase):
    # Named constraints, so Alembic can alter them (SQLite batch mode needs names).
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


log = logging.getLogger(__name__)

POOL_WAIT_SECONDS = 2.0


class RedisClient:
    """One Redis connection pool per process, shared by every part that talks to Redis.

    It also holds the process's breaker: after a Redis error, the parts that can do
    without Redis (read cache, session blocklist) skip it for ``BREAKER_SECONDS``
    instead of waiting out a socket timeout on every request.
    """

    BREAKER_SECONDS = 1.0

    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._down_until = 0.0

    def init_app(self, app: Flask) -> None:
        settings = app.config["SETTINGS"]
        options: dict[str, Any] = redis_connection_options(settings.redis_url, settings)
        # Bounded: however many requests wait at once (hundreds of followers under
        # gevent), this process opens at most this many connections; the others queue.
        pool = redis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=POOL_WAIT_SECONDS,
            **options,
        )
        self._client = redis.Redis(connection_pool=pool)
        app.extensions["redis"] = self

    def available(self) -> bool:
        """False for a moment after an error: callers fall back instead of waiting."""
        return time.monotonic() >= self._down_until

    def failed(self, exc: Exception, what: str) -> None:
        """Record a Redis error (logged once per outage) and open the breaker."""
        if self.available():
            log.warning("Redis unavailable (%s): %s; falling back", what, exc)
        self._down_until = time.monotonic() + self.BREAKER_SECONDS

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("RedisClient used before init_app")
        return self._client


class ProblemApi(Api):
    """flask-smorest's Api, documenting RFC 9457 problems as the error body."""

    ERROR_SCHEMA = ProblemSchema  # the default error responses in /openapi.json

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_converter(routing.JobIdConverter, routing.job_id_schema)

    def _register_error_handlers(self) -> None:
        # app.errors registers the one error layer; flask-smorest's JSON handler is not used.
        return None


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
cache = Cache()
jwt = JWTManager()
limiter = Limiter(key_func=get_remote_address)
api = ProblemApi()
redis_client = RedisClient()
