"""Job polls served before Flask dispatches: token, rate limit, revocation and state in
one Redis round trip.

A poll (``GET /v1/jobs/<id>``, JSON, no long-poll wait) is the request clients repeat
most. ``serve_fast`` runs from ``StoresFlask.wsgi_app``: it checks the bearer token with
flask-jwt-extended's own decoding (signature, algorithm, expiry), then one script
(``job_state.poll``) counts the request in Flask-Limiter's budget for the endpoint
(``ratelimit.Plan``, as the read cache's fast path does), reads the session's blocklist
fields and the job's state. When all is well it answers from that state, exactly as the
view would (``api.jobs.poll_headers``).

Everything else goes to Flask, which answers as it always does: a token the library
refuses, a revoked session or a blocklist to rebuild, a state missing from Redis or
someone else's job (the database decides: 404 or the job), a spent budget (Flask-Limiter's
429), another representation, a long poll, Redis failing. When the script has counted
the request, the count rides in the environ and Flask-Limiter does not count it again.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Flask
from werkzeug.http import parse_etags

from app import negotiation, ratelimit, routing, security
from app.api.jobs import poll_headers, preferred_wait
from app.errors import REQUEST_ID_RE
from app.extensions import redis_client
from app.services import job_events, job_state, jobs, sessions
from app.services.job_notices import Notices, Waiter

PATH = re.compile(f"/v1/jobs/({routing.JOB_ID})")
WAIT_QUERY = re.compile(r"wait=(\d{1,2})")
ENDPOINT = "jobs.Job"
_UNSET = object()


class JobPolls:
    """Per app: the endpoint's rate-limit plan and the formats ``Accept`` headers choose."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._plan: Any = _UNSET
        self._formats: dict[str, str | None] = {}

    def plan(self) -> ratelimit.Plan | None:
        if self._plan is _UNSET:
            self._plan = ratelimit.plan_for(self.app, ENDPOINT)
        return self._plan

    def wants_json(self, accept: str) -> bool:
        if not accept:
            return True
        fmt = self._formats.get(accept, _UNSET)
        if fmt is _UNSET:
            offers = {f: (negotiation.MEDIA_TYPES[f],) for f in negotiation.DEFAULT_FORMATS}
            ranges = negotiation.parse_accept(accept)
            fmt = negotiation.choose(ranges, offers) if ranges else "json"
            if len(self._formats) > 256:  # Accept is the client's: keep the memo bounded
                self._formats.clear()
            self._formats[accept] = fmt  # type: ignore[assignment]
        return fmt == "json"

    def identity(self, authorization: str) -> tuple[int, str] | None:
        """``(user id, session id)`` of a valid access token, or ``None`` (Flask decides).
        Revocation is checked afterwards, in the poll's round trip."""
        token = security.bearer_token(authorization)
        if token is None:
            return None
        try:
            with self.app.app_context():
                payload = security.verified.payload(token)
        except Exception:  # any refusal is answered by the Flask path, in its words
            return None
        sid = sessions.session_id(payload)
        return (int(payload["sub"]), sid) if sid is not None else None


def _wait(environ: dict[str, Any]) -> int | bool | None:
    """The long poll asked for (seconds), ``None`` for a plain poll, ``False`` when the
    query string is one the Flask path must judge (anything but one valid ``wait``)."""
    query = environ.get("QUERY_STRING", "")
    if query:
        found = WAIT_QUERY.fullmatch(query)
        if found is None or not 1 <= int(found.group(1)) <= jobs.MAX_WAIT_SECONDS:
            return False
        return int(found.group(1))
    return preferred_wait(environ.get("HTTP_PREFER", ""))


def serve_fast(
    app: Flask, environ: dict[str, Any], start_response: Callable
) -> Iterable[bytes] | None:
    """Answer a job poll or long poll here; ``None`` lets Flask handle the request."""
    method = environ.get("REQUEST_METHOD")
    found = PATH.fullmatch(environ.get("PATH_INFO", ""))
    polls: JobPolls | None = app.extensions.get("job_polls")
    if method not in ("GET", "HEAD") or found is None or polls is None:
        return None
    wait = _wait(environ)
    plan = polls.plan()
    if wait is False or "HTTP_COOKIE" in environ or plan is None:
        return None
    if not redis_client.available() or not polls.wants_json(environ.get("HTTP_ACCEPT", "")):
        return None
    who = polls.identity(environ.get("HTTP_AUTHORIZATION", ""))
    counters = plan.counters(environ)
    if who is None or counters is None:
        return None
    job_id = found.group(1)
    notices: Notices = app.extensions["job_notices"]
    # Listening starts before the state is read: a change committed in between still wakes.
    with notices.listen(job_id) if wait else contextlib.nullcontext() as waiter:
        try:
            result = job_state.poll(
                job_id,
                sid=who[1],
                blocklist=sessions.BLOCKLIST,
                loaded=sessions.LOADED,
                counters=counters,
            )
        except redis.RedisError as exc:
            redis_client.failed(exc, "job poll")
            return None
        counted = plan.counted(result.counts)
        if counted is not None:
            environ[ratelimit.ENVIRON_COUNTED] = counted  # Flask must not count it again
        state = result.state
        if (
            result.breached
            or not result.blocklist_loaded
            or sessions.listed_as_revoked(result.revoked_until)
            or state is None
            or state.user_id != who[0]
        ):
            return None
        if waiter is not None and wait:
            state = _hold(app, waiter, state, environ, who[0], float(wait))
            if state is None:
                return None  # gone while waiting: the Flask path says what it is now
    return _answer(environ, start_response, state, counted, wait or None)


def _hold(
    app: Flask,
    waiter: Waiter,
    state: job_state.JobState,
    environ: dict[str, Any],
    user_id: int,
    seconds: float,
) -> job_state.JobState | None:
    """The long poll's wait (``job_events.hold``), in this greenlet, with no request
    context: a state a notice did not bring is read in an app context (Redis, else the
    database)."""
    given = parse_etags(environ.get("HTTP_IF_NONE_MATCH"))
    arrival = state.etag

    def unchanged(s: job_state.JobState) -> bool:
        # the state If-None-Match names, else the state on arrival
        return given.contains_weak(s.etag.strip('"')) if given else s.etag == arrival

    def reread(notice: job_state.JobState | None) -> job_state.JobState:
        if notice is None:
            with app.app_context():
                notice = job_state.read(state.job_id)
        if notice is None or notice.user_id != user_id:
            raise LookupError(state.job_id)
        return notice

    deadline = time.monotonic() + seconds
    try:
        return job_events.hold(waiter, state, unchanged=unchanged, deadline=deadline, reread=reread)
    except LookupError:
        return None


def _answer(
    environ: dict[str, Any],
    start_response: Callable,
    state: job_state.JobState,
    counted: ratelimit.Counted | None,
    waited: int | None = None,
) -> Iterable[bytes]:
    headers = list(poll_headers(state, state.etag, waited).items())
    headers.append(("Vary", "Accept"))
    given = environ.get("HTTP_X_REQUEST_ID", "")
    headers.append(("X-Request-ID", given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex))
    if counted is not None:
        headers += ratelimit.headers(counted.window)
    if parse_etags(environ.get("HTTP_IF_NONE_MATCH")).contains_weak(state.etag.strip('"')):
        start_response("304 NOT MODIFIED", headers)
        return []
    headers += [("Content-Type", "application/json"), ("Content-Length", str(len(state.body)))]
    start_response("200 OK", headers)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [state.body]


def init_app(app: Flask) -> None:
    app.extensions["job_polls"] = JobPolls(app)
