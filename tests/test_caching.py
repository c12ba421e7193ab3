"""Cached reads against a real Redis: hits, 304s, representations, writes, races, outages."""

from __future__ import annotations

import multiprocessing
import signal
import threading

import pytest
import redis
import requests

from app.caching import ReadCache
from app.caching.backend import Hit, new_token
from app.caching.keys import GLOBAL_GEN, store_gen_key
from app.extensions import cache as flask_cache
from app.extensions import db, redis_client
from app.models import Item
from app.services import catalog
from tests.conftest import unique_name
from tests.services import wait_until


@pytest.fixture
def cache(app) -> ReadCache:
    return app.extensions["read_cache"]


@pytest.fixture
def rdb(redis_server) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


@pytest.fixture
def item(client, alice, store) -> dict:
    r = client.post(
        f"/v1/stores/{store['id']}/items",
        json={"name": "Tea", "price": "2.50", "quantity": 1},
        headers=alice.headers,
    )
    assert r.status_code == 201, r.json
    return r.json


def entries(rdb: redis.Redis) -> list[bytes]:
    return [rdb.hget(k, "b") or b"" for k in rdb.scan_iter("rc:*")]


# --- hits, misses, validators --------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/stores", "/v1/stores/{sid}", "/v1/stores/{sid}/items"])
def test_miss_then_hit_serves_the_same_bytes(client, store, item, path):
    url = path.format(sid=store["id"])
    first = client.get(url)
    assert first.status_code == 200
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Cache-Control"] == "no-cache"
    second = client.get(url)
    assert second.headers["X-Cache"] == "HIT"
    assert second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert second.headers["Vary"] == "Accept"
    assert second.headers["X-Request-ID"]


def test_item_read_is_cached_and_keyed_by_its_store(client, item, rdb):
    assert client.get(f"/v1/items/{item['id']}").headers["X-Cache"] == "MISS"
    hit = client.get(f"/v1/items/{item['id']}")
    assert hit.headers["X-Cache"] == "HIT" and hit.json["name"] == "Tea"
    (key,) = list(rdb.scan_iter("rc:*"))
    assert rdb.hget(key, "d") == store_gen_key(item["store_id"]).encode()


def test_list_next_link_is_replayed_on_a_hit(client, alice, store):
    for name in ("a", "b", "c"):
        client.post(
            f"/v1/stores/{store['id']}/items",
            json={"name": name, "price": "1"},
            headers=alice.headers,
        )
    url = f"/v1/stores/{store['id']}/items?limit=2"
    miss, hit = client.get(url), client.get(url)
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["Link"] == miss.headers["Link"] and 'rel="next"' in hit.headers["Link"]
    assert hit.json["next"] == miss.json["next"] is not None


def test_if_none_match_gives_304_without_a_body(client, store):
    url = f"/v1/stores/{store['id']}"
    etag = client.get(url).headers["ETag"]
    for expected_cache in ("HIT", "HIT"):
        r = client.get(url, headers={"If-None-Match": etag})
        assert r.status_code == 304
        assert r.data == b""
        assert r.headers["ETag"] == etag
        assert r.headers["X-Cache"] == expected_cache
        assert "Content-Type" not in r.headers
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(url, headers={"If-None-Match": f'"x", {etag}'}).status_code == 304


def test_if_none_match_on_a_miss_and_after_a_change(client, alice, store, rdb):
    url = f"/v1/stores/{store['id']}"
    etag = client.get(url).headers["ETag"]
    rdb.flushdb()  # the next read is a miss, and still answers 304 for an unchanged body
    r = client.get(url, headers={"If-None-Match": etag})
    assert (r.status_code, r.headers["X-Cache"]) == (304, "MISS")
    client.patch(url, json={"name": unique_name("Renamed ")}, headers=alice.headers)
    r = client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["ETag"] != etag


