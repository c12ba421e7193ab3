"""Settings from the environment (12-factor). Every variable the service reads is here.

README lists the same variables; keep the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from redis.backoff import NoBackoff
from redis.retry import Retry

from app import sqlite_cooperative
from app.aio import gevent_patched

DEFAULT_SECRET = "dev-insecure-secret-change-me"
PRODUCTION_NAMES = {"production", "prod"}


class ConfigError(RuntimeError):
    """The environment describes a configuration the service refuses to run with."""


def normalize_database_url(url: str) -> str:
    """Rewrite Heroku-style ``postgres://`` URLs and pick the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass
class Settings:
    """The documented list of settings, read once from the environment."""

    env: str = "development"
    secret_key: str = DEFAULT_SECRET
    jwt_secret_key: str = DEFAULT_SECRET
    database_url: str = "sqlite:///stores.db"
    redis_url: str = "redis://localhost:6379/0"
    broker_url: str = ""
    redis_ssl_cert_reqs: str = "none"
    redis_socket_timeout: float = 0.5
    redis_max_connections: int = 6
    body_timeout: float = 10.0
    max_content_length: int = 1024 * 1024
    max_import_bytes: int = 100 * 1024 * 1024
    cache_ttl: int = 300
    ratelimit_default: str = "300 per minute"
    ratelimit_auth: str = "10 per minute"
    ratelimit_enabled: bool = True
    trusted_proxy_hops: int = 0
    job_stale_after: int = 120
    job_max_attempts: int = 5
    job_retention_days: int = 7
    job_events_seconds: int = 300
    import_chunk_rows: int = 100_000
    import_batch_rows: int = 0  # 0: the database's own default (app.services.apply)
    access_token_minutes: int = 15
    refresh_token_days: int = 30
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from ``os.environ`` (or the given mapping) and validate them."""
        env = dict(os.environ if env is None else env)
        app_env = (env.get("APP_ENV") or env.get("FLASK_ENV") or "development").lower()
        secret = env.get("SECRET_KEY") or DEFAULT_SECRET
        settings = cls(
            env=app_env,
            secret_key=secret,
            jwt_secret_key=env.get("JWT_SECRET_KEY") or secret,
            database_url=normalize_database_url(env.get("DATABASE_URL") or cls.database_url),
            redis_url=env.get("REDIS_URL") or cls.redis_url,
            broker_url=env.get("CELERY_BROKER_URL") or env.get("REDIS_URL") or cls.redis_url,
            redis_ssl_cert_reqs=env.get("REDIS_SSL_CERT_REQS", cls.redis_ssl_cert_reqs),
            redis_socket_timeout=float(env.get("REDIS_SOCKET_TIMEOUT") or 0.5),
            redis_max_connections=_int(env, "REDIS_MAX_CONNECTIONS", cls.redis_max_connections),
            body_timeout=float(env.get("BODY_TIMEOUT") or cls.body_timeout),
            max_content_length=_int(env, "MAX_CONTENT_LENGTH", cls.max_content_length),
            max_import_bytes=_int(env, "MAX_IMPORT_BYTES", cls.max_import_bytes),
            cache_ttl=_int(env, "CACHE_TTL", cls.cache_ttl),
            ratelimit_default=env.get("RATELIMIT_DEFAULT") or cls.ratelimit_default,
            ratelimit_auth=env.get("RATELIMIT_AUTH") or cls.ratelimit_auth,
            ratelimit_enabled=(env.get("RATELIMIT_ENABLED", "true").lower() != "false"),
            trusted_proxy_hops=_int(env, "TRUSTED_PROXY_HOPS", 0),
            job_stale_after=_int(env, "JOB_STALE_AFTER", 120),
            job_max_attempts=_int(env, "JOB_MAX_ATTEMPTS", 5),
            job_retention_days=_int(env, "JOB_RETENTION_DAYS", 7),
            job_events_seconds=_int(env, "JOB_EVENTS_SECONDS", cls.job_events_seconds),
            import_chunk_rows=_int(env, "IMPORT_CHUNK_ROWS", cls.import_chunk_rows),
            import_batch_rows=_int(env, "IMPORT_BATCH_ROWS", cls.import_batch_rows),
            access_token_minutes=_int(env, "ACCESS_TOKEN_MINUTES", 15),
            refresh_token_days=_int(env, "REFRESH_TOKEN_DAYS", 30),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
        )
        settings.validate()
        return settings

    @property
    def is_production(self) -> bool:
        return self.env in PRODUCTION_NAMES

    def validate(self) -> None:
        """Refuse placeholder secrets in production and nonsense limits anywhere."""
        if self.is_production:
            for name, value in (
                ("SECRET_KEY", self.secret_key),
                ("JWT_SECRET_KEY", self.jwt_secret_key),
            ):
                if value == DEFAULT_SECRET or len(value) < 32:
                    raise ConfigError(
                        f"{name} must be set to a random value of at least 32 characters "
                        "when APP_ENV is production"
                    )
        if self.trusted_proxy_hops < 0:
            raise ConfigError("TRUSTED_PROXY_HOPS must be >= 0")
        if self.max_import_bytes <= 0 or self.max_content_length <= 0:
            raise ConfigError("MAX_IMPORT_BYTES and MAX_CONTENT_LENGTH must be positive")
        if self.redis_max_connections < 2 or self.body_timeout <= 0:
            raise ConfigError("REDIS_MAX_CONNECTIONS must be >= 2 and BODY_TIMEOUT > 0")
        if min(self.job_stale_after, self.job_max_attempts, self.import_chunk_rows) <= 0:
            raise ConfigError("JOB_STALE_AFTER, JOB_MAX_ATTEMPTS and IMPORT_CHUNK_ROWS must be > 0")
        if self.import_batch_rows < 0:
            raise ConfigError("IMPORT_BATCH_ROWS must be >= 0 (0: the database's default)")

    def flask_config(self) -> dict[str, Any]:
        """The Flask/extension configuration keys derived from these settings."""
        redis_options = redis_connection_options(self.redis_url, self)
        return {
            "SETTINGS": self,
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options(self.database_url),
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "JWT_SECRET_KEY": self.jwt_secret_key,
            "JWT_ALGORITHM": "HS256",
            "JWT_DECODE_ALGORITHMS": ["HS256"],
            "JWT_TOKEN_LOCATION": ["headers"],
            "JWT_ACCESS_TOKEN_EXPIRES": self.access_token_minutes * 60,
            "JWT_REFRESH_TOKEN_EXPIRES": self.refresh_token_days * 86400,
            "JWT_ERROR_MESSAGE_KEY": "detail",
            "RATELIMIT_ENABLED": self.ratelimit_enabled,
            "RATELIMIT_STORAGE_URI": self.redis_url,
            "RATELIMIT_STORAGE_OPTIONS": redis_options,
            "RATELIMIT_DEFAULT": self.ratelimit_default,
            # Off: Flask-Limiter would put the window's countdown in Retry-After on every
            # response; app.ratelimit writes RateLimit-* instead (one function, both paths).
            "RATELIMIT_HEADERS_ENABLED": False,
            "RATELIMIT_SWALLOW_ERRORS": True,
            "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
            "RATELIMIT_KEY_PREFIX": "rl",
            # flask-caching builds the read cache's backend (on the shared Redis pool).
            "CACHE_TYPE": "app.caching.backend.ReadCacheBackend",
            "CACHE_DEFAULT_TIMEOUT": self.cache_ttl,
            "CACHE_KEY_PREFIX": "fc:",
            "API_TITLE": "Stores API",
            "API_VERSION": "v1",
            "OPENAPI_VERSION": "3.0.3",
            "OPENAPI_URL_PREFIX": "/",
            "OPENAPI_JSON_PATH": "openapi.json",
            "JSON_SORT_KEYS": False,
        }


def redis_connection_options(url: str, settings: Settings) -> dict[str, Any]:
    """Options for every Redis client: short timeouts (fail fast) and TLS for ``rediss://``."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_socket_timeout,
        "health_check_interval": 30,
        # redis-py retries 3 times with backoff by default: a hung Redis would cost every
        # call 4 timeouts. One immediate retry still survives a dropped idle connection.
        "retry": Retry(NoBackoff(), 1),
    }
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = settings.redis_ssl_cert_reqs
    return options


SQLITE_LOCK_SECONDS = 30.0


def engine_options(url: str) -> dict[str, Any]:
    """Engine options per backend: pre-ping for servers, a lock timeout for SQLite (waited
    out cooperatively in a gevent worker: ``app.sqlite_cooperative``)."""
    if url.startswith("sqlite"):
        if gevent_patched():
            return {"connect_args": sqlite_cooperative.connect_args(SQLITE_LOCK_SECONDS)}
        return {"connect_args": {"timeout": SQLITE_LOCK_SECONDS}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5}
