"""Configuration from the environment alone: production secrets, database and Redis URLs."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import celery_config
from app import create_app
from app.config import DEFAULT_SECRET, ConfigError, Settings, redis_connection_options

ROOT = Path(__file__).resolve().parent.parent
LONG = "s" * 48


@pytest.mark.parametrize("name", ["APP_ENV", "FLASK_ENV"])
@pytest.mark.parametrize(
    "secrets",
    [
        {},
        {"SECRET_KEY": DEFAULT_SECRET},
        {"SECRET_KEY": "short"},
        {"SECRET_KEY": "x" * 31},
        {"SECRET_KEY": LONG, "JWT_SECRET_KEY": "short"},
    ],
)
def test_production_refuses_default_or_short_secrets(monkeypatch, name, secrets):
    for var in ("APP_ENV", "FLASK_ENV", "SECRET_KEY", "JWT_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({name: "production", "DATABASE_URL": "sqlite://", **secrets})


def test_production_with_real_secrets_is_accepted():
    settings = Settings.from_env({"APP_ENV": "production", "SECRET_KEY": LONG})
    assert settings.is_production
    assert settings.jwt_secret_key == LONG
    config = settings.flask_config()
    assert config["SECRET_KEY"] == LONG and config["JWT_SECRET_KEY"] == LONG
    assert config["JWT_ALGORITHM"] == "HS256" and config["JWT_DECODE_ALGORITHMS"] == ["HS256"]


def test_development_allows_the_placeholder():
    assert Settings.from_env({}).secret_key == DEFAULT_SECRET


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example:5432/app", "postgresql+psycopg://u:p@db.example:5432/app"),
        ("postgresql://u:p@db.example/app", "postgresql+psycopg://u:p@db.example/app"),
        ("postgresql+psycopg://u@h/app", "postgresql+psycopg://u@h/app"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls_are_normalised(given, expected):
    settings = Settings.from_env({"DATABASE_URL": given})
    assert settings.database_url == expected
    assert settings.flask_config()["SQLALCHEMY_DATABASE_URI"] == expected


def test_default_database_is_a_sqlite_file():
    assert Settings.from_env({}).database_url.startswith("sqlite:///")


def test_rediss_urls_get_tls_options():
    url = "rediss://:pw@redis.example:6380/0"
    settings = Settings.from_env({"REDIS_URL": url})
    options = redis_connection_options(url, settings)
    assert options["ssl_cert_reqs"] == "none"  # Heroku Redis: self-signed certificates
    client = redis.Redis.from_url(url, **options)
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
    # the limiter (sharing the pool) and the Celery broker get TLS too
    assert settings.flask_config()["RATELIMIT_STORAGE_OPTIONS"]["ssl_cert_reqs"] == "none"
    assert settings.broker_url == url
    assert celery_config.broker_ssl_options(url) == {"ssl_cert_reqs": ssl.CERT_NONE}
    strict = Settings.from_env({"REDIS_URL": url, "REDIS_SSL_CERT_REQS": "required"})
    assert redis_connection_options(url, strict)["ssl_cert_reqs"] == "required"


def test_plain_redis_urls_get_no_tls_but_short_timeouts():
    settings = Settings.from_env({"REDIS_URL": "redis://h:6379/0", "REDIS_SOCKET_TIMEOUT": "0.2"})
    options = redis_connection_options(settings.redis_url, settings)
    assert "ssl_cert_reqs" not in options
    assert options["socket_timeout"] == 0.2 and options["socket_connect_timeout"] == 0.2
    assert celery_config.broker_ssl_options(settings.redis_url) is None


def test_separate_broker_url():
    settings = Settings.from_env({"REDIS_URL": "redis://a/0", "CELERY_BROKER_URL": "redis://b/1"})
    assert settings.redis_url == "redis://a/0" and settings.broker_url == "redis://b/1"


def test_settings_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "MAX_IMPORT_BYTES": "1000",
            "CACHE_TTL": "7",
            "RATELIMIT_DEFAULT": "5 per second",
            "RATELIMIT_AUTH": "2 per hour",
            "RATELIMIT_ENABLED": "false",
            "TRUSTED_PROXY_HOPS": "1",
            "JOB_STALE_AFTER": "30",
            "ACCESS_TOKEN_MINUTES": "5",
        }
    )
    assert (settings.max_import_bytes, settings.cache_ttl) == (1000, 7)
    assert settings.ratelimit_default == "5 per second" and settings.ratelimit_auth == "2 per hour"
    assert settings.ratelimit_enabled is False and settings.trusted_proxy_hops == 1
    assert settings.job_stale_after == 30
    assert settings.flask_config()["JWT_ACCESS_TOKEN_EXPIRES"] == 300


@pytest.mark.parametrize(
    "env",
    [
        {"TRUSTED_PROXY_HOPS": "-1"},
        {"TRUSTED_PROXY_HOPS": "one"},
        {"MAX_IMPORT_BYTES": "0"},
        {"MAX_CONTENT_LENGTH": "lots"},
        {"CACHE_TTL": "1.5"},
    ],
)
def test_nonsense_values_are_refused(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_every_variable_the_service_reads_is_in_the_readme():
    source = (ROOT / "app" / "config.py").read_text()
    names = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TRUSTED_PROXY_HOPS"} <= names
    readme = (ROOT / "README.md").read_text()
    first_cells = re.findall(r"^\| ([^|]+)\|", readme, flags=re.M)
    documented = {n for cell in first_cells for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    assert names <= documented, names - documented


def test_a_heroku_style_postgres_url_connects(database_url, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("needs TEST_DATABASE_URL=postgresql://…")
    heroku_url = "postgres://" + database_url.split("://", 1)[1]
    script = (
        "from sqlalchemy import text\n"
        "from app import create_app\n"
        "from app.extensions import db\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    print(db.engine.dialect.driver, db.session.execute(text('SELECT 1')).scalar())\n"
    )
    env = {**os.environ, "DATABASE_URL": heroku_url, "SECRET_KEY": "x" * 40}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["psycopg", "1"]
