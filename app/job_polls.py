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

import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Flask
from werkzeug.http import parse_etags

from app import negotiation, ratelimit, security
from app.api.jobs import poll_headers
from app.errors import REQUEST_ID_RE
from app.extensions import redis_client
from app.services import job_state, sessions

PATH = re.compile(r"/v1/jobs/([0-9A-Za-z-]{1,36})")
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


def serve_fast(
    app: Flask, environ: dict[str, Any], start_response: Callable
) -> Iterable[bytes] | None:
    """Answer a plain job poll here; ``None`` lets Flask handle the request."""
    method = environ.get("REQUEST_METHOD")
    if method not in ("GET", "HEAD") or environ.get("QUERY_STRING"):
        return None
    found = PATH.fullmatch(environ.get("PATH_INFO", ""))
    polls: JobPolls | None = app.extensions.get("job_polls")
    if found is None or polls is None or "HTTP_COOKIE" in environ or "HTTP_PREFER" in environ:
        return None
    plan = polls.plan()
    if plan is None or not redis_client.available():
        return None
    if not polls.wants_json(environ.get("HTTP_ACCEPT", "")):
        return None
    who = polls.identity(environ.get("HTTP_AUTHORIZATION", ""))
    counters = plan.counters(environ)
    if who is None or counters is None:
        return None
    user_id, sid = who
    try:
        result = job_state.poll(
            found.group(1),
            sid=sid,
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
        or state.user_id != user_id
    ):
        return None
    return _answer(environ, start_response, state, counted)


def _answer(
    environ: dict[str, Any],
    start_response: Callable,
    state: job_state.JobState,
    counted: ratelimit.Counted | None,
) -> Iterable[bytes]:
    headers = list(poll_headers(state, state.etag).items())
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
