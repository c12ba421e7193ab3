"""Helpers shared by the import and job tests: upload, run, poll, check the invariant."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import Item, Job, JobError
from app.services import imports
from tests.conftest import Account

JOB_KEYS = {
    "id",
    "kind",
    "status",
    "store_id",
    "mode",
    "dry_run",
    "progress",
    "percent",
    "error",
    "errors_url",
    "created_at",
    "started_at",
    "finished_at",
}
PROGRESS_KEYS = {"total", "processed", "created", "updated", "deleted", "failed"}
FINISHED = ("succeeded", "failed", "cancelled")


def post_import(
    client: FlaskClient,
    account: Account | None,
    store_id: int,
    body: bytes | str,
    content_type: str = "text/csv",
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Any:
    all_headers = {**(account.headers if account else {}), **(headers or {})}
    data = body.encode() if isinstance(body, str) else body
    return client.post(
        f"/v1/stores/{store_id}/imports{query}",
        data=data,
        content_type=content_type,
        headers=all_headers,
    )


def run_queued(app: Flask) -> list[str]:
    """Run every queued job in this process, as the worker task does (no Celery)."""
    with app.app_context():
        ids = list(db.session.scalars(select(Job.id).where(Job.status == "queued")))
        outcomes = [imports.run(job_id) for job_id in ids]
        db.session.remove()
    assert all(o in FINISHED for o in outcomes), outcomes
    return ids


def get_job(client: FlaskClient, account: Account, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}", headers=account.headers)
    assert response.status_code == 200, response.json
    return response.json


def wait_for_job(
    client: FlaskClient, account: Account, job_id: str, *, timeout: float = 120
) -> dict[str, Any]:
    """Poll the job URL (as a client would) until it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_job(client, account, job_id)
        if job["status"] in FINISHED:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not finish in {timeout}s: {job}")


def assert_job_shape(job: dict[str, Any]) -> None:
    assert set(job) == JOB_KEYS, job
    assert set(job["progress"]) == PROGRESS_KEYS, job["progress"]
    assert job["kind"] == "item_import"
    assert job["errors_url"] == f"/v1/jobs/{job['id']}/errors"


def assert_finished_invariant(job: dict[str, Any]) -> None:
    """The contract: when finished, processed == total == created + updated + failed."""
    p = job["progress"]
    assert job["status"] in FINISHED, job
    assert p["processed"] == p["total"] == p["created"] + p["updated"] + p["failed"], p
    assert job["finished_at"] is not None


def store_items(app: Flask, store_id: int) -> dict[str, Item]:
    with app.app_context():
        rows = db.session.scalars(select(Item).where(Item.store_id == store_id)).all()
        items = {i.name: i for i in rows}
        db.session.expunge_all()
        db.session.remove()
    return items


def count_errors(app: Flask, job_id: str) -> tuple[int, int]:
    """(error rows, distinct data rows with errors) stored for a job."""
    with app.app_context():
        total = db.session.scalar(select(func.count()).where(JobError.job_id == job_id))
        rows = db.session.scalar(
            select(func.count(func.distinct(JobError.row))).where(JobError.job_id == job_id)
        )
        db.session.remove()
    return int(total or 0), int(rows or 0)


def csv_body(rows: list[tuple], header: str = "name,price,quantity,sku,description") -> str:
    lines = [header] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"
