"""One value, one place: a query parameter given twice is a 422 naming it, on every path."""

from __future__ import annotations

import pytest
import redis
import requests

from app.query import RepeatedParameter, one_value_pairs
from tests.problems import assert_invalid
from tests.test_caching import _api

REPEATS = [
    ("/v1/stores/{sid}/items?sort=price&sort=-price", "sort"),
    ("/v1/stores/{sid}/items?limit=1&limit=3", "limit"),
    ("/v1/stores/{sid}/items?q=a&q=b", "q"),
    ("/v1/stores/{sid}/items?format=json&format=xml", "format"),
    ("/v1/stores?q=&q=", "q"),
    ("/v1/stores/{sid}?format=json&limit=2&format=json", "format"),
    ("/v1/stores/{sid}/items?so%72t=price&sort=id", "sort"),  # the same name, encoded
]


@pytest.fixture
def rdb(redis_server) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def test_one_value_pairs():
    assert one_value_pairs("") == []
    assert one_value_pairs("b=2&a=&c") == [("b", "2"), ("a", ""), ("c", "")]
    with pytest.raises(RepeatedParameter) as raised:
        one_value_pairs("a=1&b=2&a=1")
    assert raised.value.name == "a"


@pytest.mark.parametrize(("path", "name"), REPEATS)
def test_a_repeated_parameter_is_422_naming_it(client, store, path, name):
    url = path.format(sid=store["id"])
    for _ in range(2):  # the second time the fast path (limits off here) has seen the route
        r = client.get(url)
        assert_invalid(r, name)
        assert "X-Cache" not in r.headers


def test_repeats_never_poison_the_cache(client, alice, store, rdb):
    sid = store["id"]
    for name, price in (("cheap", "1"), ("dear", "9")):
        client.post(
            f"/v1/stores/{sid}/items", json={"name": name, "price": price}, headers=alice.headers
        )
    base = f"/v1/stores/{sid}/items"
    ascending = client.get(base + "?sort=price")
    assert client.get(base + "?sort=price").headers["X-Cache"] == "HIT"
    before = set(rdb.scan_iter("rc:*"))
    for query in ("?sort=price&sort=-price", "?sort=-price&sort=price"):
        assert_invalid(client.get(base + query), "sort")
        assert client.head(base + query).status_code == 422
    assert set(rdb.scan_iter("rc:*")) == before  # nothing looked up, nothing stored
    descending = client.get(base + "?sort=-price")
    assert descending.headers["X-Cache"] == "MISS"
    assert [i["name"] for i in descending.json["items"]] == ["dear", "cheap"]
    assert [i["name"] for i in ascending.json["items"]] == ["cheap", "dear"]


def test_other_endpoints_and_unknown_routes(client, alice):
    assert_invalid(client.get("/v1/auth/me?x=1&x=2", headers=alice.headers), "x")
    assert_invalid(client.get("/healthz?x=1&x=1"), "x")
    assert client.get("/v1/nowhere?x=1&x=1").status_code == 404  # routing answers first


def test_repeats_are_422_on_the_fast_path_with_limits_on(live_server, redis_server):
    base = live_server(workers=1, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="1000 per minute")
    _auth, sid, _iid = _api(base)
    url = base + f"/v1/stores/{sid}/items"
    assert [requests.get(url + "?sort=price", timeout=10).headers["X-Cache"] for _ in range(2)] == [
        "MISS",
        "HIT",
    ]
    rdb = redis.Redis.from_url(redis_server.url)
    before = set(rdb.scan_iter("rc:*"))
    for query in ("?sort=price&sort=-price", "?sort=-price&sort=price", "?sort=price&sort=price"):
        r = requests.get(url + query, timeout=10)
        assert_invalid(r, "sort")
        assert "X-Cache" not in r.headers and "Retry-After" not in r.headers
        assert int(r.headers["RateLimit-Remaining"]) < 1000  # counted, as any request
    assert set(rdb.scan_iter("rc:*")) == before
    r = requests.get(url + "?sort=-price", timeout=10)
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"


# --- bodies: a field given twice ------------------------------------------------------

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
XML = "application/xml"
MULTIPART = "multipart/form-data; boundary=XX"


def _multipart(*fields: tuple[str, str]) -> bytes:
    parts = b"".join(
        f'--XX\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    )
    return parts + b"--XX--\r\n"


REPEATED_FIELDS = [
    (JSON, b'{"name": "Tea", "price": 1, "price": 2}', "price"),
    (JSON, b'{"name": "Tea", "price": 1, "description": "at 12:30", "price": 2}', "price"),
    (JSON, b'{"name": "Tea", "name": "Tea", "price": 1}', "name"),
    (JSON, b'{"name": "Tea", "price": 1, "sku": {"a": 1, "a": 2}}', "a"),
    (FORM, b"name=Tea&price=1&price=2", "price"),
    (FORM, b"name=&name=Tea&price=1", "name"),
    (XML, b"<item><name>Tea</name><price>1</price><price>2</price></item>", "price"),
    (XML, b"<item><price>1</price><price>2</price></item>", "price"),
    (
        XML,
        b'<item><name>Tea</name><field name="price">1</field><price>2</price></item>',
        "price",
    ),
    (MULTIPART, _multipart(("name", "Tea"), ("price", "1"), ("price", "2")), "price"),
]


@pytest.mark.parametrize(("content_type", "body", "name"), REPEATED_FIELDS)
def test_a_field_given_twice_in_a_body_is_422_naming_it(
    client, alice, store, content_type, body, name
):
    items = f"/v1/stores/{store['id']}/items"
    headers = {**alice.headers, "Content-Type": content_type}
    problem = assert_invalid(client.post(items, data=body, headers=headers), name)
    assert "once" in problem["errors"][0]["message"]
    item = client.post(items, json={"name": "Kept", "price": 1}, headers=alice.headers).json
    response = client.patch(f"/v1/items/{item['id']}", data=body, headers=headers)
    assert_invalid(response, name)
    assert client.get(items).json["items"] == [item]


def test_bodies_without_repeats_still_parse(client, alice, store):
    items = f"/v1/stores/{store['id']}/items"
    body = b'{"name": "Tea: green", "price": 1, "description": "{\\"a\\": 1, \\"a\\": 2}"}'
    r = client.post(items, data=body, headers={**alice.headers, "Content-Type": JSON})
    assert r.status_code == 201, r.json
    assert r.json["description"] == '{"a": 1, "a": 2}'  # a string, not an object
    xml = b'<item><name>Tea2</name><price>1</price><field name="sku">s</field></item>'
    r = client.post(items, data=xml, headers={**alice.headers, "Content-Type": XML})
    assert r.status_code == 201 and r.json["sku"] == "s", r.json


def test_repeats_through_gunicorn(live_server):
    base = live_server(workers=1)
    auth, sid, _iid = _api(base)
    items = f"{base}/v1/stores/{sid}/items"
    for content_type, body, name in REPEATED_FIELDS:
        headers = {**auth, "Content-Type": content_type}
        assert_invalid(requests.post(items, data=body, headers=headers, timeout=10), name)
    assert_invalid(requests.get(items + "?limit=1&limit=3", timeout=10), "limit")
