"""POST /v1/stores/<id>/imports and what the import pipeline makes of each file.

The jobs run in this process through ``imports.run`` (the worker task's body); the
tests that run them in real Celery workers are in test_jobs_worker.py and
test_import_faults.py.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app import create_app
from app.extensions import db
from app.models import Job, UploadChunk
from tests.conftest import TEST_SECRET, Account
from tests.importing import (
    assert_finished_invariant,
    assert_job_shape,
    count_errors,
    csv_body,
    get_job,
    post_import,
    run_queued,
    store_items,
)
from tests.problems import assert_invalid, assert_problem, assert_unauthorized


def import_and_run(app, client, account, store_id, body, content_type="text/csv", query=""):
    response = post_import(client, account, store_id, body, content_type, query=query)
    assert response.status_code == 202, response.json
    run_queued(app)
    job = get_job(client, account, response.json["id"])
    assert_job_shape(job)
    assert_finished_invariant(job)
    return job


# --- submission -----------------------------------------------------------------------


def test_accepted_with_location_retry_after_and_the_queued_job(client, alice, store):
    response = post_import(client, alice, store["id"], csv_body([("Tea", "2.50", 3, None, None)]))
    assert response.status_code == 202, response.json
    job = response.json
    assert_job_shape(job)
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert response.headers["Retry-After"] == "1"
    assert job["status"] == "queued" and job["store_id"] == store["id"]
    assert job["mode"] == "upsert" and job["dry_run"] is False
    assert job["progress"] == {
        "total": None,
        "processed": 0,
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "failed": 0,
    }
    assert job["error"] is None and job["started_at"] is None and job["finished_at"] is None
    assert job["created_at"].endswith("Z")
    # The file is stored durably with the job before 202 is sent.
    polled = get_job(client, alice, job["id"])
    assert polled["status"] == "queued" and polled["id"] == job["id"]


def test_body_larger_than_ordinary_requests_is_accepted(client, alice, store):
    rows = [(f"Item {i:07d}", "1.00", i % 9, f"S{i}", "x" * 60) for i in range(30000)]
    body = csv_body(rows)
    assert len(body) > 2 * 1024 * 1024  # twice MAX_CONTENT_LENGTH
    response = post_import(client, alice, store["id"], body)
    assert response.status_code == 202, response.json


def test_file_is_stored_in_database_slices(app, client, alice, store):
    body = csv_body([(f"Item {i:07d}", "1.00", 1, None, "y" * 60) for i in range(40000)])
    response = post_import(client, alice, store["id"], body)
    assert response.status_code == 202
    with app.app_context():
        chunks = db.session.execute(
            select(UploadChunk.seq, func.length(UploadChunk.data)).where(
                UploadChunk.job_id == response.json["id"]
            )
        ).all()
        db.session.remove()
    assert sorted(seq for seq, _ in chunks) == list(range(len(chunks)))
    assert len(chunks) >= 2 and sum(size for _, size in chunks) == len(body.encode())


def test_no_token_is_401(client, store):
    assert_unauthorized(post_import(client, None, store["id"], "name,price\nTea,1\n"))


def test_not_the_owner_is_403(client, bob, store):
    assert_problem(post_import(client, bob, store["id"], "name,price\nTea,1\n"), 403)


def test_unknown_store_is_404(client, alice):
    assert_problem(post_import(client, alice, 999999, "name,price\nTea,1\n"), 404)


def test_empty_body_is_400(client, alice, store):
    assert_problem(post_import(client, alice, store["id"], b""), 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "image/png"])
def test_other_media_types_are_415(client, alice, store, content_type):
    assert_problem(post_import(client, alice, store["id"], "a,b\n", content_type), 415)


def test_multipart_without_file_part_is_400(client, alice, store):
    response = client.post(
        f"/v1/stores/{store['id']}/imports",
        data={"other": (io.BytesIO(b"name,price\nTea,1\n"), "items.csv")},
        content_type="multipart/form-data",
        headers=alice.headers,
    )
    assert_problem(response, 400)


def test_bad_mode_is_422(client, alice, store):
    response = post_import(client, alice, store["id"], "name,price\nT,1\n", query="?mode=merge")
    assert_invalid(response, "mode")


def test_over_max_import_bytes_is_413(app, database_url, redis_server, client, alice, store):
    small = create_app(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server.url,
            "RATELIMIT_ENABLED": "false",
            "SECRET_KEY": TEST_SECRET,
            "MAX_IMPORT_BYTES": "1000",
        }
    )
    limited = small.test_client()
    body = csv_body([(f"Item {i}", "1.00", 1, None, None) for i in range(200)])
    assert_problem(post_import(limited, alice, store["id"], body), 413)
    # Without a Content-Length (chunked), the limit holds while streaming.
    response = limited.post(
        f"/v1/stores/{store['id']}/imports",
        input_stream=io.BytesIO(body.encode()),
        content_type="text/csv",
        headers=alice.headers,
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_problem(response, 413)
    response = post_import(limited, alice, store["id"], "name,price\nTea,1\n")
    assert response.status_code == 202
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 1
        db.session.remove()


# --- idempotency ----------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_first_job(app, client, alice, store):
    body = "name,price\nTea,1\n"
    key = {"Idempotency-Key": "import-42"}
    first = post_import(client, alice, store["id"], body, headers=key)
    again = post_import(client, alice, store["id"], body, headers=key)
    assert first.status_code == 202 and again.status_code == 200, again.json
    assert again.json["id"] == first.json["id"]
    assert again.headers["Location"] == f"/v1/jobs/{first.json['id']}"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 1
        db.session.remove()


def test_same_idempotency_key_with_another_body_or_options_is_422(client, alice, store):
    key = {"Idempotency-Key": "k-1"}
    first = post_import(client, alice, store["id"], "name,price\nA,1\n", headers=key)
    assert first.status_code == 202
    other_body = post_import(client, alice, store["id"], "name,price\nB,1\n", headers=key)
    assert_invalid(other_body, "Idempotency-Key")
    other_mode = post_import(
        client, alice, store["id"], "name,price\nA,1\n", headers=key, query="?mode=replace"
    )
    assert_invalid(other_mode, "Idempotency-Key")


def test_idempotency_keys_belong_to_their_user(client, alice, bob):
    stores = []
    for account in (alice, bob):
        name = {"name": f"S {account.username}"}
        r = client.post("/v1/stores", json=name, headers=account.headers)
        stores.append(r.json["id"])
    key = {"Idempotency-Key": "shared"}
    a = post_import(client, alice, stores[0], "name,price\nA,1\n", headers=key)
    b = post_import(client, bob, stores[1], "name,price\nA,1\n", headers=key)
    assert a.status_code == b.status_code == 202 and a.json["id"] != b.json["id"]


# --- formats --------------------------------------------------------------------------


def test_csv_with_bom_any_column_order_and_defaults(app, client, alice, store):
    body = "\ufeffdescription,price,name,sku,quantity\nHot,2.5,Tea,T-1,4\n,3,Coffee,,\n"
    job = import_and_run(app, client, alice, store["id"], body.encode())
    assert job["status"] == "succeeded" and job["progress"]["created"] == 2
    items = store_items(app, store["id"])
    assert items["Tea"].price == Decimal("2.50") and items["Tea"].quantity == 4
    assert items["Tea"].sku == "T-1" and items["Tea"].description == "Hot"
    assert items["Coffee"].quantity == 0 and items["Coffee"].sku is None
    assert items["Coffee"].description is None


def test_csv_quoted_fields_with_commas_and_newlines(app, client, alice, store):
    body = 'name,price,description\n"Tea, green",1,"line one\nline two"\nMilk,2,\n'
    job = import_and_run(app, client, alice, store["id"], body)
    assert job["progress"]["created"] == 2 and job["progress"]["total"] == 2
    assert store_items(app, store["id"])["Tea, green"].description == "line one\nline two"


def test_json_array(app, client, alice, store):
    rows = [{"name": f"J{i}", "price": i + 0.25, "quantity": i} for i in range(3000)]
    rows.append({"id": 7, "name": "Read-only fields are ignored", "price": "1", "store_id": 99})
    job = import_and_run(
        app, client, alice, store["id"], json.dumps(rows, indent=1), "application/json"
    )
    assert job["status"] == "succeeded" and job["progress"]["created"] == 3001
    assert store_items(app, store["id"])["J2999"].price == Decimal("2999.25")


def test_ndjson(app, client, alice, store):
    body = '{"name": "A", "price": 1}\n\n{"name": "B", "price": "2.10", "sku": "b"}\nnope\n'
    job = import_and_run(app, client, alice, store["id"], body, "application/x-ndjson")
    assert job["progress"] == {**job["progress"], "total": 3, "created": 2, "failed": 1}
    errors = client.get(f"/v1/jobs/{job['id']}/errors", headers=alice.headers).json["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [(3, "row")]


def test_multipart_file_type_from_part_or_name(app, client, alice, store):
    for filename, content_type, payload in (
        ("items.csv", "application/octet-stream", b"name,price\nM1,1\n"),
        ("upload", "application/json", b'[{"name": "M2", "price": 2}]'),
        ("items.ndjson", None, b'{"name": "M3", "price": 3}\n'),
    ):
        part = (
            (io.BytesIO(payload), filename, content_type)
            if content_type
            else (
                io.BytesIO(payload),
                filename,
            )
        )
        response = client.post(
            f"/v1/stores/{store['id']}/imports",
            data={"file": part},
            content_type="multipart/form-data",
            headers=alice.headers,
        )
        assert response.status_code == 202, response.json
    run_queued(app)
    assert set(store_items(app, store["id"])) == {"M1", "M2", "M3"}


# --- row errors -----------------------------------------------------------------------


def test_row_errors_are_numbered_from_the_first_data_row(app, client, alice, store):
    body = csv_body(
        [
            ("Good", "1.00", 1, None, None),
            ("Bad price", "abc", 1, None, None),
            ("Good 2", "2", 2, None, None),
            ("", "1", 1, None, None),
            ("Neg", "-1", -3, None, None),
            ("Cents", "1.999", 1, None, None),
        ]
    )
    job = import_and_run(app, client, alice, store["id"], body)
    assert job["status"] == "succeeded"  # row errors never fail the job
    assert job["progress"]["created"] == 2 and job["progress"]["failed"] == 4
    response = client.get(f"/v1/jobs/{job['id']}/errors", headers=alice.headers)
    assert response.status_code == 200
    errors = response.json["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [
        (2, "price"),
        (4, "name"),
        (5, "price"),
        (5, "quantity"),
        (6, "price"),
    ]
    assert errors[0]["value"] == "abc" and errors[0]["message"]
    assert response.json["next"] is None


def test_error_values_are_truncated(app, client, alice, store):
    body = csv_body([("x" * 500, "1", 1, None, None)])
    job = import_and_run(app, client, alice, store["id"], body)
    error = client.get(f"/v1/jobs/{job['id']}/errors", headers=alice.headers).json["errors"][0]
    assert error["field"] == "name" and 0 < len(error["value"]) <= 200


def test_errors_are_paginated_and_also_csv(app, client, alice, store):
    body = csv_body([(f"I{i}", "nan" if i % 2 else "1", 1, None, None) for i in range(1, 121)])
    job = import_and_run(app, client, alice, store["id"], body)
    assert job["progress"]["failed"] == 60
    seen, url = [], f"/v1/jobs/{job['id']}/errors?limit=25"
    while url:
        page = client.get(url, headers=alice.headers)
        assert page.status_code == 200
        seen += [e["row"] for e in page.json["errors"]]
        url = page.json["next"]
        if url:
            assert page.headers["Link"].startswith(f"<{url}>")
    assert seen == list(range(1, 121, 2))
    response = client.get(
        f"/v1/jobs/{job['id']}/errors", headers={**alice.headers, "Accept": "text/csv"}
    )
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "row,field,message,value" and len(lines) == 61


def test_duplicate_names_in_one_file_first_row_wins(app, client, alice, store):
    body = csv_body(
        [
            ("Tea", "1.00", 1, None, None),
            ("Milk", "2.00", 1, None, None),
            ("Tea", "9.00", 9, None, None),
            ("Milk", "bad", 1, None, None),
        ]
    )
    job = import_and_run(app, client, alice, store["id"], body)
    assert job["progress"]["created"] == 2 and job["progress"]["failed"] == 2
    assert store_items(app, store["id"])["Tea"].price == Decimal("1.00")
    errors = client.get(f"/v1/jobs/{job['id']}/errors", headers=alice.headers).json["errors"]
    assert (3, "name") in [(e["row"], e["field"]) for e in errors]
    assert "Duplicate" in next(e["message"] for e in errors if e["row"] == 3)


# --- modes and dry run ----------------------------------------------------------------


def seed(app, client, account, store_id) -> None:
    body = csv_body([("Keep", "1", 1, None, None), ("Change", "1", 1, None, None)])
    import_and_run(app, client, account, store_id, body)


NEXT_FILE = csv_body([("Change", "5", 5, "c", None), ("New", "2", 2, None, None)])


def test_upsert_creates_and_updates(app, client, alice, store):
    seed(app, client, alice, store["id"])
    job = import_and_run(app, client, alice, store["id"], NEXT_FILE)
    assert job["mode"] == "upsert"
    assert job["progress"] == {
        "total": 2,
        "processed": 2,
        "created": 1,
        "updated": 1,
        "deleted": 0,
        "failed": 0,
    }
    items = store_items(app, store["id"])
    assert set(items) == {"Keep", "Change", "New"}
    assert items["Change"].price == Decimal("5.00") and items["Change"].sku == "c"


def test_create_mode_reports_existing_names_as_row_errors(app, client, alice, store):
    seed(app, client, alice, store["id"])
    job = import_and_run(app, client, alice, store["id"], NEXT_FILE, query="?mode=create")
    assert job["progress"]["created"] == 1 and job["progress"]["failed"] == 1
    assert job["progress"]["updated"] == 0
    assert store_items(app, store["id"])["Change"].price == Decimal("1.00")
    errors = client.get(f"/v1/jobs/{job['id']}/errors", headers=alice.headers).json["errors"]
    assert [(e["row"], e["field"], e["value"]) for e in errors] == [(1, "name", "Change")]


def test_replace_deletes_items_absent_from_the_file(app, client, alice, store):
    seed(app, client, alice, store["id"])
    job = import_and_run(app, client, alice, store["id"], NEXT_FILE, query="?mode=replace")
    p = job["progress"]
    assert (p["created"], p["updated"], p["deleted"]) == (1, 1, 1)
    assert set(store_items(app, store["id"])) == {"Change", "New"}
    assert client.get(f"/v1/stores/{store['id']}").json["item_count"] == 2


def test_replace_keeps_items_named_by_rows_that_failed(app, client, alice, store):
    seed(app, client, alice, store["id"])
    body = csv_body([("Keep", "oops", 1, None, None), ("Change", "3", 1, None, None)])
    job = import_and_run(app, client, alice, store["id"], body, query="?mode=replace")
    assert job["progress"]["deleted"] == 0 and job["progress"]["failed"] == 1
    assert store_items(app, store["id"])["Keep"].price == Decimal("1.00")


def snapshot(app, store_id: int) -> dict:
    return {n: (i.price, i.quantity, i.updated_at) for n, i in store_items(app, store_id).items()}


@pytest.mark.parametrize("mode", ["upsert", "create", "replace"])
def test_dry_run_counts_like_the_real_run_and_changes_nothing(app, client, alice, store, mode):
    seed(app, client, alice, store["id"])
    before = snapshot(app, store["id"])
    dry = import_and_run(
        app, client, alice, store["id"], NEXT_FILE, query=f"?mode={mode}&dry_run=true"
    )
    assert dry["dry_run"] is True and dry["status"] == "succeeded"
    assert snapshot(app, store["id"]) == before
    real = import_and_run(app, client, alice, store["id"], NEXT_FILE, query=f"?mode={mode}")
    assert dry["progress"] == real["progress"]


# --- file errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        ("name,price,colour\nTea,1,red\n", "text/csv", "colour"),
        ("name,quantity\nTea,1\n", "text/csv", "price"),
        (b"name,price\n\xff\xfeTea,1\n", "text/csv", "UTF-8"),
        ('[{"name": "Tea", "price": 1}, {"name": ', "application/json", "JSON"),
        ('{"name": "Tea", "price": 1}', "application/json", "array"),
        ("   \n", "text/csv", "header"),
    ],
)
def test_file_errors_fail_the_job_with_a_problem(
    app, client, alice, store, body, content_type, words
):
    job = import_and_run(app, client, alice, store["id"], body, content_type)
    assert job["status"] == "failed"
    assert job["error"]["status"] == 422 and words in job["error"]["detail"]
    assert {"type", "title", "status", "detail"} <= set(job["error"])
    assert store_items(app, store["id"]) == {}


def test_finished_jobs_release_their_upload(app, client, alice, store):
    job = import_and_run(app, client, alice, store["id"], "name,price\nTea,1\n")
    with app.app_context():
        left = db.session.scalar(
            select(func.count()).select_from(UploadChunk).where(UploadChunk.job_id == job["id"])
        )
        db.session.remove()
    assert left == 0
    assert count_errors(app, job["id"]) == (0, 0)


def test_a_second_account_cannot_poll_the_job(client, alice, store):
    job_id = post_import(client, alice, store["id"], "name,price\nA,1\n").json["id"]
    stranger = Account(client)
    assert_problem(client.get(f"/v1/jobs/{job_id}", headers=stranger.headers), 404)
