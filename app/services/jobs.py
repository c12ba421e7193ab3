"""Job lifecycle: submit (job + file in one transaction), dispatch, read, cancel, claim,
heartbeat, release, reap stale jobs and expire finished ones.

The job row is the truth about a job. A worker holds a job through a *lease* (a fresh
token written by its claim); every checkpoint is written ``WHERE lease = <ours>``, so a
worker that lost its job (reaped as stale, then claimed elsewhere) can never commit
another chunk for it.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from app import signals
from app.config import Settings
from app.extensions import db
from app.models import Job, JobError, Store, UploadChunk, User, utcnow
from app.services import uploads
from app.services.errors import Conflict, Invalid, NotFound
from app.services.pagination import Page, SortKey, paginate

log = logging.getLogger(__name__)

TASK_NAME = "imports.run"
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ACTIVE + TERMINAL
MODES = ("upsert", "create", "replace")
MAX_WAIT_SECONDS = 25  # a long poll's longest hold, inside Heroku's 30 s router timeout


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def announce(*job_ids: str) -> None:
    """After a commit that changed these jobs: tell the listeners (the job-state store).

    The commit stands whatever a listener does, so a failing one is logged, not raised.
    """
    if not job_ids:
        return
    try:
        signals.job_changed.send(current_app._get_current_object(), job_ids=job_ids)  # type: ignore[attr-defined]  # a LocalProxy
    except Exception:
        log.exception("jobs %s changed but announcing it failed", ", ".join(job_ids))


def new_job_id() -> str:
    """A UUID version 7 (RFC 9562): a millisecond timestamp then random bits."""
    millis = time.time_ns() // 1_000_000
    rand = secrets.randbits(74)
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


# --- submit and read (web side) -------------------------------------------------------


def submit(
    *,
    user: User,
    store: Store,
    file_format: str,
    mode: str,
    dry_run: bool,
    spooled: uploads.Spooled,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Record a queued job and its file in one transaction: ``(job, True)`` when new,
    ``(first job, False)`` for a repeated ``Idempotency-Key`` with the same request."""
    if idempotency_key:
        prior = _by_key(user.id, idempotency_key)
        if prior is not None:
            return _same_request(prior, spooled.sha256), False
    now = utcnow()
    job = Job(
        id=new_job_id(),
        kind="item_import",
        user_id=user.id,
        store_id=store.id,
        status="queued",
        mode=mode,
        dry_run=dry_run,
        file_format=file_format,
        upload_bytes=spooled.size,
        body_sha256=spooled.sha256,
        idempotency_key=idempotency_key,
        created_at=now,
        heartbeat_at=now,
    )
    db.session.add(job)
    db.session.flush()
    uploads.store(db.session, job.id, spooled)
    try:
        db.session.commit()
    except IntegrityError:
        # Two requests with one key at once: the other committed first.
        db.session.rollback()
        prior = _by_key(user.id, idempotency_key) if idempotency_key else None
        if prior is None:
            raise
        return _same_request(prior, spooled.sha256), False
    announce(job.id)
    return job, True


def _by_key(user_id: int, key: str) -> Job | None:
    return db.session.scalar(select(Job).where(Job.user_id == user_id, Job.idempotency_key == key))


def _same_request(job: Job, sha256: str) -> Job:
    if job.body_sha256 != sha256:
        raise Invalid(
            "This Idempotency-Key was used with a different request.",
            errors=[
                {
                    "field": "Idempotency-Key",
                    "message": "Already used for another body or other options.",
                }
            ],
        )
    return job


def dispatch(job_id: str) -> bool:
    """Send the task for ``job_id`` (the id only). A broker that is down is logged, not
    raised: the job is recorded and the reaper sends it again later."""
    celery = current_app.extensions["celery"]
    try:
        celery.send_task(
            TASK_NAME,
            args=[job_id],
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        )
        return True
    except Exception as exc:  # any broker failure: the reaper will resend
        log.warning("job %s recorded but not sent (broker: %s); the reaper will", job_id, exc)
        return False


def get_job(user: User, job_id: str) -> Job:
    """The caller's job; someone else's is as unknown as a job that does not exist."""
    job = db.session.get(Job, job_id) if len(job_id) <= 36 else None
    if job is None or job.user_id != user.id:
        raise NotFound(f"No job with id {job_id}.")
    return job


