"""Rate limits against real gunicorn processes and the test-owned Redis."""

from __future__ import annotations

import time

import redis
import requests

from tests.problems import assert_problem

LOGIN = {"username": "nobody-at-all", "password": "wrong password"}


def _login(base: str, **headers: str) -> requests.Response:
    # A new connection per request, so every gunicorn worker takes a share.
    return requests.post(base + "/v1/auth/login", json=LOGIN, headers=headers, timeout=10)


def _assert_limited(response: requests.Response) -> None:
    body = assert_problem(response, 429)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 61
    assert "rate limit" in body["detail"].lower()


def test_auth_limit_is_shared_by_every_process(live_server, redis_server):
    base = live_server(workers=2, RATELIMIT_AUTH="3 per minute", RATELIMIT_ENABLED="true")
    for _ in range(3):
        assert _login(base).status_code == 401
    _assert_limited(_login(base))
    # register shares the stricter limit
    register = requests.post(
        base + "/v1/auth/register", json={"username": "abcd", "password": "x" * 8}, timeout=10
    )
    _assert_limited(register)
    # the counters live in Redis (shared), not in each process's memory
    keys = redis.Redis.from_url(redis_server.url).keys("*/rl/*")
    assert keys, "no rate limit counters in Redis"
    # other endpoints have their own (default) limit; probes are never limited
    assert requests.get(base + "/v1/stores", timeout=10).status_code == 200
    assert requests.get(base + "/healthz", timeout=10).status_code == 200


def test_spoofed_forwarded_for_changes_nothing_with_zero_hops(live_server):
    base = live_server(RATELIMIT_AUTH="3 per minute", RATELIMIT_ENABLED="true")
    for i in range(3):
        assert _login(base, **{"X-Forwarded-For": f"10.0.0.{i}"}).status_code == 401
    _assert_limited(_login(base, **{"X-Forwarded-For": "10.0.0.99"}))
    _assert_limited(_login(base))


def test_one_trusted_hop_makes_forwarded_clients_distinct(live_server):
    base = live_server(
        RATELIMIT_AUTH="3 per minute", RATELIMIT_ENABLED="true", TRUSTED_PROXY_HOPS="1"
    )
    first = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(3):
        assert _login(base, **first).status_code == 401
    _assert_limited(_login(base, **first))
    # the router appends the real address: only the last hop is believed
    _assert_limited(_login(base, **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}))
    assert _login(base, **{"X-Forwarded-For": "203.0.113.8"}).status_code == 401


def test_default_limit_applies_to_every_other_endpoint(live_server):
    base = live_server(RATELIMIT_DEFAULT="2 per minute", RATELIMIT_ENABLED="true")
    for _ in range(2):
        assert requests.get(base + "/v1/stores", timeout=10).status_code == 200
    _assert_limited(requests.get(base + "/v1/stores", timeout=10))
    for _ in range(3):
        assert requests.get(base + "/readyz", timeout=10).status_code == 200


def test_limits_fail_open_when_redis_is_down(live_server, redis_server):
    base = live_server(RATELIMIT_AUTH="100 per minute", RATELIMIT_ENABLED="true")
    assert _login(base).status_code == 401
    redis_server.stop()
    for _ in range(3):
        started = time.monotonic()
        response = _login(base)
        assert response.status_code == 401, response.text
        assert time.monotonic() - started < 5
    assert requests.get(base + "/v1/stores", timeout=10).status_code == 200
