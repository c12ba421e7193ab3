"""Thin tasks: take a job id, call the services, report what happened.

The job row is the truth; these tasks return nothing anyone reads (no result backend).
"""

from __future__ import annotations

import logging
import signal
import threading

from billiard.exceptions import WorkerLostError
from celery import shared_task, signals

from app.extensions import db
from app.services import imports, jobs

log = logging.getLogger(__name__)
_stopping = threading.Event()


def _on_sigterm(signum: int, frame: object) -> None:
    # Heroku sends SIGTERM to every process of the dyno, pool children included: stop at
    # the next chunk boundary instead of dying mid-chunk.
    _stopping.set()


# Not ``reject_on_worker_lost``: when the pool process running an import dies, Celery
# acknowledges the message and sends ``task_failure`` in the main process, which records
# how it died on the job (``_pool_process_died``) and re-sends it, or fails it the second
# time. The message is still acknowledged late: a worker lost whole redelivers it.
@shared_task(name=jobs.TASK_NAME, ignore_result=True, reject_on_worker_lost=False)
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
    if outcome in ("released", "retry"):
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


@shared_task(name="imports.died", ignore_result=True)
def import_died(job_id: str, reason: str) -> str:
    """Record that the process running an import died (called in the main process)."""
    try:
        outcome = jobs.record_failure(job_id, reason)
        if outcome == "retry":
            jobs.dispatch(job_id)
        return outcome
    finally:
        db.session.remove()  # as reap_jobs: no database socket for a later fork
        db.engine.dispose()


@signals.task_failure.connect
def _pool_process_died(sender=None, exception=None, args=None, **kwargs: object) -> None:
    if getattr(sender, "name", None) != jobs.TASK_NAME or not args:
        return
    if not isinstance(exception, WorkerLostError):
        return  # an exception inside the task: imports.run recorded it already
    try:
        import_died(str(args[0]), jobs.crash_reason(str(exception)))
    except Exception:
        log.exception("import job %s: its process died, and recording that failed", args[0])
