"""Server-Sent Events for a job: ``progress`` whenever its figures change, then ``done``.

A stream lives at most ``JOB_EVENTS_SECONDS`` (it holds a gunicorn thread, and Heroku's
router drops idle requests at 30 s); it then ends with a comment and the client
reconnects, sending ``Last-Event-ID`` so an unchanged state is not sent again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson

from app.extensions import db
from app.models import Job
from app.services import jobs

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 10.0


def event_id(job: Job) -> str:
    """Names a state of the job's figures: equal ids mean nothing new to say."""
    return f"{job.status}-{job.processed}-{job.failed}-{job.deleted}"


def _event(name: str, job: Job) -> str:
    data = orjson.dumps(jobs.to_dict(job)).decode()
    return f"id: {event_id(job)}\nevent: {name}\ndata: {data}\n\n"


def stream(job_id: str, *, last_event_id: str | None, lifetime: float) -> Iterator[str]:
    """The event stream of a job the caller may see (checked before streaming)."""
    deadline = time.monotonic() + lifetime
    last_sent = last_event_id
    last_write = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        job = db.session.get(Job, job_id, populate_existing=True)
        # Release the connection between polls: a stream must not pin a pooled one.
        db.session.close()
        if job is None:
            return
        if job.status in jobs.TERMINAL:
            yield _event("done", job)
            return
        if event_id(job) != last_sent:
            last_sent = event_id(job)
            last_write = time.monotonic()
            yield _event("progress", job)
        elif time.monotonic() - last_write > KEEPALIVE_SECONDS:
            last_write = time.monotonic()
            yield ": keep-alive\n\n"
        if time.monotonic() >= deadline:
            yield ": lifetime reached; reconnect with Last-Event-ID\n\n"
            return
        time.sleep(POLL_SECONDS)
