"""Operations: liveness, readiness (and what it names when a dependency is down), docs."""

from __future__ import annotations

import re
import signal
import time

import psutil
import pytest
import requests

from tests.services import free_port, start_web, wait_until

ALL_OK = {"status": "ok", "checks": {"database": "ok", "redis": "ok", "broker": "ok"}}

# Every endpoint the contract names (outside bulk imports), as OpenAPI paths.
ENDPOINTS = {
    ("post", "/v1/auth/register"),
    ("post", "/v1/auth/login"),
    ("post", "/v1/auth/refresh"),
    ("post", "/v1/auth/logout"),
    ("get", "/v1/auth/me"),
    ("get", "/v1/users/{username}"),
    ("get", "/v1/stores"),
    ("post", "/v1/stores"),
    ("get", "/v1/stores/{store_id}"),
    ("patch", "/v1/stores/{store_id}"),
    ("put", "/v1/stores/{store_id}"),
    ("delete", "/v1/stores/{store_id}"),
    ("get", "/v1/stores/{store_id}/items"),
    ("post", "/v1/stores/{store_id}/items"),
    ("get", "/v1/items/{item_id}"),
    ("patch", "/v1/items/{item_id}"),
    ("put", "/v1/items/{item_id}"),
    ("delete", "/v1/items/{item_id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}
SECURED = {
    (m, p)
    for m, p in ENDPOINTS
    if p in ("/v1/auth/refresh", "/v1/auth/logout", "/v1/auth/me")
    or (m != "get" and p.startswith(("/v1/stores", "/v1/items")))
}
METHODS = {"get", "post", "put", "patch", "delete"}


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_all_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json == ALL_OK


def test_readyz_names_redis_when_it_is_down(client, redis_server):
    redis_server.stop()
    started = time.monotonic()
    response = client.get("/readyz")
    # bounded by the short Redis socket timeouts, not by a retry loop
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.json["status"] != "ok"
    assert response.json["checks"]["redis"] == "down"
    assert response.json["checks"]["broker"] == "down"  # the same Redis by default
    assert response.json["checks"]["database"] == "ok"
    # the app is still alive, and public reads still work without Redis
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/stores").status_code == 200
    redis_server.start()
    assert client.get("/readyz").json == ALL_OK


def test_readyz_answers_quickly_when_redis_hangs(client, redis_server):
    # A stopped (not killed) Redis accepts connections and never answers: only the
    # socket timeouts bound the probe.
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert response.status_code == 503
    assert response.json["checks"] == {"database": "ok", "redis": "down", "broker": "down"}
    assert elapsed < 5


def test_readyz_names_the_broker_when_only_it_is_down(live_server):
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    base = live_server(CELERY_BROKER_URL=dead_broker)
    started = time.monotonic()
    response = requests.get(base + "/readyz", timeout=10)
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "down"}


def test_readyz_names_the_database_when_it_is_down(live_server, tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    base = live_server(DATABASE_URL=f"sqlite:///{missing}")
    response = requests.get(base + "/readyz", timeout=10)
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "down"
    assert response.json()["checks"]["redis"] == "ok"


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json


def _operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_openapi_describes_every_endpoint(spec):
    assert spec["openapi"].startswith("3.")
    operations = _operations(spec)
    assert set(operations) >= ENDPOINTS, ENDPOINTS - set(operations)
    for key, op in operations.items():
        assert op.get("summary"), key
        successes = [s for s in op["responses"] if s.startswith("2")]
        assert successes, key


def test_openapi_has_request_and_response_schemas(spec):
    operations = _operations(spec)
    schemas = spec["components"]["schemas"]
    for key in [k for k in ENDPOINTS if k[0] in ("post", "put", "patch")]:
        if key[1] in ("/v1/auth/refresh", "/v1/auth/logout"):
            continue  # no body: the token is the input
        body = operations[key]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].split("/")[-1] in schemas, key
    assert set(schemas["Register"]["required"]) == {"username", "password"}
    assert schemas["StoreInput"]["properties"]["name"]["maxLength"] == 80
    assert schemas["ItemInput"]["properties"]["name"]["maxLength"] == 200
    assert set(schemas["Store"]["properties"]) == {
        "id",
        "name",
        "owner",
        "item_count",
        "created_at",
        "updated_at",
    }
    assert {"type", "title", "status", "detail", "errors"} <= set(schemas["Problem"]["properties"])
    created = operations[("post", "/v1/stores")]["responses"]["201"]["content"]
    assert created["application/json"]["schema"]["$ref"].endswith("/Store")
    listed = operations[("get", "/v1/stores/{store_id}/items")]
    assert {"q", "min_price", "max_price", "sort", "limit", "cursor"} <= {
        p["name"] for p in listed["parameters"]
    }


def test_openapi_error_responses_are_problems(spec):
    for name, response in spec["components"]["responses"].items():
        schemas = [c["schema"]["$ref"] for c in response["content"].values()]
        assert all(s.endswith("/Problem") for s in schemas), name


def test_openapi_bearer_security(spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    operations = _operations(spec)
    for key in ENDPOINTS:
        secured = operations[key].get("security") == [{"bearerAuth": []}]
        assert secured == (key in SECURED), key


def test_openapi_documents_the_errors_each_operation_can_answer(spec):
    operations = _operations(spec)
    for (method, path), op in operations.items():
        if (method, path) not in ENDPOINTS:
            continue
        statuses = set(op["responses"])
        if (method, path) in SECURED or path == "/v1/auth/login":
            assert "401" in statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
        if (method, path) in SECURED and method != "get" and "{" in path:
            assert "403" in statuses, (method, path)
        has_body = path not in ("/v1/auth/refresh", "/v1/auth/logout")
        if method in ("post", "put", "patch") and has_body:
            assert "422" in statuses, (method, path)
    for key in [("post", "/v1/auth/register"), ("post", "/v1/stores")]:
        assert "409" in operations[key]["responses"]
    assert "409" in operations[("post", "/v1/stores/{store_id}/items")]["responses"]
    problem = spec["components"]["responses"]["Unauthorized"]["content"]
    assert problem["application/problem+json"]["schema"]["$ref"].endswith("/Problem")


def test_docs_page_renders_every_operation(client, spec):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "/openapi.json" in html
    for method, path in _operations(spec):
        pattern = rf">{method.upper()}</span>\s*<code>{re.escape(path)}</code>"
        assert re.search(pattern, html), (method, path)


def test_sigterm_lets_an_in_flight_request_finish(service_env, tmp_path):
    proc, base = start_web(service_env, tmp_path / "web.log")
    try:
        port = int(base.rsplit(":", 1)[1])

        def accepted() -> bool:
            workers = psutil.Process(proc.proc.pid).children()
            return any(
                c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
                for w in workers
                for c in w.net_connections(kind="tcp")
            )

        def body():
            yield b'{"username": "graceful", '
            # The request is in flight (a worker holds the connection): stop the server
            # now, and finish the body only once gunicorn has begun its graceful shutdown.
            wait_until(accepted, timeout=10, what="the worker to accept the connection")
            proc.signal(signal.SIGTERM)
            wait_until(lambda: "Handling signal: term" in proc.output(), timeout=10, what="TERM")
            yield b'"password": "correct horse"}'

        response = requests.post(
            base + "/v1/auth/register",
            data=body(),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        assert proc.proc.wait(timeout=30) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(base + "/healthz", timeout=2)
    finally:
        proc.stop()
