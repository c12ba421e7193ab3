"""Following a job in this process: polls from Redis, ETag/304, long polls, event streams
woken by notices. Real Redis (the session's server), the app's own code, no worker: jobs
run here with ``run_queued``. Served by gunicorn (gevent) in test_job_capacity.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from flask_jwt_extended import create_access_token, decode_token
from sqlalchemy import event, update

from app.extensions import db
from app.models import Job
from app.services import jobs
from app.services.job_state import key
from tests.importing import post_import, run_queued
from tests.problems import assert_invalid

CSV = "name,price\nTea,1\nMilk,x\n"


def submit(client, account, store_id) -> tuple[dict, str]:
    response = post_import(client, account, store_id, CSV)
    assert response.status_code == 202, response.json
    return response.json, response.headers["ETag"]


@contextmanager
def sql_statements(app, thread: threading.Thread | None = None) -> Iterator[list[str]]:
    """The SQL statements run while the block runs (by ``thread`` only, when given)."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        if thread is None or threading.current_thread() is thread:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def set_status_behind_the_services_back(app, job_id: str, status: str) -> None:
    """Change the row without announcing it: Redis keeps the state it had."""
    with app.app_context():
        db.session.execute(update(Job).where(Job.id == job_id).values(status=status))
        db.session.commit()
        db.session.remove()


# --- plain polls ----------------------------------------------------------------------


def test_a_poll_is_served_from_redis_without_any_sql(app, client, alice, store):
    job, etag = submit(client, alice, store["id"])
    with sql_statements(app) as statements:
        response = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers)
    assert response.status_code == 200 and response.json["status"] == "queued"
    assert statements == []
    assert response.headers["ETag"] == etag
    assert response.headers["Retry-After"] == "1"
    # Redis holds the state: a change the services did not announce is not seen...
    set_status_behind_the_services_back(app, job["id"], "running")
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json["status"] == "queued"
    # ...until the key is gone: then the database (the truth) answers and refills Redis.
    redis_client = redis.Redis.from_url(app.config["SETTINGS"].redis_url)
    redis_client.delete(key(job["id"]))
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json["status"] == "running"
    assert redis_client.hget(key(job["id"]), "body") is not None


def test_every_commit_that_changes_a_job_reaches_redis(app, client, alice, store):
    job, _ = submit(client, alice, store["id"])
    redis_client = redis.Redis.from_url(app.config["SETTINGS"].redis_url)
    assert b'"status":"queued"' in redis_client.hget(key(job["id"]), "body")
    run_queued(app)
    stored = redis_client.hgetall(key(job["id"]))
    assert stored[b"finished"] == b"1" and b'"status":"succeeded"' in stored[b"body"]
    response = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers)
    assert response.json["status"] == "succeeded" and "Retry-After" not in response.headers


def test_job_etag_gives_304_and_differs_per_representation(client, alice, store):
    job, etag = submit(client, alice, store["id"])
    url = f"/v1/jobs/{job['id']}"
    response = client.get(url, headers={**alice.headers, "If-None-Match": etag})
    assert response.status_code == 304 and response.data == b""
    assert response.headers["ETag"] == etag and response.headers["Retry-After"] == "1"
    xml = client.get(url, headers={**alice.headers, "Accept": "application/xml"})
    assert xml.status_code == 200 and xml.headers["ETag"] != etag
    stale = client.get(url, headers={**alice.headers, "If-None-Match": '"something-else"'})
    assert stale.status_code == 200


def test_someone_elses_job_is_unknown_from_redis_too(client, alice, bob, store):
    job, _ = submit(client, alice, store["id"])
    for path in ("", "?wait=1", "/events"):
        response = client.get(f"/v1/jobs/{job['id']}{path}", headers=bob.headers)
        assert response.status_code == 404, path


def test_polls_are_answered_by_the_database_while_redis_is_down(
    app, client, alice, store, redis_server
):
    job, _ = submit(client, alice, store["id"])
    run_queued(app)
    redis_server.stop()
    try:
        response = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers)
        assert response.status_code == 200 and response.json["status"] == "succeeded"
        assert response.headers["ETag"]
        waited = client.get(f"/v1/jobs/{job['id']}?wait=2", headers=alice.headers)
        assert waited.status_code == 200 and waited.json["status"] == "succeeded"
    finally:
        redis_server.start()