def list_jobs(user: User, *, status: str | None, limit: int, cursor: str | None) -> Page:
    query = select(Job).where(Job.user_id == user.id)
    if status:
        query = query.where(Job.status == status)
    return paginate(query, SortKey((Job.id,), descending=True), limit=limit, cursor=cursor)


def list_errors(job: Job, *, limit: int, cursor: str | None) -> Page:
    query = select(JobError).where(JobError.job_id == job.id)
    return paginate(query, SortKey((JobError.row, JobError.id)), limit=limit, cursor=cursor)


def iter_errors(job: Job, batch: int = 2000) -> Iterator[JobError]:
    """Every row error of a job, in keyset batches (CSV export)."""
    cursor: str | None = None
    while True:
        page = list_errors(job, limit=batch, cursor=cursor)
        yield from page.rows
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
        db.session.expunge_all()


def cancel(job: Job) -> Job:
    """Cancel a job. Ended now when no worker holds it (queued, or running with no live
    worker: its worker died); otherwise its worker stops at the next chunk boundary, and
    if that worker dies instead, whoever finds the job stale ends it (reaper, claim)."""
    if job.status in TERMINAL:
        raise Conflict(f"Job {job.id} has already finished ({job.status}).")
    now = utcnow()
    cutoff = now - timedelta(seconds=settings().job_stale_after)
    for _ in range(3):  # the job may move between queued and running as we look
        unheld = or_(
            Job.status == "queued", and_(Job.status == "running", Job.heartbeat_at < cutoff)
        )
        ended = db.session.execute(
            update(Job)
            .where(Job.id == job.id, unheld)
            .values(cancel_requested=True, **ended_values("cancelled", now))
        ).rowcount
        if ended:
            uploads.delete_upload(db.session, job.id)
            break
        flagged = db.session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running")
            .values(cancel_requested=True)
        ).rowcount
        if flagged or db.session.scalar(select(Job.status).where(Job.id == job.id)) in TERMINAL:
            break
    db.session.commit()
    announce(job.id)
    db.session.refresh(job)
    if job.status in ("succeeded", "failed"):
        raise Conflict(f"Job {job.id} has already finished ({job.status}).")
    return job


def ended_values(status: str, now: datetime, error: dict | None = None) -> dict[str, Any]:
    """The values that end a job: finished now, held by no one, its count final (every
    path that ends a job writes these: cancel, reap, fail, the import's own finish)."""
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "heartbeat_at": now,
        "lease": None,
        "total": Job.processed,
    }
    if error is not None:
        values["error"] = error
    return values


def end_for_deleted_store(store_id: int) -> None:
    """In the caller's transaction, before its store is deleted: the store's unfinished
    jobs end ``failed`` now. A worker holding one loses its lease, so it stops at its next
    chunk without writing (that chunk could only fail: its store is gone)."""
    error = file_problem(
        f"Store {store_id} was deleted before the import finished; the rows applied "
        "until then went with it.",
        title="Store deleted",
        status=410,
    )
    ids = list(
        db.session.scalars(select(Job.id).where(Job.store_id == store_id, Job.status.in_(ACTIVE)))
    )
    if not ids:
        return
    db.session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.status.in_(ACTIVE))
        .values(**ended_values("failed", utcnow(), error))
    )
    for job_id in ids:
        uploads.delete_upload(db.session, job_id)


# --- worker side ----------------------------------------------------------------------


def claim(job_id: str) -> str | None:
    """Take the job if it is queued, or running without a live worker; returns the lease."""
    now = utcnow()
    cutoff = now - timedelta(seconds=settings().job_stale_after)
    lease = str(uuid.uuid4())
    claimed = db.session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                Job.status == "queued",
                # A cancelled orphan is ended by the reaper, never run again.
                and_(
                    Job.status == "running",
                    Job.heartbeat_at < cutoff,
                    Job.cancel_requested.is_(False),
                ),
            ),
        )
        .values(
            status="running",
            lease=lease,
            attempts=Job.attempts + 1,
            started_at=db.func.coalesce(Job.started_at, now),
            heartbeat_at=now,
        )
    ).rowcount
    db.session.commit()
    if claimed != 1:
        return None
    announce(job_id)
    return lease


