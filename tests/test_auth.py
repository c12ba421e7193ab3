"""Accounts and tokens end to end: register, login, refresh, logout, me, bad tokens."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
import redis
import requests
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import event

from app.extensions import db
from app.services import sessions
from tests.conftest import TEST_SECRET, Account, unique_name
from tests.problems import assert_invalid, assert_problem, assert_unauthorized
from tests.services import wait_until

PASSWORD = "correct horse battery"


def _register(client, username, password=PASSWORD, **extra):
    return client.post(
        "/v1/auth/register", json={"username": username, "password": password, **extra}
    )


def _login(client, username, password=PASSWORD):
    return client.post("/v1/auth/login", json={"username": username, "password": password})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- register ---------------------------------------------------------------------------


def test_register_creates_an_account_and_never_echoes_the_password(client):
    name = unique_name("new.user-")
    response = _register(client, name)
    assert response.status_code == 201
    assert response.json == {"id": response.json["id"], "username": name}
    assert isinstance(response.json["id"], int)


def test_register_taken_username_is_409(client):
    name = unique_name()
    assert _register(client, name).status_code == 201
    assert_problem(_register(client, name, "another password"), 409)


@pytest.mark.parametrize(
    "username",
    ["ab", "x" * 41, "has space", "semi;colon", "ünïcode", "", "slash/name"],
)
def test_register_rejects_bad_usernames(client, username):
    assert_invalid(_register(client, username), "username")


def test_register_accepts_the_username_bounds_and_charset(client):
    for name in ("abc", "A" * 40, "a_b.c-D9"):
        assert _register(client, name, "12345678").status_code == 201, name


def test_register_rejects_short_passwords(client):
    assert_invalid(_register(client, unique_name(), "1234567"), "password")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"username", "password"}),
        ({"username": "someone"}, {"password"}),
        ({"password": PASSWORD}, {"username"}),
        ({"username": "someone", "password": PASSWORD, "admin": True}, {"admin"}),
        ({"username": 123, "password": PASSWORD}, {"username"}),
    ],
)
def test_register_names_missing_and_unknown_fields(client, body, fields):
    assert_invalid(client.post("/v1/auth/register", json=body), *fields)


def test_register_with_an_empty_body_names_the_missing_fields(client):
    response = client.post("/v1/auth/register", data=b"", content_type="application/json")
    assert_invalid(response, "username", "password")


def test_register_and_login_accept_form_bodies(client):
    name = unique_name()
    form = {"username": name, "password": PASSWORD}
    assert client.post("/v1/auth/register", data=form).status_code == 201
    response = client.post("/v1/auth/login", data=form, content_type="multipart/form-data")
    assert response.status_code == 200, response.json


# --- login ------------------------------------------------------------------------------


def test_login_gives_a_token_pair(client, app):
    account = Account(client)
    response = _login(client, account.username)
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == app.config["SETTINGS"].access_token_minutes * 60
    me = client.get("/v1/auth/me", headers=_bearer(body["access_token"]))
    assert me.json == {"id": account.id, "username": account.username}


def test_wrong_password_and_unknown_user_get_the_same_401(client):
    account = Account(client)
    wrong = _login(client, account.username, "not the password")
    unknown = _login(client, unique_name("ghost"), "not the password")
    bodies = []
    for response in (wrong, unknown):
        body = assert_problem(response, 401)
        bodies.append({k: v for k, v in body.items() if k not in ("request_id", "instance")})
        assert "access_token" not in body
    assert bodies[0] == bodies[1]
    assert wrong.headers.get("WWW-Authenticate") == unknown.headers.get("WWW-Authenticate")


def test_login_validates_its_body(client):
    assert_invalid(client.post("/v1/auth/login", json={"username": "x"}), "password")


# --- tokens -----------------------------------------------------------------------------


def test_refresh_gives_a_new_working_access_token(client, alice):
    response = client.post("/v1/auth/refresh", headers=_bearer(alice.refresh_token))
    assert response.status_code == 200, response.json
    assert response.json["token_type"] == "Bearer"
    new = response.json["access_token"]
    assert client.get("/v1/auth/me", headers=_bearer(new)).json["username"] == alice.username


def test_access_token_is_refused_as_refresh_token(client, alice):
    assert_unauthorized(client.post("/v1/auth/refresh", headers=alice.headers))


def test_refresh_token_is_refused_as_access_token(client, alice):
    assert_unauthorized(client.get("/v1/auth/me", headers=_bearer(alice.refresh_token)))
    response = client.post(
        "/v1/stores", json={"name": unique_name("S")}, headers=_bearer(alice.refresh_token)
    )
    assert_unauthorized(response)


def test_logout_revokes_the_access_and_the_refresh_token(client, alice):
    other_session = _login(client, alice.username).json
    assert client.post("/v1/auth/logout", headers=alice.headers).status_code == 204
    assert_unauthorized(client.get("/v1/auth/me", headers=alice.headers))
    assert_unauthorized(client.post("/v1/auth/refresh", headers=_bearer(alice.refresh_token)))
    assert_unauthorized(client.post("/v1/auth/logout", headers=alice.headers))
    # Only that session: another login of the same user still works.
    assert (
        client.get("/v1/auth/me", headers=_bearer(other_session["access_token"])).status_code == 200
    )


def test_logout_survives_a_redis_flush(client, alice, redis_server):
    assert client.post("/v1/auth/logout", headers=alice.headers).status_code == 204
    redis.Redis.from_url(redis_server.url).flushall()
    assert_unauthorized(client.get("/v1/auth/me", headers=alice.headers))
    assert_unauthorized(client.post("/v1/auth/refresh", headers=_bearer(alice.refresh_token)))


def _sid(token: str) -> str:
    return pyjwt.decode(token, options={"verify_signature": False})["sid"]


def test_logout_is_published_to_the_redis_blocklist(client, alice, redis_server):
    rdb = redis.Redis.from_url(redis_server.url)
    assert client.post("/v1/auth/logout", headers=alice.headers).status_code == 204
    assert rdb.hget(sessions.BLOCKLIST, _sid(alice.access_token)) is not None
    assert rdb.ttl(sessions.BLOCKLIST) <= sessions.REBUILD_SECONDS


def test_token_checks_use_redis_not_the_revocations_table(app, client, alice, redis_server):
    assert client.get("/v1/auth/me", headers=alice.headers).status_code == 200  # loads it
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(3):
            assert client.get("/v1/auth/me", headers=alice.headers).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements, "the user is still loaded from the database"
    assert not [s for s in statements if "revoked_sessions" in s]
    # A flushed blocklist is rebuilt from the table on the next check.
    redis.Redis.from_url(redis_server.url).flushall()
    assert client.get("/v1/auth/me", headers=alice.headers).status_code == 200
    assert redis.Redis.from_url(redis_server.url).hget(sessions.BLOCKLIST, sessions.LOADED)


def test_logout_while_redis_is_down_is_honoured_then_and_after_it_returns(
    client, alice, redis_server
):
    redis_server.stop()
    try:
        assert client.post("/v1/auth/logout", headers=alice.headers).status_code == 204
        assert_unauthorized(client.get("/v1/auth/me", headers=alice.headers))
    finally:
        redis_server.start()
    rdb = redis.Redis.from_url(redis_server.url)
    sid = _sid(alice.access_token)

    def rebuilt() -> bool:
        assert_unauthorized(client.get("/v1/auth/me", headers=alice.headers))
        return rdb.hget(sessions.BLOCKLIST, sid) is not None

    wait_until(rebuilt, timeout=10, interval=0.2, what="the blocklist rebuilt from the table")
    assert_unauthorized(client.post("/v1/auth/refresh", headers=_bearer(alice.refresh_token)))


def test_logout_then_a_refreshed_token_is_refused_too(client, alice):
    fresh = client.post("/v1/auth/refresh", headers=_bearer(alice.refresh_token)).json
    assert client.post("/v1/auth/logout", headers=alice.headers).status_code == 204
    assert_unauthorized(client.get("/v1/auth/me", headers=_bearer(fresh["access_token"])))


def test_logout_is_honoured_by_every_process(live_server):
    base = live_server(workers=2)
    name = unique_name()
    with requests.Session() as http:
        creds = {"username": name, "password": PASSWORD}
        assert http.post(base + "/v1/auth/register", json=creds, timeout=10).status_code == 201
        tokens = http.post(base + "/v1/auth/login", json=creds, timeout=10).json()
    access, refresh = _bearer(tokens["access_token"]), _bearer(tokens["refresh_token"])
    logout = requests.post(base + "/v1/auth/logout", headers=access, timeout=10)
    assert logout.status_code == 204
    # A new connection each time, so both gunicorn workers answer some of these.
    for _ in range(30):
        assert_unauthorized(requests.get(base + "/v1/auth/me", headers=access, timeout=10))
        again = requests.post(base + "/v1/auth/refresh", headers=refresh, timeout=10)
        assert_unauthorized(again)


def test_expired_token_is_401(client, app, alice):
    with app.app_context():
        token = create_access_token(
            identity=str(alice.id),
            additional_claims={"sid": "a" * 32},
            expires_delta=timedelta(seconds=-5),
        )
    body = assert_unauthorized(client.get("/v1/auth/me", headers=_bearer(token)))
    assert "expired" in body["detail"]
    with app.app_context():
        refresh = create_refresh_token(
            identity=str(alice.id),
            additional_claims={"sid": "a" * 32},
            expires_delta=timedelta(seconds=-5),
        )
    assert_unauthorized(client.post("/v1/auth/refresh", headers=_bearer(refresh)))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_alg_none_token_is_401(client, alice):
    now = int(time.time())
    claims = {
        "sub": str(alice.id),
        "sid": "b" * 32,
        "type": "access",
        "fresh": False,
        "iat": now,
        "nbf": now,
        "jti": "j",
        "exp": now + 600,
    }
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert_unauthorized(client.get("/v1/auth/me", headers=_bearer(token)))
    assert_unauthorized(client.post("/v1/stores", json={"name": "x"}, headers=_bearer(token)))


def test_token_signed_with_another_key_or_algorithm_is_401(client, alice):
    now = int(time.time())
    claims = {"sub": str(alice.id), "sid": "c" * 32, "type": "access", "fresh": False}
    claims |= {"iat": now, "nbf": now, "jti": "j", "exp": now + 600}
    forged = pyjwt.encode(claims, "another-secret-key-of-sufficient-length!", algorithm="HS256")
    assert_unauthorized(client.get("/v1/auth/me", headers=_bearer(forged)))
    # The right key but an algorithm the server does not accept (pinned to HS256).
    other_alg = pyjwt.encode(claims, TEST_SECRET * 2, algorithm="HS512")
    assert_unauthorized(client.get("/v1/auth/me", headers=_bearer(other_alg)))
    # Sanity check: the same claims signed properly are accepted.
    good = pyjwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert client.get("/v1/auth/me", headers=_bearer(good)).status_code == 200


def test_token_without_session_id_is_refused(client, alice):
    now = int(time.time())
    claims = {"sub": str(alice.id), "type": "access", "fresh": False}
    claims |= {"iat": now, "nbf": now, "jti": "j", "exp": now + 600}
    token = pyjwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert_unauthorized(client.get("/v1/auth/me", headers=_bearer(token)))


def test_token_naming_no_existing_user_is_refused(client, app):
    with app.app_context():
        token = create_access_token(identity="999999", additional_claims={"sid": "d" * 32})
    assert_unauthorized(client.get("/v1/auth/me", headers=_bearer(token)))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Token abc",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer a.b.c extra",
    ],
)
def test_missing_or_malformed_authorization_is_401_with_challenge(client, header):
    headers = {} if header is None else {"Authorization": header}
    assert_unauthorized(client.get("/v1/auth/me", headers=headers))
    assert_unauthorized(client.post("/v1/auth/logout", headers=headers))


def test_me_needs_a_token(client):
    assert_unauthorized(client.get("/v1/auth/me"))


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(client, alice, store, scheme):
    auth = {"Authorization": f"{scheme} {alice.access_token}"}
    assert client.get("/v1/auth/me", headers=auth).json["username"] == alice.username
    response = client.patch(f"/v1/stores/{store['id']}", json={"name": "Renamed"}, headers=auth)
    assert response.status_code == 200, response.json
    job = client.post(
        f"/v1/stores/{store['id']}/imports",
        data=b"name,price\nTea,1\n",
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert job.status_code == 202, job.json
    for path in ("", "/errors"):
        response = client.get(f"/v1/jobs/{job.json['id']}{path}", headers=auth)
        assert response.status_code == 200, (path, response.json)
    refresh = {"Authorization": f"{scheme} {alice.refresh_token}"}
    assert client.post("/v1/auth/refresh", headers=refresh).status_code == 200
    assert client.post("/v1/auth/logout", headers=auth).status_code == 204
    assert_unauthorized(client.get("/v1/auth/me", headers=auth))


def test_the_bearer_scheme_is_case_insensitive_on_the_fast_paths(live_server):
    """With rate limits on, job polls are answered before Flask."""
    base = live_server(workers=1, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="1000 per minute")
    creds = {"username": unique_name("live"), "password": PASSWORD}
    assert requests.post(base + "/v1/auth/register", json=creds, timeout=10).status_code == 201
    token = requests.post(base + "/v1/auth/login", json=creds, timeout=10).json()["access_token"]
    auth = {"Authorization": f"bearer {token}"}
    store = requests.post(base + "/v1/stores", json={"name": "Lower"}, headers=auth, timeout=10)
    assert store.status_code == 201, store.text
    job = requests.post(
        f"{base}/v1/stores/{store.json()['id']}/imports",
        data=b"name,price\nTea,1\n",
        headers={**auth, "Content-Type": "text/csv"},
        timeout=10,
    )
    assert job.status_code == 202, job.text
    for _ in range(2):
        poll = requests.get(f"{base}/v1/jobs/{job.json()['id']}", headers=auth, timeout=10)
        assert poll.status_code == 200 and poll.json()["id"] == job.json()["id"], poll.text
