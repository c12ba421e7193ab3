"""Change notices for jobs: ONE Redis subscriber per process wakes all its waiters.

Long polls and event streams wait here for their job's next change instead of polling
the database. A background thread (a greenlet under gevent) holds the process's only
subscription to ``job_state.CHANNEL`` and fans each notice out to the requests waiting
on that job, so Redis connections per process stay bounded (Heroku's small Redis plans
allow few) however many clients follow jobs.

When the subscription breaks (Redis restarted, network), every waiter is woken to look
again (a notice may have been missed) and the listener reconnects with backoff;
meanwhile waits time out after ``FALLBACK_SECONDS`` so callers re-read the state from
the database, which stays the truth.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from flask import Flask, current_app

from app import lifecycle
from app.config import redis_connection_options
from app.services.job_state import CHANNEL, JobState, parse_notice

log = logging.getLogger(__name__)

FALLBACK_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 2.0


class Waiter:
    """One request's wait for its job's next notice (and the state the notice carried)."""

    def __init__(self, subscribed: threading.Event) -> None:
        self.event = threading.Event()
        self._subscribed = subscribed
        self.state: JobState | None = None

    def take(self) -> JobState | None:
        """The state the last notice brought (then forgotten), or ``None``: read it."""
        state, self.state = self.state, None
        return state

    def wait(self, timeout: float) -> bool:
        """Until a notice arrives (True) or ``timeout`` passes; then ready for the next.

        Without a live subscription the wait is cut to ``FALLBACK_SECONDS``: the caller
        then looks at the state itself, so a lost notice costs at most that long.
        """
        if not self._subscribed.is_set():
            timeout = min(timeout, FALLBACK_SECONDS)
        woken = self.event.wait(max(timeout, 0.0))
        self.event.clear()
        return woken


class Notices:
    """Waiters by job id, and the listener that wakes them."""

    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._listener: threading.Thread | None = None
        self._pid = 0
        self._subscribed = threading.Event()
        self.received = 0  # notices delivered to this process (tests read it)

    # --- waiting ----------------------------------------------------------------------

    @contextmanager
    def listen(self, job_id: str) -> Iterator[Waiter]:
        """Listen for ``job_id``'s notices; enter BEFORE reading the state, so a change
        committed between the read and the wait still wakes the waiter."""
        self._ensure_listener()
        waiter = Waiter(self._subscribed)
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[job_id]

    def waiting(self) -> int:
        """How many waiters this process holds (tests and benchmarks read it)."""
        with self._lock:
            return sum(len(waiting) for waiting in self._waiters.values())

    def wake_all(self) -> None:
        """Every waiter looks again (the process is stopping, or notices may be lost)."""
        self._wake(None)

    def _wake(self, job_id: str | None, state: JobState | None = None) -> None:
        with self._lock:
            if job_id is None:
                waiters = [w for waiting in self._waiters.values() for w in waiting]
            else:
                waiters = list(self._waiters.get(job_id, ()))
        for waiter in waiters:
            waiter.state = state  # None: look for yourself
            waiter.event.set()

    # --- the listener -----------------------------------------------------------------

    def _ensure_listener(self) -> None:
        # A forked child (a gunicorn worker) starts its own: threads do not survive fork.
        with self._lock:
            alive = self._listener is not None and self._listener.is_alive()
            if alive and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._subscribed.clear()
            self._listener = threading.Thread(target=self._listen, name="job-notices", daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        backoff = 0.05
        while True:
            try:
                self._listen_once()
                backoff = 0.05
            except Exception as exc:  # any failure: wake everyone, reconnect
                log.warning("job notices: subscription lost (%s); reconnecting", exc)
            self._subscribed.clear()
            self._wake(None)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _listen_once(self) -> None:
        pubsub = self._connect().pubsub(ignore_subscribe_messages=True)
        try:
            # Redis runs commands in order: every PUBLISH after this reaches us.
            pubsub.subscribe(CHANNEL)
            self._subscribed.set()
            self._wake(None)  # changes made while we were not listening
            while True:
                message = pubsub.get_message(timeout=30.0)
                if message is None:
                    pubsub.ping()  # a dead connection shows itself here
                    continue
                if message.get("type") == "message":
                    self.received += 1
                    self._wake(*parse_notice(message["data"]))
        finally:
            pubsub.close()


def init_app(app: Flask) -> None:
    """One ``Notices`` per app, subscribing over its own connection (not the pool's)."""
    settings = app.config["SETTINGS"]
    options = redis_connection_options(settings.redis_url, settings)

    def connect() -> redis.Redis:
        return redis.Redis.from_url(settings.redis_url, **options)

    app.extensions["job_notices"] = found = Notices(connect)
    lifecycle.on_stop(found.wake_all)


def notices() -> Notices:
    return current_app.extensions["job_notices"]