def release(job_id: str, lease: str) -> bool:
    """Give a job back (warm shutdown): queued again, this attempt not counted; or, if
    a cancel arrived meanwhile, ended ``cancelled``."""
    now = utcnow()
    held = (Job.id == job_id, Job.lease == lease, Job.status == "running")
    cancelled = db.session.execute(
        update(Job)
        .where(*held, Job.cancel_requested.is_(True))
        .values(**ended_values("cancelled", now))
    ).rowcount
    if cancelled:
        uploads.delete_upload(db.session, job_id)
    released = db.session.execute(
        update(Job)
        .where(*held)
        .values(status="queued", lease=None, attempts=Job.attempts - 1, heartbeat_at=now)
    ).rowcount
    db.session.commit()
    if released or cancelled:
        announce(job_id)
    return released == 1


# Why an attempt failed, as recorded: long enough to tell failures apart, short enough
# to show.
REASON_CHARS = 500
_WORKER_LOST = re.compile(r"exited prematurely: (.+?)(?: Job: \d+)?\.?$")
_NUMBERS = re.compile(r"[0-9]+")


def failure_reason(exc: BaseException) -> str:
    """An exception as the reason a job's attempt failed: the driver's own error for a
    database error (SQLAlchemy's text carries the statement and its parameters)."""
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text}"[:REASON_CHARS]


def crash_reason(worker_lost: str) -> str:
    """Celery's ``WorkerLostError`` text as the reason (without its varying job number)."""
    found = _WORKER_LOST.search(worker_lost)
    how = found.group(1) if found else worker_lost
    return f"The worker process running the import died ({how})."[:REASON_CHARS]


def same_failure(last: str | None, reason: str) -> bool:
    """Whether two attempts failed the same way: the same reason but for its numbers (a
    database error names the row it refused, and the row's id is new each attempt)."""
    return last is not None and _NUMBERS.sub("#", last) == _NUMBERS.sub("#", reason)


def record_failure(job_id: str, reason: str, *, lease: str | None = None) -> str:
    """An attempt at a running job failed with ``reason`` (it raised, or its worker
    process died, seen by the worker's main process): the job is no longer held.

    The same reason twice in a row (``same_failure``; no chunk committed in between) is a
    poison job: it ends ``failed`` with that reason now, not after ``JOB_MAX_ATTEMPTS``
    stale timeouts; so does any failure once the job has had ``JOB_MAX_ATTEMPTS`` claims.
    Otherwise the job is queued again at once (returns ``retry``: the caller re-sends
    it). A job with a cancel requested is ended ``cancelled``. Returns ``lost`` when the
    job is not (or no longer) running under ``lease``.
    """
    conf = settings()
    now = utcnow()
    row = db.session.execute(
        select(Job.lease, Job.last_failure, Job.attempts, Job.cancel_requested).where(
            Job.id == job_id, Job.status == "running"
        )
    ).first()
    if row is None or (lease is not None and row.lease != lease):
        db.session.commit()
        return "lost"
    if row.cancel_requested:
        outcome, values = "cancelled", ended_values("cancelled", now)
    elif same_failure(row.last_failure, reason) or row.attempts >= conf.job_max_attempts:
        twice = same_failure(row.last_failure, reason)
        why = "twice in a row" if twice else f"{row.attempts} times"
        error = file_problem(
            f"The import failed {why}, so it was stopped. {reason}",
            title="Import failed",
            status=500,
        )
        outcome, values = "failed", ended_values("failed", now, error)
    else:
        outcome = "retry"
        values = {"status": "queued", "lease": None, "heartbeat_at": now}
    values["last_failure"] = reason
    done = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.lease == row.lease)
        .values(**values)
    ).rowcount
    if not done:
        db.session.commit()
        return "lost"
    if outcome != "retry":
        uploads.delete_upload(db.session, job_id)
    db.session.commit()
    announce(job_id)
    log.warning("job %s: attempt failed (%s); %s", job_id, reason, outcome)
    return outcome


def file_problem(detail: str, title: str = "Unprocessable file", status: int = 422) -> dict:
    """The ``error`` of a job whose file as a whole was rejected (RFC 9457 shape)."""
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


