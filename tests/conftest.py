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
from tests.services import RedisServer

_names = count(1)


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
            "SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256",
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