def test_query_order_does_not_matter_but_values_do(client, store, item):
    base = f"/v1/stores/{store['id']}/items"
    assert client.get(base + "?sort=price&limit=10").headers["X-Cache"] == "MISS"
    assert client.get(base + "?limit=10&sort=price").headers["X-Cache"] == "HIT"
    assert client.get(base + "?limit=11&sort=price").headers["X-Cache"] == "MISS"


def test_host_is_part_of_the_key(client, store):
    url = f"/v1/stores/{store['id']}"
    assert client.get(url, base_url="http://a.example").headers["X-Cache"] == "MISS"
    assert client.get(url, base_url="http://b.example").headers["X-Cache"] == "MISS"
    assert client.get(url, base_url="http://a.example").headers["X-Cache"] == "HIT"


# --- representations, HEAD, credentials, CSV -----------------------------------------


def test_representations_never_share_an_entry(client, store, item):
    url = f"/v1/stores/{store['id']}/items"
    accepts = {
        "application/json": "application/json",
        "application/xml": "application/xml",
        "text/html": "text/html",
    }
    for _round in range(2):
        for accept, mimetype in accepts.items():
            r = client.get(url, headers={"Accept": accept})
            assert r.status_code == 200
            assert r.mimetype == mimetype
            assert r.headers["X-Cache"] == ("MISS" if _round == 0 else "HIT")
    json_body = client.get(url).data
    assert json_body.startswith(b"{")
    assert client.get(url, headers={"Accept": "application/xml"}).data.startswith(b"<")
    # ?format= is negotiation too: its own entry, its own representation.
    r = client.get(url + "?format=xml", headers={"Accept": "application/json"})
    assert (r.mimetype, r.headers["X-Cache"]) == ("application/xml", "MISS")
    r = client.get(url + "?format=xml", headers={"Accept": "application/json"})
    assert (r.mimetype, r.headers["X-Cache"]) == ("application/xml", "HIT")


def test_head_then_get(client, store, item):
    url = f"/v1/stores/{store['id']}/items"
    head = client.head(url)
    assert head.status_code == 200 and head.data == b""
    assert head.headers["X-Cache"] == "MISS"
    get = client.get(url)
    assert get.headers["X-Cache"] == "MISS"  # HEAD never stores
    assert get.json["items"][0]["name"] == "Tea"
    assert int(head.headers["Content-Length"]) == len(get.data)
    assert client.get(url).data == get.data
    head = client.head(url)
    assert (head.headers["X-Cache"], head.data) == ("HIT", b"")
    assert int(head.headers["Content-Length"]) == len(get.data)
    assert head.headers["ETag"] == get.headers["ETag"]


def test_authenticated_reads_are_never_stored_nor_served_from_the_shared_entry(
    client, alice, store, rdb
):
    url = f"/v1/stores/{store['id']}"
    for _ in range(2):
        r = client.get(url, headers=alice.headers)
        assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    assert entries(rdb) == []
    client.get(url)
    assert client.get(url, headers=alice.headers).headers["X-Cache"] == "MISS"
    assert client.get(url).headers["X-Cache"] == "HIT"


def test_streamed_csv_is_not_cached(client, store, item, rdb):
    url = f"/v1/stores/{store['id']}/items?format=csv"
    for _ in range(2):
        r = client.get(url)
        assert r.status_code == 200 and r.mimetype == "text/csv"
        assert b"Tea" in r.data
        assert "X-Cache" not in r.headers
    assert entries(rdb) == []


def test_errors_are_not_cached(client, rdb):
    for _ in range(2):
        r = client.get("/v1/stores/987654")
        assert r.status_code == 404 and "X-Cache" not in r.headers
    assert entries(rdb) == []


# --- never stale -------------------------------------------------------------------------


