"""Fixtures: a real Redis server per session, SQLite or PostgreSQL, the app and clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import count

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text

from app import create_app
from app.config import normalize_database_url
from app.extensions import db
from tests.services import (
    Process,
    RedisServer,
    ping_workers,
    start_web,
    start_worker,
    wait_until,
)
from tests.services import (
    service_env as service_env_for,
)

_names = count(1)
TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        return normalize_database_url(given)
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def app(redis_server: RedisServer, database_url: str) -> Iterator[Flask]:
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server.url,
            "RATELIMIT_ENABLED": "false",
            "SECRET_KEY": TEST_SECRET,
        }
    )
    app.config["TESTING"] = True
    with app.app_context():
        _reset_schema()
        upgrade()  # the real migrations, as the release phase runs them
    yield app


def _reset_schema() -> None:
    """Start from an empty database (PostgreSQL's may hold a previous run's tables)."""
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            db.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


@pytest.fixture(autouse=True)
def _clean_state(request) -> Iterator[None]:
    yield
    if "app" not in request.fixturenames:
        return
    flask_app: Flask = request.getfixturevalue("app")
    with flask_app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
    redis_server = request.getfixturevalue("redis_server")
    if redis_server.proc is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_names)}"


class Account:
    """A registered, logged-in user and the headers that authenticate as them."""

    def __init__(self, client: FlaskClient, username: str | None = None) -> None:
        self.username = username or unique_name()
        self.password = "correct horse battery"
        response = client.post(
            "/v1/auth/register", json={"username": self.username, "password": self.password}
        )
        assert response.status_code == 201, response.json
        self.id = response.json["id"]
        tokens = client.post(
            "/v1/auth/login", json={"username": self.username, "password": self.password}
        ).json
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@pytest.fixture
def alice(client: FlaskClient) -> Account:
    return Account(client)


@pytest.fixture
def bob(client: FlaskClient) -> Account:
    return Account(client)


@pytest.fixture
def store(client: FlaskClient, alice: Account) -> dict:
    response = client.post(
        "/v1/stores", json={"name": unique_name("Store ")}, headers=alice.headers
    )
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def service_env(database_url: str, redis_server: RedisServer, app: Flask) -> dict[str, str]:
    """Environment for a child process (gunicorn, celery) sharing this test's DB and Redis.

    Depends on ``app`` so the schema exists before any child starts.
    """
    return service_env_for(database_url, redis_server.url, SECRET_KEY=TEST_SECRET)


@pytest.fixture
def live_server(service_env: dict[str, str], tmp_path) -> Iterator:
    """Factory: ``live_server(workers=2, **env)`` starts gunicorn as the Procfile does."""
    started: list[Process] = []

    def start(*, workers: int = 1, **extra: str) -> str:
        proc, base = start_web(
            {**service_env, **extra}, tmp_path / f"web{len(started)}.log", workers=workers
        )
        started.append(proc)
        return base

    start.started = started  # type: ignore[attr-defined]  # the processes, for signals and logs
    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def celery_worker(service_env: dict[str, str], app: Flask, tmp_path) -> Iterator:
    """Factory: ``celery_worker(concurrency=1, **env)`` starts a real worker and waits for it."""
    started: list[Process] = []
    celery = app.extensions["celery"]

    def start(*, concurrency: int = 1, **extra: str) -> Process:
        proc = start_worker(
            {**service_env, **extra},
            tmp_path / f"worker{len(started)}.log",
            concurrency=concurrency,
        )
        started.append(proc)

        def answers() -> bool:
            if proc.proc and proc.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{proc.output()[-3000:]}")
            return bool(ping_workers(celery))

        wait_until(answers, timeout=60, what="celery worker")
        return proc

    yield start
    for proc in started:
        proc.stop()