# --- long polls -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fast", "flask"])
def test_long_poll_answers_304_after_n_seconds_unchanged(client, alice, store, path):
    job, etag = submit(client, alice, store["id"])
    # The fast path takes Prefer or a lone ?wait=N; another parameter sends it to Flask.
    url = f"/v1/jobs/{job['id']}" + ("" if path == "fast" else "?format=json")
    started = time.monotonic()
    headers = {**alice.headers, "Prefer": "wait=2", "If-None-Match": etag}
    response = client.get(url, headers=headers)
    elapsed = time.monotonic() - started
    assert response.status_code == 304 and 1.9 <= elapsed < 4, elapsed
    assert response.headers["Preference-Applied"] == "wait=2"
    assert response.headers["ETag"] == etag and response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("query", ["?wait=1", "?wait=1&format=json"])
def test_long_poll_without_if_none_match_answers_200_after_n_seconds(client, alice, store, query):
    job, _ = submit(client, alice, store["id"])
    started = time.monotonic()
    response = client.get(f"/v1/jobs/{job['id']}{query}", headers=alice.headers)
    assert response.status_code == 200 and response.json["status"] == "queued"
    assert 0.9 <= time.monotonic() - started < 3
    assert response.headers["Preference-Applied"] == "wait=1"


@pytest.mark.parametrize("query", ["", "?format=json"])
def test_long_poll_wakes_on_the_commit_without_reading_the_database(
    app, client, alice, store, query
):
    job, etag = submit(client, alice, store["id"])
    answer: dict = {}

    def hold() -> None:
        started = time.monotonic()
        answer["response"] = app.test_client().get(
            f"/v1/jobs/{job['id']}{query}",
            headers={**alice.headers, "Prefer": "wait=20", "If-None-Match": etag},
        )
        answer["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=hold)
    with sql_statements(app, poller) as statements:
        poller.start()
        time.sleep(0.5)  # the poll is waiting now
        run_queued(app)
        poller.join(timeout=10)
    response = answer["response"]
    assert response.status_code == 200, response.data
    assert response.json["status"] in ("running", "succeeded")
    assert response.headers["ETag"] != etag
    assert response.headers["Preference-Applied"] == "wait=20"
    assert answer["elapsed"] < 5
    assert statements == [], statements


def test_a_finished_job_answers_a_long_poll_at_once(app, client, alice, store):
    job, _ = submit(client, alice, store["id"])
    run_queued(app)
    finished = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers)
    started = time.monotonic()
    for headers, status in (
        ({"Prefer": "wait=99"}, 200),
        ({"Prefer": "respond-async, wait=10", "If-None-Match": finished.headers["ETag"]}, 304),
    ):
        response = client.get(f"/v1/jobs/{job['id']}", headers={**alice.headers, **headers})
        assert response.status_code == status
        assert "Retry-After" not in response.headers
    assert time.monotonic() - started < 1
    assert response.headers["Preference-Applied"] == "wait=10"
    capped = client.get(f"/v1/jobs/{job['id']}", headers={**alice.headers, "Prefer": "wait=99"})
    assert capped.headers["Preference-Applied"] == f"wait={jobs.MAX_WAIT_SECONDS}"


@pytest.mark.parametrize("value", ["0", "26", "abc", "-1", "1.5"])
def test_wait_query_parameter_is_validated(client, alice, store, value):
    job, _ = submit(client, alice, store["id"])
    assert_invalid(client.get(f"/v1/jobs/{job['id']}?wait={value}", headers=alice.headers), "wait")


def test_prefer_without_wait_is_a_plain_poll(client, alice, store):
    job, _ = submit(client, alice, store["id"])
    for prefer in ("respond-async", "wait=0", "return=minimal"):
        started = time.monotonic()
        response = client.get(f"/v1/jobs/{job['id']}", headers={**alice.headers, "Prefer": prefer})
        assert response.status_code == 200 and time.monotonic() - started < 1
        assert "Preference-Applied" not in response.headers


# --- event streams --------------------------------------------------------------------


def parse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "event" in fields:
            events.append(fields)
    return events


def test_event_stream_wakes_on_notices_without_reading_the_database(app, alice, store):
    client = app.test_client()
    job, _ = submit(client, alice, store["id"])
    collected: dict = {}

    def follow() -> None:
        response = app.test_client().get(f"/v1/jobs/{job['id']}/events", headers=alice.headers)
        collected["text"] = response.get_data(as_text=True)

    follower = threading.Thread(target=follow)
    with sql_statements(app, follower) as statements:
        follower.start()
        time.sleep(0.5)
        run_queued(app)
        follower.join(timeout=15)
    events = parse_events(collected["text"])
    assert events[0]["event"] == "progress"
    assert events[-1]["event"] == "done" and '"status":"succeeded"' in events[-1]["data"]
    assert statements == [], statements