def reap() -> list[str]:
    """Jobs queued or running with no live worker for ``JOB_STALE_AFTER`` seconds: queued
    again (the caller re-sends them), or failed after ``JOB_MAX_ATTEMPTS`` claims.

    Every change is a compare-and-set on the stale state, so any number of reapers may
    run at once and a job is re-sent by one of them only.
    """
    conf = settings()
    now = utcnow()
    cutoff = now - timedelta(seconds=conf.job_stale_after)
    stale = db.session.execute(
        select(Job.id, Job.status, Job.attempts, Job.cancel_requested)
        .where(Job.status.in_(ACTIVE), Job.heartbeat_at < cutoff)
        .order_by(Job.heartbeat_at)
        .limit(200)
    ).all()
    resend: list[str] = []
    changed: list[str] = []
    for job_id, status, attempts, cancel_requested in stale:
        still_stale = (Job.id == job_id, Job.status == status, Job.heartbeat_at < cutoff)
        if cancel_requested:  # its worker died before it could stop: stopped now
            if db.session.execute(
                update(Job).where(*still_stale).values(**ended_values("cancelled", now))
            ).rowcount:
                changed.append(job_id)
                uploads.delete_upload(db.session, job_id)
                log.info("job %s was cancelled while no worker held it; cancelled", job_id)
            continue
        if status == "running" and attempts >= conf.job_max_attempts:
            error = file_problem(
                f"The import was interrupted {attempts} times without finishing; it was given up.",
                title="Import abandoned",
                status=500,
            )
            done = db.session.execute(
                update(Job).where(*still_stale).values(**ended_values("failed", now, error))
            ).rowcount
            if done:
                changed.append(job_id)
                uploads.delete_upload(db.session, job_id)
                log.warning("job %s failed after %s attempts", job_id, attempts)
            continue
        moved = db.session.execute(
            update(Job).where(*still_stale).values(status="queued", lease=None, heartbeat_at=now)
        ).rowcount
        if moved:
            changed.append(job_id)
            resend.append(job_id)
            log.info("job %s was %s with no live worker; re-sending it", job_id, status)
    db.session.commit()
    announce(*changed)
    return resend


def expire(now: datetime | None = None, batch: int = 500) -> int:
    """Delete jobs (their errors and uploads) finished more than the retention ago."""
    cutoff = (now or utcnow()) - timedelta(days=settings().job_retention_days)
    ids = list(db.session.scalars(select(Job.id).where(Job.finished_at < cutoff).limit(batch)))
    if ids:
        db.session.execute(delete(JobError).where(JobError.job_id.in_(ids)))
        db.session.execute(delete(UploadChunk).where(UploadChunk.job_id.in_(ids)))
        db.session.execute(delete(Job).where(Job.id.in_(ids)))
    db.session.commit()
    announce(*ids)
    return len(ids)


class Heartbeat:
    """A thread that marks the job alive every ``interval`` seconds while it runs."""

    def __init__(self, engine: Engine, job_id: str, lease: str, interval: float) -> None:
        self._engine, self._job_id, self._lease = engine, job_id, lease
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def _run(self) -> None:
        query = update(Job).where(
            Job.id == self._job_id, Job.lease == self._lease, Job.status == "running"
        )
        while not self._stop.wait(self._interval):
            try:
                with self._engine.begin() as conn:
                    conn.execute(query.values(heartbeat_at=utcnow()))
            except Exception as exc:  # a missed beat is not fatal; the next may land
                log.warning("heartbeat for job %s failed: %s", self._job_id, exc)


# --- representation -------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def percent(job: Job) -> float:
    """The share of the file read (``total`` is unknown until the end); 100 on success."""
    if job.status == "succeeded":
        return 100.0
    if not job.upload_bytes:
        return 0.0
    share = round(100.0 * job.bytes_done / job.upload_bytes, 1)
    return min(99.9 if job.status in ACTIVE else 100.0, share)


def to_dict(job: Job) -> dict[str, Any]:
    """A job as the contract shows it."""
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "store_id": job.store_id,
        "mode": job.mode,
        "dry_run": job.dry_run,
        "progress": {
            "total": job.total,
            "processed": job.processed,
            "created": job.created,
            "updated": job.updated,
            "deleted": job.deleted,
            "failed": job.failed,
        },
        "percent": percent(job),
        "error": job.error,
        "errors_url": f"/v1/jobs/{job.id}/errors",
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def error_to_dict(error: JobError) -> dict[str, Any]:
    return {"row": error.row, "field": error.field, "message": error.message, "value": error.value}
