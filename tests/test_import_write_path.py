"""The import's write path. With a real worker, on each database: a chunk is written in
several statements and committed once; new names take the bulk path (PostgreSQL: ``COPY``
straight into ``items``), a batch that meets existing names falls back to the upsert
(the partial copy rolled back; several such batches in one transaction each stage only
their own rows), and a later batch of new names takes the bulk path again. The counts
are what the database did, row by row."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from tests.importing import assert_finished_invariant, store_items
from tests.test_jobs import parse_events
from tests.test_jobs_worker import poll

# Chunks of 600 rows (one transaction, one checkpoint) written 200 rows a statement.
WORKER = {"IMPORT_CHUNK_ROWS": "600", "IMPORT_BATCH_ROWS": "200"}


def submit(base: str, account, store_id: int, body: str, query: str = "") -> str:
    response = requests.post(
        f"{base}/v1/stores/{store_id}/imports{query}",
        data=body.encode(),
        headers={**account.headers, "Content-Type": "text/csv"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def upload(base: str, account, store_id: int, body: str, query: str = "") -> dict:
    return poll(base, account, submit(base, account, store_id, body, query))


def names(prefix: str, count: int, price: str) -> list[str]:
    return [f"{prefix}-{i:04d},{price},{i % 5}" for i in range(count)]


@pytest.mark.parametrize("mode", ["upsert", "create"])
def test_new_existing_then_new_names_are_counted_as_written(
    app, live_server, celery_worker, alice, store, mode
):
    celery_worker(**WORKER)
    base = live_server()
    # The store holds b-0000, b-0002 .. b-0398 (every other one of the file's 400 b-).
    seeded = "name,price\n" + "".join(f"b-{i:04d},1.00\n" for i in range(0, 400, 2))
    assert upload(base, alice, store["id"], seeded)["progress"]["created"] == 200
    # Batches of 200: the first chunk (rows 1-600) stages two batches of b- (half of
    # them exist) and then one of new a- names in the same transaction; the second
    # chunk, 600 new c-, goes back to the bulk path.
    lines = [*names("b", 400, "3.00"), *names("a", 200, "2.00"), *names("c", 600, "4.00")]
    body = "\n".join(["name,price,quantity", *lines])
    job = upload(base, alice, store["id"], body + "\n", f"?mode={mode}")
    assert job["status"] == "succeeded", job
    assert_finished_invariant(job)
    p = job["progress"]
    items = store_items(app, store["id"])
    assert len(items) == 200 + 200 + 200 + 600
    if mode == "upsert":
        assert (p["created"], p["updated"], p["failed"]) == (1000, 200, 0)
        assert {items[f"b-{i:04d}"].price for i in range(400)} == {Decimal("3.00")}
    else:
        assert (p["created"], p["updated"], p["failed"]) == (1000, 0, 200)
        assert {items[f"b-{i:04d}"].price for i in range(0, 400, 2)} == {Decimal("1.00")}
        errors = requests.get(
            f"{base}/v1/jobs/{job['id']}/errors?limit=500", headers=alice.headers, timeout=5
        ).json()["errors"]
        # Row numbers count data rows: the existing b- names are rows 1, 3 .. 399.
        assert [e["row"] for e in errors] == list(range(1, 401, 2))
        assert {e["field"] for e in errors} == {"name"}
    assert {items[f"c-{i:04d}"].price for i in range(600)} == {Decimal("4.00")}
    assert {items[f"a-{i:04d}"].quantity for i in range(5)} == {0, 1, 2, 3, 4}


def test_a_chunk_of_several_statements_commits_once(live_server, celery_worker, alice, store):
    """Progress moves a whole chunk (600 rows) at a time, never a statement's 200."""
    celery_worker(**WORKER)
    base = live_server()
    body = "\n".join(["name,price", *[f"n-{i:05d},1.00" for i in range(3000)]]) + "\n"
    job_id = submit(base, alice, store["id"], body)
    with requests.get(
        f"{base}/v1/jobs/{job_id}/events", headers=alice.headers, stream=True, timeout=60
    ) as stream:
        text = "".join(chunk for chunk in stream.iter_content(decode_unicode=True))
    seen = {json.loads(e["data"])["progress"]["processed"] for e in parse_events(text)}
    assert seen <= {0, 600, 1200, 1800, 2400, 3000}, seen
    assert 3000 in seen
