"""Faults while importing, with processes these tests own: the worker killed (SIGKILL) at
random points and restarted, a warm shutdown (SIGTERM), Redis lost with a job queued.

The contract: a job ends with exactly the state and counts of an uninterrupted run, and
never stays queued or running forever when no worker holds it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Item, Job
from tests.importing import (
    assert_finished_invariant,
    count_errors,
    get_job,
    post_import,
    run_queued,
    wait_for_job,
)
from tests.services import Process, start_worker, wait_until

# A small JOB_STALE_AFTER so the reaper acts within seconds; small chunks so a kill
# lands between many checkpoints, each chunk written in several statements (a kill
# inside a chunk leaves statements written but not committed).
WORKER_ENV = {
    "JOB_STALE_AFTER": "2",
    "IMPORT_CHUNK_ROWS": "1500",
    "IMPORT_BATCH_ROWS": "500",
    "JOB_MAX_ATTEMPTS": "20",
}
ROWS = 100_000
SEEDED = 20_000


class FaultFile:
    """100 000 rows with bad prices and in-file duplicates, and what a clean run gives."""

    def __init__(self, rows: int = ROWS, existing: set[str] | None = None) -> None:
        existing = existing or set()
        lines = ["name,price,quantity"]
        seen: set[str] = set()
        self.created = self.updated = self.failed = self.error_entries = 0
        self.prices: dict[str, str] = {}
        for i in range(rows):
            name = f"Item {i - 500:06d}" if i % 1009 == 1008 else f"Item {i:06d}"
            price = "bad" if i % 997 == 996 else f"{i % 500}.25"
            lines.append(f"{name},{price},{i % 10}")
            duplicate, bad = name in seen, price == "bad"
            seen.add(name)
            if duplicate or bad:
                self.failed += 1
                self.error_entries += int(duplicate) + int(bad)
            elif name in existing:
                self.updated += 1
                self.prices[name] = price
            else:
                self.created += 1
                self.prices[name] = price
        self.body = ("\n".join(lines) + "\n").encode()


def seed_store(app, client, account, store_id: int) -> set[str]:
    names = {f"Item {i:06d}" for i in range(0, SEEDED * 2, 2)}  # every other one
    body = "name,price\n" + "".join(f"{n},0.01\n" for n in sorted(names))
    assert post_import(client, account, store_id, body).status_code == 202
    run_queued(app)
    return names


def job_row(app, job_id: str) -> tuple[str, int]:
    with app.app_context():
        row = db.session.execute(select(Job.status, Job.processed).where(Job.id == job_id)).one()
        db.session.remove()
    return row[0], row[1]


def own_worker(service_env: dict[str, str], tmp_path) -> Process:
    """A worker started by hand, ready once its log says so. (The celery_worker fixture
    pings through this process's broker connections, which a Redis restart breaks.)"""
    worker = start_worker({**service_env, **WORKER_ENV}, tmp_path / "own-worker.log")
    try:
        wait_until(lambda: " ready." in worker.output(), timeout=60, what="celery worker")
    except TimeoutError:
        worker.stop()
        raise
    return worker


def restart_redis(app, redis_server, *, stop: bool = True) -> None:
    if stop:
        redis_server.stop()
    redis_server.start()
    # This process's pooled broker connections point at the dead server (the
    # celery_worker fixture pings through them).
    app.extensions["celery"].close()


def progressed(app, job_id: str, since: int) -> bool:
    status, done = job_row(app, job_id)
    return status in ("succeeded", "failed", "cancelled") or (status == "running" and done > since)


def assert_exact_end_state(app, client, account, store_id: int, job_id: str, expected) -> None:
    job = wait_for_job(client, account, job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert_finished_invariant(job)
    p = job["progress"]
    assert (p["total"], p["created"], p["updated"], p["failed"]) == (
        ROWS,
        expected.created,
        expected.updated,
        expected.failed,
    )
    with app.app_context():
        items = dict(
            db.session.execute(select(Item.name, Item.price).where(Item.store_id == store_id)).all()
        )
        distinct = db.session.scalar(
            select(func.count(func.distinct(Item.name))).where(Item.store_id == store_id)
        )
        db.session.remove()
    assert distinct == len(items) == SEEDED + expected.created  # no duplicate, none lost
    wrong = [n for n, price in expected.prices.items() if str(items[n]) != price]
    assert wrong == []
    assert count_errors(app, job_id) == (expected.error_entries, expected.failed)


def test_sigkill_at_random_points_then_restart_gives_exact_counts(
    app, client, celery_worker, alice, store
):
    existing = seed_store(app, client, alice, store["id"])
    expected = FaultFile(existing=existing)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    worker = celery_worker(**WORKER_ENV)
    job_id = post_import(client, alice, store["id"], expected.body).json["id"]
    killed_mid_run, last = 0, -1
    for _ in range(3):
        # Wait for progress since the last restart, then kill at a random moment.
        wait_until(lambda n=last: progressed(app, job_id, n), timeout=90, what="progress")
        status, _done = job_row(app, job_id)
        if status != "running":
            break
        time.sleep(rng.uniform(0, 0.4))
        worker.signal(signal.SIGKILL)
        worker.proc.wait(timeout=10)
        status, last = job_row(app, job_id)
        killed_mid_run += status == "running"
        worker = celery_worker(**WORKER_ENV)
    print(f"kills that landed mid-run: {killed_mid_run} (random seed {seed})")
    assert killed_mid_run >= 1, f"no kill landed mid-run (seed {seed})"
    assert_exact_end_state(app, client, alice, store["id"], job_id, expected)
    with app.app_context():
        attempts = db.session.scalar(select(Job.attempts).where(Job.id == job_id))
        db.session.remove()
    assert attempts >= 2


def test_sigterm_stops_within_30s_and_the_job_completes_after_restart(
    app, client, celery_worker, alice, store
):
    existing = seed_store(app, client, alice, store["id"])
    expected = FaultFile(existing=existing)
    worker = celery_worker(**WORKER_ENV)
    job_id = post_import(client, alice, store["id"], expected.body).json["id"]
    wait_until(lambda: job_row(app, job_id)[1] > 0, timeout=90, what="the import to start")
    worker.signal(signal.SIGTERM)
    # Heroku sends SIGKILL 30 s after SIGTERM: the worker must be gone by then.
    try:
        worker.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not exit within 30 s of SIGTERM")
    status, done = job_row(app, job_id)
    if status != "succeeded":
        assert status == "queued", status  # given back, not left running
        assert done % 1500 == 0 and done < ROWS  # the chunk in hand finished; no partial one
    celery_worker(**WORKER_ENV)
    assert_exact_end_state(app, client, alice, store["id"], job_id, expected)


def test_redis_lost_with_a_job_queued_the_reaper_finishes_it(
    app, client, service_env, redis_server, alice, store, tmp_path
):
    response = post_import(client, alice, store["id"], "name,price\nTea,1\nMilk,2\n")
    job_id = response.json["id"]
    restart_redis(app, redis_server)  # the queued message dies with Redis (no persistence)
    worker = own_worker(service_env, tmp_path)
    try:
        job = wait_for_job(client, alice, job_id, timeout=90)
    finally:
        worker.stop()
    assert job["status"] == "succeeded" and job["progress"]["created"] == 2


def test_broker_down_at_submission_still_202_and_the_job_runs_later(
    app, client, service_env, redis_server, alice, store, tmp_path
):
    worker = own_worker(service_env, tmp_path)
    redis_server.stop()
    try:
        response = post_import(client, alice, store["id"], "name,price\nTea,1\n")
        assert response.status_code == 202, response.json
        assert get_job(client, alice, response.json["id"])["status"] == "queued"
    finally:
        restart_redis(app, redis_server, stop=False)
    try:
        job = wait_for_job(client, alice, response.json["id"], timeout=90)
    finally:
        worker.stop()
    assert job["status"] == "succeeded" and job["progress"]["created"] == 1
