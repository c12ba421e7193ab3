"""Rate limits against real gunicorn processes and the test-owned Redis."""

from __future__ import annotations

import time

import redis
import requests

from tests.problems import assert_problem
from tests.test_caching import _api

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


def _get(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers=headers, timeout=10)


def test_cached_hits_spend_the_same_budget_as_uncached_requests(live_server, redis_server):
    """Fast-path hits, Flask-path misses and cache-bypassing reads share one counter."""
    base = live_server(workers=1, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="1000 per minute")
    _auth, sid, _iid = _api(base)
    base = live_server(workers=1, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="5 per minute")
    url = base + f"/v1/stores/{sid}/items"
    first = _get(url)  # first of its kind: Flask negotiates and Flask-Limiter counts
    hit = _get(url)  # the fast path counts
    bypass = _get(url, Authorization="Bearer not-checked-on-a-public-read")  # Flask again
    hit2 = _get(url)
    not_modified = _get(url, **{"If-None-Match": hit.headers["ETag"]})
    sent = [first, hit, bypass, hit2, not_modified]
    assert [r.status_code for r in sent] == [200, 200, 200, 200, 304]
    assert [r.headers["X-Cache"] for r in sent] == ["MISS", "HIT", "MISS", "HIT", "HIT"]
    assert [r.headers["RateLimit-Remaining"] for r in sent] == ["4", "3", "2", "1", "0"]
    for r in sent:
        assert r.headers["RateLimit-Limit"] == "5"
        assert 1 <= int(r.headers["RateLimit-Reset"]) <= 60
        assert "Retry-After" not in r.headers
    for spent in (_get(url), _get(url, Authorization="Bearer x"), _get(url + "?limit=3")):
        _assert_limited(spent)
        assert "X-Cache" not in spent.headers and spent.headers["RateLimit-Remaining"] == "0"
    # One counter, Flask-Limiter's own key, with the window's expiry: 8 requests counted.
    rdb = redis.Redis.from_url(redis_server.url)
    (key,) = rdb.keys("*items.StoreItems/5/*")
    assert key == b"LIMITS:LIMITER/rl/127.0.0.1/items.StoreItems/5/1/minute"
    assert int(rdb.get(key)) == 8 and 0 < rdb.ttl(key) <= 60
    # Another endpoint has its own budget.
    assert _get(base + f"/v1/stores/{sid}").headers["RateLimit-Remaining"] == "4"


def test_a_spent_budget_is_429_on_the_fast_path_whoever_counted(live_server, redis_server):
    base = live_server(workers=2, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="1000 per minute")
    _auth, sid, _iid = _api(base)
    base = live_server(workers=2, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="5 per minute")
    url = base + f"/v1/stores/{sid}"
    statuses = [_get(url) for _ in range(8)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429] * 3
    assert "HIT" in {r.headers["X-Cache"] for r in statuses[:5]}
    for r in statuses[5:]:
        _assert_limited(r)
        assert r.headers["RateLimit-Limit"] == "5" and r.headers["RateLimit-Remaining"] == "0"
        assert int(r.headers["Retry-After"]) == max(1, int(r.headers["RateLimit-Reset"]))


def test_retry_after_only_where_the_contract_puts_it(live_server):
    base = live_server(RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="1000 per minute")
    creds = {"username": "retry_after_user", "password": "correct horse battery"}
    seen = {201: requests.post(base + "/v1/auth/register", json=creds, timeout=10)}
    token = requests.post(base + "/v1/auth/login", json=creds, timeout=10).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    sid = requests.post(base + "/v1/stores", json={"name": "RA"}, headers=auth, timeout=10)
    sid = sid.json()["id"]
    seen[200] = _get(base + f"/v1/stores/{sid}")
    seen[404] = _get(base + "/v1/stores/987654")
    seen[401] = _get(base + "/v1/auth/me")
    seen[204] = requests.delete(base + f"/v1/stores/{sid}", headers=auth, timeout=10)
    for status, r in seen.items():
        assert r.status_code == status, r.text
        assert "Retry-After" not in r.headers, (status, r.headers)
        assert "X-RateLimit-Limit" not in r.headers and "X-RateLimit-Reset" not in r.headers
    # The default limit's state on ordinary endpoints; register/login report the auth one.
    assert seen[200].headers["RateLimit-Limit"] == "1000"
    assert seen[201].headers["RateLimit-Limit"] == "10"
    probe = _get(base + "/healthz")  # exempt: no limit, no state
    assert "RateLimit-Limit" not in probe.headers and "Retry-After" not in probe.headers


def test_job_polls_on_the_fast_path_spend_the_endpoints_budget(live_server, redis_server):
    """Plain polls (answered before Flask) and Flask-path polls share one counter."""
    base = live_server(workers=1, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="1000 per minute")
    auth, sid, _iid = _api(base)
    job = requests.post(
        f"{base}/v1/stores/{sid}/imports",
        data="name,price\nTea,1\n",
        headers={**auth, "Content-Type": "text/csv"},
        timeout=10,
    )
    url = f"{base}/v1/jobs/{job.json()['id']}"
    base = live_server(workers=1, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="5 per minute")
    url = url.replace(url.split("/v1/")[0], base)
    sent = [_get(url, **auth), _get(url + "?format=json", **auth), _get(url, **auth)]
    sent.append(_get(url, **auth, **{"If-None-Match": sent[0].headers["ETag"]}))
    sent.append(_get(url, **auth))
    assert [r.status_code for r in sent] == [200, 200, 200, 304, 200]
    assert [r.headers["RateLimit-Remaining"] for r in sent] == ["4", "3", "2", "1", "0"]
    assert all(r.headers["Retry-After"] == "1" for r in sent)  # the job is not finished
    _assert_limited(_get(url, **auth))
    _assert_limited(_get(url + "?format=json", **auth))
    rdb = redis.Redis.from_url(redis_server.url)
    (key,) = rdb.keys("*jobs.Job/5/*")
    assert int(rdb.get(key)) == 7