def test_every_write_is_read_back_immediately(client, alice, store, item):
    sid, iid = store["id"], item["id"]
    lists = [f"/v1/stores/{sid}", f"/v1/stores/{sid}/items", f"/v1/items/{iid}", "/v1/stores"]

    def warm() -> None:
        for url in lists:
            client.get(url)
            assert client.get(url).headers["X-Cache"] == "HIT"

    warm()
    client.patch(f"/v1/items/{iid}", json={"price": "3.10"}, headers=alice.headers)
    assert client.get(f"/v1/items/{iid}").json["price"] == 3.1
    assert client.get(f"/v1/stores/{sid}/items").json["items"][0]["price"] == 3.1
    warm()
    client.post(
        f"/v1/stores/{sid}/items", json={"name": "Jam", "price": "4"}, headers=alice.headers
    )
    assert client.get(f"/v1/stores/{sid}").json["item_count"] == 2
    listed = [s for s in client.get("/v1/stores").json["stores"] if s["id"] == sid]
    assert listed[0]["item_count"] == 2


def test_a_write_that_commits_while_a_miss_renders_never_leaves_a_stale_entry(
    app, client, alice, store, item, cache, rdb
):
    """Force the interleaving: query -> concurrent write commits -> store attempt."""
    url = f"/v1/stores/{store['id']}/items"
    writes: list[int] = []

    def write_now(key: str) -> None:
        if writes:
            return
        other = app.test_client()  # a second client, in another thread, as another request

        def patch() -> None:
            r = other.patch(f"/v1/items/{item['id']}", json={"quantity": 99}, headers=alice.headers)
            writes.append(r.status_code)

        thread = threading.Thread(target=patch)
        thread.start()
        thread.join()

    cache.before_store.append(write_now)
    try:
        raced = client.get(url)
    finally:
        cache.before_store.remove(write_now)
    assert writes == [200]
    assert raced.headers["X-Cache"] == "MISS"
    assert raced.json["items"][0]["quantity"] == 1  # rendered before the write committed
    assert not any(b'"quantity":1,' in body for body in entries(rdb))
    after = client.get(url)
    assert after.headers["X-Cache"] == "MISS"
    assert after.json["items"][0]["quantity"] == 99
    assert client.get(url).headers["X-Cache"] == "HIT"


def test_an_item_read_racing_a_write_to_its_store(app, client, alice, item, cache, rdb):
    url = f"/v1/items/{item['id']}"

    def write_now(key: str) -> None:
        with app.app_context():
            row = db.session.get(Item, item["id"])
            row.description = "changed meanwhile"
            db.session.commit()
            catalog.store_changed(item["store_id"])

    cache.before_store.append(write_now)
    try:
        raced = client.get(url)
    finally:
        cache.before_store.remove(write_now)
    assert raced.json["description"] is None
    assert entries(rdb) == []
    assert client.get(url).json["description"] == "changed meanwhile"


def test_bulk_style_writes_announced_with_store_changed_invalidate(app, client, store, item):
    url = f"/v1/stores/{store['id']}/items"
    client.get(url)
    assert client.get(url).headers["X-Cache"] == "HIT"
    with app.app_context():  # what an import chunk does: its own commit, then the hook
        db.session.get(Item, item["id"]).quantity = 42
        db.session.commit()
        catalog.store_changed(store["id"])
    r = client.get(url)
    assert (r.headers["X-Cache"], r.json["items"][0]["quantity"]) == ("MISS", 42)


@pytest.mark.parametrize("lost", [GLOBAL_GEN, "store"])
def test_a_lost_generation_never_revives_an_old_entry(client, alice, store, rdb, lost):
    """Generations are random tokens: one evicted or lost with Redis starts afresh."""
    sid = store["id"]
    url = "/v1/stores" if lost == GLOBAL_GEN else f"/v1/stores/{sid}"
    client.get(url)
    assert client.get(url).headers["X-Cache"] == "HIT"
    rdb.delete(GLOBAL_GEN if lost == GLOBAL_GEN else store_gen_key(sid))
    assert client.get(url).headers["X-Cache"] == "MISS"
    assert client.get(url).headers["X-Cache"] == "HIT"


