"""Every error is an RFC 9457 problem document; request ids; no internals ever leak."""

from __future__ import annotations

import json

import pytest
import requests
from flask_jwt_extended import create_access_token

from app import create_app
from tests.conftest import TEST_SECRET
from tests.problems import assert_invalid, assert_problem


def test_unknown_route_is_404(client):
    body = assert_problem(client.get("/no/such/thing"), 404)
    assert body["instance"] == "/no/such/thing"
    assert_problem(client.post("/v1/nothing", json={}), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/auth/register", {"POST"}),
        ("PUT", "/v1/stores", {"GET", "POST"}),
        ("POST", "/v1/items/1", {"GET", "PATCH", "PUT", "DELETE"}),
        ("PATCH", "/healthz", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_allow(client, method, path, allowed):
    response = client.open(path, method=method)
    body = assert_problem(response, 405)
    allow = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed <= allow and method not in allow
    assert method in body["detail"]


UNPARSABLE = [
    b"{",
    b'{"username": "x",}',
    b"[1, 2",
    b"nul",
    b'{"a": "\xff"}',
    b"[" * 5000 + b"]" * 5000,
]


def test_unparsable_json_is_400(client, alice):
    for raw in UNPARSABLE:
        response = client.post(
            "/v1/stores", data=raw, content_type="application/json", headers=alice.headers
        )
        assert_problem(response, 400, case=raw[:20])


def test_unsupported_media_type_is_415(client, alice):
    for content_type in ("text/plain", "application/octet-stream", "image/png", "text/csv"):
        response = client.post(
            "/v1/stores", data=b"name=x", content_type=content_type, headers=alice.headers
        )
        assert_problem(response, 415, case=content_type)


def test_body_without_content_type_is_415(client):
    response = client.post("/v1/auth/login", data=b'{"username": "a"}', content_type="")
    assert_problem(response, 415)


def test_body_that_is_not_an_object_is_422(client, alice):
    for payload, field in (([1, 2], "body"), ("x", "body"), (None, "name")):
        response = client.post(
            "/v1/stores",
            data=json.dumps(payload),
            content_type="application/json",
            headers=alice.headers,
        )
        assert_invalid(response, field, case=payload)


def test_too_large_body_is_413(client, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    big = json.dumps({"username": "x" * limit, "password": "p"})
    assert_problem(client.post("/v1/auth/register", data=big, content_type="application/json"), 413)
    form = {"username": "x" * limit, "password": "p"}
    assert_problem(client.post("/v1/auth/register", data=form), 413)


def test_too_large_body_is_413_through_gunicorn(live_server):
    base = live_server(MAX_CONTENT_LENGTH="1000")
    response = requests.post(
        base + "/v1/auth/register",
        data=json.dumps({"username": "x" * 5000, "password": "p" * 8}),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_problem(response, 413)


def test_validation_problem_lists_every_field(client, alice, store):
    response = client.post(
        f"/v1/stores/{store['id']}/items",
        json={"name": "", "price": -1, "quantity": "x", "extra": 1},
        headers=alice.headers,
    )
    body = assert_invalid(response, "name", "price", "quantity", "extra")
    assert body["type"] == "about:blank"
    for field in ("name", "price", "quantity", "extra"):
        assert field in body["detail"]


def test_problem_titles_are_consistent_for_422(client, alice, store):
    schema_error = client.post("/v1/stores", json={}, headers=alice.headers).json
    cursor_error = client.get("/v1/stores", query_string={"cursor": "zz"}).json
    assert schema_error["title"] == cursor_error["title"]


def test_every_error_is_a_problem_document(client, alice):
    responses = [
        client.get("/nope"),
        client.delete("/v1/stores"),
        client.post(
            "/v1/stores", data=b"{", content_type="application/json", headers=alice.headers
        ),
        client.post("/v1/stores", data=b"x", content_type="text/plain", headers=alice.headers),
        client.post("/v1/stores", json={}, headers=alice.headers),
        client.post("/v1/stores", json={"name": "x"}),
        client.get("/v1/stores/12345"),
        client.post("/v1/auth/login", json={"username": "nobody", "password": "whatever!"}),
    ]
    for response in responses:
        body = assert_problem(response, response.status_code)
        assert body["type"] == "about:blank"
        assert body["request_id"] == response.headers["X-Request-ID"]
        assert "Traceback" not in response.get_data(as_text=True)


def test_head_requests(client, store):
    response = client.head(f"/v1/stores/{store['id']}")
    assert response.status_code == 200 and response.data == b""
    assert response.headers["Content-Type"].startswith("application/json")
    response = client.head("/v1/stores")
    assert response.status_code == 200 and response.data == b""
    missing = client.head("/v1/stores/999999")
    assert missing.status_code == 404 and missing.data == b""
    assert client.head("/healthz").status_code == 200


def test_client_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["X-Request-ID"] == "trace-abc.123"
    problem = client.get("/nope", headers={"X-Request-ID": "trace-xyz"})
    assert problem.headers["X-Request-ID"] == "trace-xyz"
    assert problem.json["request_id"] == "trace-xyz"


@pytest.mark.parametrize("given", [None, "", "has spaces", "x" * 200, "new\\nline", "<script>"])
def test_request_id_is_generated_otherwise(client, given):
    headers = {} if given is None else {"X-Request-ID": given}
    first = client.get("/v1/stores", headers=headers).headers["X-Request-ID"]
    second = client.get("/v1/stores", headers=headers).headers["X-Request-ID"]
    assert first and second and first != second and first != given


def another_app(database_url: str, redis_url: str):
    """An app built apart from the session's, configured like it."""
    return create_app(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "RATELIMIT_ENABLED": "false",
            "SECRET_KEY": TEST_SECRET,
        }
    )


@pytest.fixture
def failing_client(database_url, redis_server, app):
    """A separately built app with one extra route that fails for real."""
    other = another_app(database_url, redis_server.url)

    @other.get("/boom")
    def boom():
        secret = {"password": "hunter2"}
        return secret["missing key with internals"]

    return other.test_client()


def test_unexpected_error_is_500_with_request_id_and_no_internals(failing_client):
    response = failing_client.get("/boom", headers={"X-Request-ID": "req-500"})
    body = assert_problem(response, 500)
    assert body["request_id"] == "req-500" and response.headers["X-Request-ID"] == "req-500"
    assert "req-500" in body["detail"]
    text = response.get_data(as_text=True)
    for leak in ("Traceback", "KeyError", "hunter2", "internals", 'File "'):
        assert leak not in text
    generated = failing_client.get("/boom")
    assert assert_problem(generated, 500)["request_id"] == generated.headers["X-Request-ID"]


# Inputs PostgreSQL cannot take (NUL characters, ids beyond its integer column) must be
# client errors on every database, never a 500.


def test_nul_characters_are_422(client, alice, store):
    items = f"/v1/stores/{store['id']}/items"
    cases = [
        (client.post("/v1/stores", json={"name": "a\x00b"}, headers=alice.headers), "name"),
        (client.get("/v1/stores", query_string={"q": "a\x00"}), "q"),
        (client.get(items, query_string={"q": "\x00"}), "q"),
        (client.post(items, json={"name": "x\x00", "price": 1}, headers=alice.headers), "name"),
        (
            client.post(
                items, json={"name": "x", "price": 1, "sku": "\x00"}, headers=alice.headers
            ),
            "sku",
        ),
        (
            client.post(
                items,
                json={"name": "x", "price": 1, "description": "a\x00"},
                headers=alice.headers,
            ),
            "description",
        ),
        (
            client.post("/v1/auth/login", json={"username": "a\x00", "password": "p" * 8}),
            "username",
        ),
    ]
    for response, field in cases:
        assert_invalid(response, field)
    assert_problem(client.get("/v1/users/a%00b"), 404)


def test_ids_beyond_the_column_are_404(client, alice):
    for big in (2**31, 2**63, 10**30):
        assert_problem(client.get(f"/v1/stores/{big}"), 404, case=big)
        assert_problem(client.get(f"/v1/stores/{big}/items"), 404, case=big)
        assert_problem(client.get(f"/v1/items/{big}"), 404, case=big)
        response = client.patch(f"/v1/items/{big}", json={"price": 1}, headers=alice.headers)
        assert_problem(response, 404, case=big)
        assert_problem(client.delete(f"/v1/stores/{big}", headers=alice.headers), 404, case=big)


@pytest.mark.parametrize(
    "unreachable",
    ["sqlite:////nonexistent-directory/stores.db", "postgresql://postgres@127.0.0.1:1/stores"],
    ids=["sqlite", "postgresql"],
)
def test_an_unreachable_database_is_503_with_retry_after(redis_server, app, unreachable):
    """Reads, writes and import submissions: a transient 503, never a 500."""
    down = another_app(unreachable, redis_server.url)
    client = down.test_client()
    with down.app_context():
        token = create_access_token(identity="1", additional_claims={"sid": "ab" * 16})
    headers = {"Authorization": f"Bearer {token}"}
    requests_made = [
        client.get("/v1/stores?limit=7&probe=db-down"),
        client.post("/v1/auth/register", json={"username": "nobody", "password": "x" * 12}),
        client.post(
            "/v1/stores/1/imports",
            data=b"name,price\nTea,1\n",
            headers={**headers, "Content-Type": "text/csv"},
        ),
    ]
    for response in requests_made:
        body = assert_problem(response, 503)
        assert response.headers["Retry-After"] == "5"
        assert "database is unavailable" in body["detail"]
        assert "Traceback" not in response.get_data(as_text=True)
    assert down.test_client().get("/readyz").status_code == 503
