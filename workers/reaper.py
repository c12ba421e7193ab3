"""The reaper: a thread in every worker's main process that runs ``jobs.reap`` often.

No separate beat process to deploy or keep single: every change the reaper makes is a
compare-and-set on the job row, so any number of workers may reap at once.
"""

from __future__ import annotations

import logging
import threading

from celery import signals

from app.config import Settings
from workers.tasks import reap_jobs

log = logging.getLogger(__name__)
_stop = threading.Event()


def interval(settings: Settings) -> float:
    """A few checks per ``JOB_STALE_AFTER``, at most a minute apart."""
    return max(1.0, min(60.0, settings.job_stale_after / 3))


def _loop(every: float) -> None:
    while True:
        try:
            reap_jobs()  # called directly: runs here, inside the app context
        except Exception:
            log.exception("reaper: a pass failed; trying again in %.0f s", every)
        if _stop.wait(every):
            return


@signals.worker_ready.connect
def _start(**kwargs: object) -> None:
    every = interval(Settings.from_env())
    _stop.clear()
    threading.Thread(target=_loop, args=(every,), name="job-reaper", daemon=True).start()
    log.info("reaper: checking for stale jobs every %.0f s", every)


@signals.worker_shutting_down.connect
def _stop_reaper(**kwargs: object) -> None:
    _stop.set()
