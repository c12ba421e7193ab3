"""The job endpoints: read, list, errors, cancel, events; privacy; reaper and retention.

Jobs run in this process (``imports.run``) or not at all; real workers are in
test_jobs_worker.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app import create_app
from app.extensions import db
from app.models import Job, JobError, UploadChunk, utcnow
from app.services import jobs
from tests.conftest import TEST_SECRET
from tests.importing import (
    assert_finished_invariant,
    assert_job_shape,
    get_job,
    post_import,
    run_queued,
)
from tests.problems import assert_problem, assert_unauthorized

CSV = "name,price\nTea,1\nMilk,x\n"


def submit(client, account, store_id, body=CSV, query=""):
    response = post_import(client, account, store_id, body, query=query)
    assert response.status_code == 202, response.json
    return response.json


def sibling_app(database_url, redis_server, **env):
    """Another app on the same database and Redis, with its own settings."""
    config = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "RATELIMIT_ENABLED": "false",
        "SECRET_KEY": TEST_SECRET,
        **env,
    }
    return create_app(config)


# --- reading --------------------------------------------------------------------------


def test_job_carries_retry_after_until_finished(app, client, alice, store):
    job = submit(client, alice, store["id"])
    response = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers)
    assert response.status_code == 200 and response.headers["Retry-After"] == "1"
    assert response.headers["Vary"] == "Accept"
    run_queued(app)
    response = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers)
    assert "Retry-After" not in response.headers
    finished = response.json
    assert_job_shape(finished)
    assert_finished_invariant(finished)
    assert finished["status"] == "succeeded" and finished["percent"] == 100.0
    assert finished["progress"]["created"] == 1 and finished["progress"]["failed"] == 1
    assert finished["started_at"] <= finished["finished_at"]


def test_job_in_xml(client, alice, store):
    job = submit(client, alice, store["id"])
    response = client.get(
        f"/v1/jobs/{job['id']}", headers={**alice.headers, "Accept": "application/xml"}
    )
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert job["id"].encode() in response.data


def test_jobs_need_a_token(client):
    assert_unauthorized(client.get("/v1/jobs"))
    assert_unauthorized(client.get(f"/v1/jobs/{uuid.uuid4()}"))


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "x" * 300])
def test_unknown_job_is_404_never_a_made_up_queued(client, alice, job_id):
    for path in ("", "/errors", "/events"):
        assert_problem(client.get(f"/v1/jobs/{job_id}{path}", headers=alice.headers), 404)
    assert_problem(client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers), 404)


def test_someone_elses_job_is_404(app, client, alice, bob, store):
    job = submit(client, alice, store["id"])
    for path in ("", "/errors", "/events"):
        assert_problem(client.get(f"/v1/jobs/{job['id']}{path}", headers=bob.headers), 404)
    assert_problem(client.post(f"/v1/jobs/{job['id']}/cancel", headers=bob.headers), 404)
    assert client.get("/v1/jobs", headers=bob.headers).json["jobs"] == []
    assert get_job(client, alice, job["id"])["status"] == "queued"  # cancel did nothing


def test_list_is_the_callers_newest_first_filtered_and_paginated(app, client, alice, store):
    ids = [submit(client, alice, store["id"])["id"] for _ in range(3)]
    run_queued(app)
    fourth = submit(client, alice, store["id"])["id"]
    listed = client.get("/v1/jobs", headers=alice.headers).json
    assert [j["id"] for j in listed["jobs"]] == [fourth, *reversed(ids)]
    assert listed["next"] is None
    assert_job_shape(listed["jobs"][0])
    queued = client.get("/v1/jobs?status=queued", headers=alice.headers).json["jobs"]
    assert [j["id"] for j in queued] == [fourth]
    done = client.get("/v1/jobs?status=succeeded", headers=alice.headers).json["jobs"]
    assert [j["id"] for j in done] == list(reversed(ids))
    assert client.get("/v1/jobs?status=nope", headers=alice.headers).status_code == 422
    seen, url = [], "/v1/jobs?limit=3"
    while url:
        page = client.get(url, headers=alice.headers)
        seen += [j["id"] for j in page.json["jobs"]]
        url = page.json["next"]
    assert seen == [fourth, *reversed(ids)]


# --- cancel ---------------------------------------------------------------------------


def test_cancel_a_queued_job_then_409(app, client, alice, store):
    job = submit(client, alice, store["id"])
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert response.status_code == 202, response.json
    assert response.json["status"] == "cancelled"
    assert_finished_invariant(response.json)
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert_problem(again, 409)
    assert run_queued(app) == []  # nothing left to run: the worker would skip it
    with app.app_context():
        chunks = db.session.scalar(select(func.count()).select_from(UploadChunk))
        db.session.remove()
    assert chunks == 0


def test_cancel_a_finished_job_is_409(app, client, alice, store):
    job = submit(client, alice, store["id"])
    run_queued(app)
    assert_problem(client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers), 409)
    assert get_job(client, alice, job["id"])["status"] == "succeeded"


def test_cancel_a_running_job_is_honoured_at_the_next_chunk(app, client, alice, store):
    # Chunks of 5000 rows, so the file has boundaries before its end.
    app.config["SETTINGS"] = dataclasses.replace(app.config["SETTINGS"], import_chunk_rows=5000)
    rows = "".join(f"Item {i},1\n" for i in range(12000))
    job = submit(client, alice, store["id"], "name,price\n" + rows)
    with app.app_context():
        # What the worker's claim does, then the client's cancel arrives.
        lease = jobs.claim(job["id"])
        assert lease is not None
        db.session.remove()
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert response.status_code == 202 and response.json["status"] == "running"
    with app.app_context():
        db.session.execute(
            update(Job).where(Job.id == job["id"]).values(status="queued", lease=None)
        )
        db.session.commit()
        db.session.remove()
    run_queued(app)  # the run stops at its first chunk boundary (5000 rows)
    finished = get_job(client, alice, job["id"])
    assert finished["status"] == "cancelled"
    assert_finished_invariant(finished)
    assert finished["progress"]["processed"] == 5000
    assert client.get(f"/v1/stores/{store['id']}").json["item_count"] == 5000


# --- events ---------------------------------------------------------------------------


def parse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line.startswith(":") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "event" in fields:
            events.append(fields)
    return events


def test_events_of_a_finished_job_end_with_done(app, client, alice, store):
    job = submit(client, alice, store["id"])
    run_queued(app)
    response = client.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events = parse_events(response.get_data(as_text=True))
    assert [e["event"] for e in events] == ["done"]
    assert '"status":"succeeded"' in events[0]["data"]


def test_events_stream_has_a_bounded_life_and_honours_last_event_id(
    database_url, redis_server, client, alice, store
):
    job = submit(client, alice, store["id"])
    short = sibling_app(database_url, redis_server, JOB_EVENTS_SECONDS="1").test_client()
    first = short.get(f"/v1/jobs/{job['id']}/events", headers=alice.headers)
    text = first.get_data(as_text=True)  # returns: the stream ends by itself
    events = parse_events(text)
    assert [e["event"] for e in events] == ["progress"]
    assert "retry:" in text and "reconnect" in text
    again = short.get(
        f"/v1/jobs/{job['id']}/events",
        headers={**alice.headers, "Last-Event-ID": events[0]["id"]},
    )
    assert parse_events(again.get_data(as_text=True)) == []  # nothing new to say


# --- reaper and retention -------------------------------------------------------------


def age(app, job_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(Job).where(Job.id == job_id).values(**values))
        db.session.commit()
        db.session.remove()


def test_reaper_resends_stale_jobs_and_fails_hopeless_ones(app, client, alice, store):
    lost_message = submit(client, alice, store["id"])["id"]
    dead_worker = submit(client, alice, store["id"], "name,price\nA,1\n")["id"]
    hopeless = submit(client, alice, store["id"], "name,price\nB,1\n")["id"]
    fresh = submit(client, alice, store["id"], "name,price\nC,1\n")["id"]
    long_ago = utcnow() - timedelta(hours=1)
    age(app, lost_message, heartbeat_at=long_ago)
    age(app, dead_worker, status="running", lease="gone", attempts=1, heartbeat_at=long_ago)
    age(app, hopeless, status="running", lease="gone", attempts=5, heartbeat_at=long_ago)
    with app.app_context():
        resent = jobs.reap()
        db.session.remove()
    assert sorted(resent) == sorted([lost_message, dead_worker])
    assert get_job(client, alice, dead_worker)["status"] == "queued"
    failed = get_job(client, alice, hopeless)
    assert failed["status"] == "failed" and "interrupted 5 times" in failed["error"]["detail"]
    assert_finished_invariant(failed)
    assert get_job(client, alice, fresh)["status"] == "queued"
    with app.app_context():
        assert jobs.reap() == []  # each stale job is re-sent once, not on every pass
        db.session.remove()
    run_queued(app)
    assert get_job(client, alice, dead_worker)["status"] == "succeeded"


def test_finished_jobs_expire_after_the_retention(app, client, alice, store):
    old = submit(client, alice, store["id"])["id"]
    recent = submit(client, alice, store["id"])["id"]
    running = submit(client, alice, store["id"])["id"]
    run_queued(app)
    age(app, old, finished_at=utcnow() - timedelta(days=8))
    age(app, running, status="running", finished_at=None, created_at=utcnow() - timedelta(days=30))
    with app.app_context():
        assert jobs.expire() == 1
        left = set(db.session.scalars(select(Job.id)))
        errors = db.session.scalar(
            select(func.count()).select_from(JobError).where(JobError.job_id == old)
        )
        db.session.remove()
    assert left == {recent, running} and errors == 0
    assert_problem(client.get(f"/v1/jobs/{old}", headers=alice.headers), 404)