# --- two web processes -------------------------------------------------------------------


def _api(base: str) -> tuple[dict[str, str], int, int]:
    name = unique_name("live")
    creds = {"username": name, "password": "correct horse battery"}
    assert requests.post(base + "/v1/auth/register", json=creds, timeout=10).status_code == 201
    token = requests.post(base + "/v1/auth/login", json=creds, timeout=10).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    sid = requests.post(
        base + "/v1/stores", json={"name": unique_name("Live ")}, headers=auth, timeout=10
    ).json()["id"]
    iid = requests.post(
        base + f"/v1/stores/{sid}/items",
        json={"name": "Tea", "price": "1"},
        headers=auth,
        timeout=10,
    ).json()["id"]
    return auth, sid, iid


def _reads(base: str, url: str, times: int = 6) -> list[requests.Response]:
    # A new connection each time: gunicorn hands them to either worker process.
    return [requests.get(base + url, timeout=10) for _ in range(times)]


@pytest.mark.parametrize("path", ["fast", "flask"])
def test_read_your_write_through_two_web_processes(live_server, path):
    """``fast``: hits served before Flask (rate limits off); ``flask``: after the limiter."""
    limits = {"RATELIMIT_ENABLED": "false"} if path == "fast" else {}
    base = live_server(workers=2, **limits)
    auth, sid, iid = _api(base)
    reads = {
        "store": f"/v1/stores/{sid}",
        "items": f"/v1/stores/{sid}/items",
        "item": f"/v1/items/{iid}",
        "stores": "/v1/stores?limit=500",
    }

    def warm() -> None:
        for url in reads.values():
            rs = _reads(base, url)
            assert rs[0].status_code == 404 or "HIT" in {r.headers["X-Cache"] for r in rs}

    def write(method: str, url: str, **body) -> None:
        r = requests.request(method, base + url, json=body or None, headers=auth, timeout=10)
        assert r.status_code in (200, 201, 204), r.text

    for price in ("2.00", "3.00"):
        warm()
        write("PATCH", f"/v1/items/{iid}", price=price)
        for r in _reads(base, reads["item"]):
            assert r.json()["price"] == float(price)
        for r in _reads(base, reads["items"]):
            assert r.json()["items"][0]["price"] == float(price)
    warm()
    write("PUT", f"/v1/items/{iid}", name="Green tea", price="5")
    assert {r.json()["name"] for r in _reads(base, reads["item"])} == {"Green tea"}
    warm()
    write("POST", f"/v1/stores/{sid}/items", name="Jam", price="4")
    assert {r.json()["item_count"] for r in _reads(base, reads["store"])} == {2}
    warm()
    new_name = unique_name("Renamed ")
    write("PATCH", f"/v1/stores/{sid}", name=new_name)
    for r in _reads(base, reads["stores"]):
        assert new_name in [s["name"] for s in r.json()["stores"]]
    warm()
    write("DELETE", f"/v1/items/{iid}")
    assert {r.status_code for r in _reads(base, reads["item"])} == {404}
    assert {len(r.json()["items"]) for r in _reads(base, reads["items"])} == {1}
    warm()
    write("DELETE", f"/v1/stores/{sid}")
    assert {r.status_code for r in _reads(base, reads["store"])} == {404}
    for r in _reads(base, reads["stores"]):
        assert sid not in [s["id"] for s in r.json()["stores"]]