# --- the fast path (app/job_polls.py) and the Flask path answer alike ----------------


def both_paths(client, job_id: str, headers: dict) -> tuple:
    """The same poll through the fast path (no query string) and through Flask (a query
    string the fast path never takes: ``?format=json``)."""
    fast = client.get(f"/v1/jobs/{job_id}", headers=headers)
    flask = client.get(f"/v1/jobs/{job_id}?format=json", headers=headers)
    return fast, flask


SAME = ("Content-Type", "ETag", "Cache-Control", "Retry-After", "Vary")


def test_fast_and_flask_paths_give_the_same_poll(app, client, alice, store):
    job, etag = submit(client, alice, store["id"])
    with sql_statements(app) as statements:
        fast, flask = both_paths(client, job["id"], alice.headers)
    assert statements == []  # neither reads the database while Redis has the state
    assert fast.status_code == flask.status_code == 200
    assert fast.data == flask.data
    assert {h: fast.headers.get(h) for h in SAME} == {h: flask.headers.get(h) for h in SAME}
    assert (
        fast.headers["X-Request-ID"]
        and fast.headers["X-Request-ID"] != flask.headers["X-Request-ID"]
    )
    fast, flask = both_paths(client, job["id"], {**alice.headers, "If-None-Match": etag})
    assert fast.status_code == flask.status_code == 304 and fast.data == b""
    head = client.head(f"/v1/jobs/{job['id']}", headers=alice.headers)
    assert head.status_code == 200 and head.data == b"" and head.headers["ETag"] == etag
    run_queued(app)
    fast, flask = both_paths(client, job["id"], {**alice.headers, "If-None-Match": etag})
    assert fast.status_code == flask.status_code == 200 and fast.data == flask.data
    assert "Retry-After" not in fast.headers and "Retry-After" not in flask.headers


def test_fast_path_refusals_are_answered_by_flask_in_its_words(app, client, alice, bob, store):
    job, _ = submit(client, alice, store["id"])
    url = f"/v1/jobs/{job['id']}"
    lower = {"Authorization": f"bearer {alice.access_token}"}  # the scheme's case is free
    assert client.get(url, headers=lower).status_code == 200
    assert client.get(url, headers=bob.headers).status_code == 404
    for authorization in ("", "Bearer", "Bearer not.a.token", f"Basic {alice.access_token}"):
        response = client.get(url, headers={"Authorization": authorization})
        assert response.status_code == 401, authorization
    refresh = {"Authorization": f"Bearer {alice.refresh_token}"}
    assert client.get(url, headers=refresh).status_code == 401
    # Not JSON: the Flask path renders it.
    xml = client.get(url, headers={**alice.headers, "Accept": "application/xml"})
    assert xml.status_code == 200 and xml.mimetype == "application/xml"
    assert client.get(url, headers={**alice.headers, "Accept": "text/csv"}).status_code == 406
    # Missing from Redis: the database answers (and refills the state).
    redis.Redis.from_url(app.config["SETTINGS"].redis_url).delete(key(job["id"]))
    assert client.get(url, headers=alice.headers).json["id"] == job["id"]
    # A logout is honoured at once, and after a flush of the blocklist too.
    assert client.post("/v1/auth/logout", headers=alice.headers).status_code == 204
    assert client.get(url, headers=alice.headers).status_code == 401
    redis.Redis.from_url(app.config["SETTINGS"].redis_url).flushdb()
    assert client.get(url, headers=alice.headers).status_code == 401


def test_a_remembered_token_is_refused_once_it_expires(app, client, alice, store):
    job, _ = submit(client, alice, store["id"])
    url = f"/v1/jobs/{job['id']}"
    with app.app_context():
        sid = decode_token(alice.access_token)["sid"]
        short = create_access_token(
            str(alice.id), expires_delta=timedelta(seconds=1), additional_claims={"sid": sid}
        )
    headers = {"Authorization": f"Bearer {short}"}
    assert [client.get(url, headers=headers).status_code for _ in range(3)] == [200] * 3
    time.sleep(1.2)
    assert client.get(url, headers=headers).status_code == 401
