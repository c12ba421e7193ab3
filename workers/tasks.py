"""Thin tasks: take a job id, call the services, report what happened.

The job row is the truth; these tasks return nothing anyone reads (no result backend).
"""

from __future__ import annotations

import logging
import signal
import threading

from celery import shared_task

from app.extensions import db
from app.services import imports, jobs

log = logging.getLogger(__name__)
_stopping = threading.Event()


def _on_sigterm(signum: int, frame: object) -> None:
    # Heroku sends SIGTERM to every process of the dyno, pool children included: stop at
    # the next chunk boundary instead of dying mid-chunk.
    _stopping.set()


@shared_task(name=jobs.TASK_NAME, ignore_result=True)
def run_import(job_id: str) -> str:
    """Run (or resume from its checkpoint) one import job."""
    _stopping.clear()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        outcome = imports.run(job_id, should_stop=_stopping.is_set)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if outcome == "released":
        jobs.dispatch(job_id)  # for the next worker; the reaper would resend it anyway
    log.info("import job %s: %s", job_id, outcome)
    return outcome


@shared_task(name="jobs.reap", ignore_result=True)
def reap_jobs() -> int:
    """Re-send jobs no live worker holds, fail hopeless ones, expire old ones."""
    try:
        resend = jobs.reap()
        for job_id in resend:
            jobs.dispatch(job_id)
        jobs.expire()
        return len(resend)
    finally:
        # Called from the worker's main process: hold no pooled connection there, so a
        # pool child forked later never inherits (and shares) a database socket.
        db.session.remove()
        db.engine.dispose()