def test_rate_limits_count_cached_hits(live_server):
    base = live_server(workers=1, RATELIMIT_DEFAULT="4 per day")
    assert requests.get(base + "/v1/stores", timeout=10).status_code == 200
    statuses = [requests.get(base + "/v1/stores", timeout=10) for _ in range(4)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert "HIT" in {r.headers.get("X-Cache") for r in statuses[:3]}
    assert statuses[3].status_code == 429


# --- Redis down, slow, and back ------------------------------------------------------


def test_redis_killed_mid_run_reads_from_the_database_then_hits_again(live_server, redis_server):
    base = live_server(workers=2, RATELIMIT_ENABLED="false")
    auth, sid, iid = _api(base)
    url = f"/v1/stores/{sid}/items"
    assert "HIT" in {r.headers["X-Cache"] for r in _reads(base, url)}
    redis_server.stop()
    try:
        # Bounded: every read answers (requests' own timeout) and from the database.
        for r in _reads(base, url, times=8):
            assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
        ready = requests.get(base + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "down"
        r = requests.patch(
            base + f"/v1/items/{iid}", json={"quantity": 7}, headers=auth, timeout=10
        )
        assert r.status_code == 200, r.text
        for r in _reads(base, url, times=4):
            assert r.json()["items"][0]["quantity"] == 7
    finally:
        redis_server.start()

    def hits_again() -> bool:
        rs = _reads(base, url, times=3)
        assert all(r.json()["items"][0]["quantity"] == 7 for r in rs)
        return "HIT" in {r.headers["X-Cache"] for r in rs}

    wait_until(hits_again, timeout=30, interval=0.2, what="cache hits after Redis returned")


def test_a_write_while_redis_hangs_is_invalidated_once_it_answers(
    client, alice, store, item, redis_server, cache
):
    """Redis frozen (data kept): the bump fails, is retried, and the old entry dies."""
    url = f"/v1/stores/{store['id']}/items"
    client.get(url)
    assert client.get(url).headers["X-Cache"] == "HIT"
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        r = client.patch(f"/v1/items/{item['id']}", json={"quantity": 5}, headers=alice.headers)
        assert r.status_code == 200
        r = client.get(url)
        assert r.status_code == 200 and r.json["items"][0]["quantity"] == 5
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    key = next(iter(redis.Redis.from_url(redis_server.url).scan_iter("rc:*")), None)
    if key is not None:

        def dead() -> bool:
            return not isinstance(cache.backend.lookup(key.decode(), "", GLOBAL_GEN).found, Hit)

        wait_until(dead, timeout=10, what="bump")
    wait_until(lambda: client.get(url).headers["X-Cache"] == "HIT", timeout=10, what="hit")
    assert client.get(url).json["items"][0]["quantity"] == 5


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_redis_down_in_process_never_500(app, client, alice, store, redis_server, debug):
    """flask-caching re-raises backend errors in debug mode; our reads never do."""
    url = f"/v1/stores/{store['id']}"
    app.debug = debug
    redis_server.stop()
    try:
        for _ in range(3):
            r = client.get(url)
            assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
        r = client.patch(url, json={"name": unique_name("Offline ")}, headers=alice.headers)
        assert r.status_code == 200
        assert client.get(url).json["name"] == r.json["name"]
    finally:
        app.debug = False
        redis_server.start()


def test_the_read_cache_is_flask_cachings_backend_on_the_shared_pool(app, cache, rdb):
    with app.app_context():
        backend = flask_cache.cache
        assert backend is cache.backend
        assert backend.client.connection_pool is redis_client.client.connection_pool
        # flask-caching's own API works through the same backend, beside the entries.
        flask_cache.set("probe", {"a": 1}, timeout=30)
        assert flask_cache.get("probe") == {"a": 1}
        assert rdb.exists("fc:probe")
        flask_cache.delete("probe")


def _child_token(conn) -> None:
    conn.send(new_token())


def test_a_forked_process_never_repeats_its_parents_tokens():
    """Celery's prefork children are forks: each must draw its own token prefix."""
    parent = new_token()
    context = multiprocessing.get_context("fork")
    tokens = []
    for _ in range(2):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child_token, args=(send,))
        child.start()
        tokens.append(receive.recv())
        child.join()
    prefixes = {t[:16] for t in [parent, *tokens]}
    assert len(prefixes) == 3
