"""Keyset pagination: limits, next links, every row exactly once for every sort."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import unique_name
from tests.problems import assert_invalid

SORTS = ("id", "-id", "name", "-name", "price", "-price")
# Duplicate prices on purpose: the sort must break ties by id, or pages skip or repeat.
PRICES = ["1.00", "2.50", "2.50", "0.00", "2.50", "10.00", "1.00", "0.99", "2.50", "1.00"]


@pytest.fixture
def many_items(client, alice, store) -> tuple[str, list[dict]]:
    url = f"/v1/stores/{store['id']}/items"
    rows = []
    for i in range(23):
        # names share prefixes and differ in case, so the name order has near-ties
        name = f"{'ab'[i % 2]}{'Aa'[i % 3 == 0]}-{i % 5}-{i}"
        body = {"name": name, "price": PRICES[i % len(PRICES)]}
        response = client.post(url, json=body, headers=alice.headers)
        assert response.status_code == 201, response.json
        rows.append(response.json)
    return url, rows


def _path(next_url: str) -> str:
    parts = urlsplit(next_url)
    return f"{parts.path}?{parts.query}"


def walk(client, url: str, **query) -> tuple[list[dict], int]:
    """Follow ``next`` from the first page to the last; returns (rows, pages)."""
    response = client.get(url, query_string=query)
    rows, pages = [], 0
    while True:
        assert response.status_code == 200, response.json
        body = response.json
        rows.extend(body["items"] if "items" in body else body["stores"])
        pages += 1
        link = response.headers.get("Link")
        if body["next"] is None:
            assert link is None
            return rows, pages
        assert link == f'<{body["next"]}>; rel="next"'
        response = client.get(_path(body["next"]))


def test_default_limit_is_50_and_max_is_500(client, alice, store):
    url = f"/v1/stores/{store['id']}/items"
    for i in range(51):
        client.post(url, json={"name": f"i{i}", "price": 1}, headers=alice.headers)
    first = client.get(url)
    assert len(first.json["items"]) == 50
    assert first.json["next"] is not None
    second = client.get(_path(first.json["next"]))
    assert len(second.json["items"]) == 1 and second.json["next"] is None
    assert len(client.get(url, query_string={"limit": 500}).json["items"]) == 51
    assert_invalid(client.get(url, query_string={"limit": 501}), "limit")
    assert_invalid(client.get(url, query_string={"limit": 0}), "limit")
    assert_invalid(client.get("/v1/stores", query_string={"limit": 501}), "limit")


def test_next_keeps_the_query_and_is_absolute(client, many_items):
    url, _ = many_items
    response = client.get(url, query_string={"sort": "-price", "limit": 3, "max_price": "5"})
    next_url = response.json["next"]
    assert next_url.startswith("http://")
    query = parse_qs(urlsplit(next_url).query)
    assert query["sort"] == ["-price"] and query["limit"] == ["3"] and query["max_price"] == ["5"]
    assert query["cursor"]


@pytest.mark.parametrize("sort", SORTS)
def test_walking_every_page_sees_each_row_once(client, many_items, sort):
    url, rows = many_items
    # the concatenated pages must be in the same order as one big page
    one_page = client.get(url, query_string={"sort": sort, "limit": 500}).json["items"]
    assert sorted(r["id"] for r in one_page) == sorted(r["id"] for r in rows)
    for limit in (1, 3, 22, 23):
        seen, pages = walk(client, url, sort=sort, limit=limit)
        assert len(seen) == len(rows), limit
        assert [r["id"] for r in seen] == [r["id"] for r in one_page], limit
        assert pages == -(-len(rows) // limit), limit  # no empty last page


def test_walk_with_filters(client, many_items):
    url, rows = many_items
    wanted = {r["id"] for r in rows if 1 <= r["price"] <= 2.5 and "a" in r["name"].lower()}
    seen, _ = walk(client, url, sort="-price", limit=2, min_price=1, max_price="2.5", q="A")
    assert [r["id"] for r in seen] and {r["id"] for r in seen} == wanted
    assert len(seen) == len(wanted)


def test_rows_inserted_while_walking_are_never_seen_twice(client, alice, many_items):
    url, rows = many_items
    response = client.get(url, query_string={"sort": "price", "limit": 4})
    seen = list(response.json["items"])
    added = 0
    while response.json["next"]:
        # cheap rows that sort before the cursor, and one that sorts after it
        client.post(url, json={"name": f"new-{added}", "price": "0.00"}, headers=alice.headers)
        added += 1
        response = client.get(_path(response.json["next"]))
        seen.extend(response.json["items"])
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids))
    assert {r["id"] for r in rows} <= set(ids)


def test_store_list_walks_every_page(client, alice):
    created = [
        client.post("/v1/stores", json={"name": unique_name("P")}, headers=alice.headers).json
        for _ in range(7)
    ]
    seen, pages = walk(client, "/v1/stores", limit=2)
    assert [s["id"] for s in seen] == [s["id"] for s in created]
    assert pages == 4
    seen, _ = walk(client, "/v1/stores", limit=3, q="p")
    assert len(seen) == 7


def _cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


INVALID_CURSORS = [
    ("id", "not a cursor!"),
    ("id", "zzzz"),
    ("id", _cursor({"a": 1})),
    ("id", _cursor([1, 2])),
    ("id", _cursor(["a"])),
    ("id", _cursor([None])),
    ("id", _cursor([True])),
    ("id", _cursor([1.5])),
    ("name", _cursor(["a"])),
    ("name", _cursor([1, 1])),
    ("name", _cursor(["a", "b"])),
    ("price", _cursor(["abc", 1])),
    ("price", _cursor(["NaN", 1])),
    ("price", _cursor([[1], 1])),
    ("price", _cursor(["1e999999", 1])),
    ("-price", _cursor(["1.00", "x"])),
    ("name", _cursor(["a\x00", 1])),  # PostgreSQL cannot compare a NUL: it was a 500
    ("-name", _cursor(["\x00", 1])),
]


def test_invalid_cursors_are_422(client, alice, store):
    url = f"/v1/stores/{store['id']}/items"
    for i in range(3):
        client.post(url, json={"name": f"i{i}", "price": i}, headers=alice.headers)
    for sort, cursor in INVALID_CURSORS:
        response = client.get(url, query_string={"sort": sort, "cursor": cursor})
        assert_invalid(response, "cursor", case=(sort, cursor))


def test_invalid_store_cursors_are_422(client):
    for cursor in ("%%%", _cursor(["a"]), _cursor([None]), _cursor([2**70])):
        response = client.get("/v1/stores", query_string={"cursor": cursor})
        assert_invalid(response, "cursor", case=cursor)


def test_invalid_job_cursors_are_422(client, alice):
    for cursor in (_cursor(["\x00"]), _cursor(["a\x00b"]), _cursor([1])):
        response = client.get("/v1/jobs", query_string={"cursor": cursor}, headers=alice.headers)
        assert_invalid(response, "cursor", case=cursor)


@settings(
    max_examples=12,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["a", "B", "b", "ab", "A_", "c%"]), st.sampled_from(PRICES)),
        min_size=0,
        max_size=12,
    ),
    sort=st.sampled_from(SORTS),
    limit=st.integers(min_value=1, max_value=5),
)
def test_any_data_any_sort_any_limit_walks_each_row_once(client, alice, rows, sort, limit):
    store = client.post("/v1/stores", json={"name": unique_name("H")}, headers=alice.headers)
    url = f"/v1/stores/{store.json['id']}/items"
    ids = []
    for i, (prefix, price) in enumerate(rows):
        body = {"name": f"{prefix}{i % 3}-{i}", "price": price}
        ids.append(client.post(url, json=body, headers=alice.headers).json["id"])
    seen, _ = walk(client, url, sort=sort, limit=limit)
    assert sorted(r["id"] for r in seen) == sorted(ids)
    one_page = client.get(url, query_string={"sort": sort, "limit": 500}).json["items"]
    assert [r["id"] for r in seen] == [r["id"] for r in one_page]
