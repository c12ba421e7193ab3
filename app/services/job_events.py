"""Following a job: a poll, a long poll and an event stream, all driven by change notices.

Each reads the job's state from Redis (``job_state``; the database when Redis cannot
answer) and waits for its next change on the process's one subscription
(``job_notices``), never by polling the database. A wait holds no request thread under
the gevent worker, ends early when the process is told to stop (``lifecycle``), and
re-reads the state at least every ``job_notices.FALLBACK_SECONDS`` while notices cannot
be received.

An event stream sends ``progress`` whenever the job's figures change and ``done`` when
it has finished, a comment every ``KEEPALIVE_SECONDS`` (Heroku's router drops a stream
silent for 55 s), and ends after ``JOB_EVENTS_SECONDS``; the client reconnects with
``Last-Event-ID`` (the state's ETag), so an unchanged state is not sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from app import lifecycle
from app.services.errors import NotFound
from app.services.job_notices import Waiter, notices
from app.services.job_state import JobState, read

KEEPALIVE_SECONDS = 10.0


def current(user_id: int, job_id: str, given: JobState | None = None) -> JobState:
    """The caller's job as a poll answers it (``given``: the state a notice brought, else
    read); someone else's is unknown (404)."""
    state = given or read(job_id)
    if state is None or state.user_id != user_id:
        raise NotFound(f"No job with id {job_id}.")
    return state


def wait_for_change(
    user_id: int,
    job_id: str,
    *,
    seen: Callable[[JobState], bool] | None,
    seconds: float,
) -> JobState:
    """Hold until the job's state is not one the client has ``seen`` (default: its state
    on arrival) or the job has finished, at most ``seconds``; returns the state then
    (the caller tells a change from a time-out)."""
    deadline = time.monotonic() + seconds
    with notices().listen(job_id) as waiter:
        state = current(user_id, job_id)
        return hold(
            waiter,
            state,
            unchanged=seen or (lambda s, arrival=state.etag: s.etag == arrival),
            deadline=deadline,
            reread=lambda given: current(user_id, job_id, given),
        )


def hold(
    waiter: Waiter,
    state: JobState,
    *,
    unchanged: Callable[[JobState], bool],
    deadline: float,
    reread: Callable[[JobState | None], JobState],
) -> JobState:
    """The long poll's wait: until ``unchanged(state)`` is false, the job has finished,
    the process stops or ``deadline`` (monotonic) passes. ``reread(notice's state or
    None)`` gives the state after each wake-up (the view's and the fast path's)."""
    while not state.finished and unchanged(state) and not lifecycle.stopping():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        waiter.wait(remaining)
        state = reread(waiter.take())
    return state


def event_id(state: JobState) -> str:
    return state.etag.strip('"')


def _event(name: str, state: JobState) -> str:
    return f"id: {event_id(state)}\nevent: {name}\ndata: {state.body.decode()}\n\n"


def stream(
    user_id: int, job_id: str, *, last_event_id: str | None, lifetime: float
) -> Iterator[str]:
    """The event stream of a job the caller owns (check with ``current`` first)."""
    deadline = time.monotonic() + lifetime
    yield "retry: 1000\n\n"
    last_sent, last_write = last_event_id, time.monotonic()
    with notices().listen(job_id) as waiter:
        while True:
            state = waiter.take() or read(job_id)
            if state is None or state.user_id != user_id:
                return  # deleted meanwhile
            if state.finished:
                yield _event("done", state)
                return
            now = time.monotonic()
            if event_id(state) != last_sent:
                last_sent, last_write = event_id(state), now
                yield _event("progress", state)
            elif now - last_write >= KEEPALIVE_SECONDS:
                last_write = now
                yield ": keep-alive\n\n"
            if now >= deadline or lifecycle.stopping():
                yield ": reconnect with Last-Event-ID\n\n"
                return
            waiter.wait(min(KEEPALIVE_SECONDS - (now - last_write), deadline - now))
