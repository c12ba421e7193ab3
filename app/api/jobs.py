"""Jobs: the caller's own, read by id (from Redis, long-polled), listed, their row
errors, cancel, events."""

from __future__ import annotations

import re

from flask import Response, current_app, request, stream_with_context
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from app import negotiation, security
from app.api.common import Blueprint, caller, list_response
from app.job_schemas import (
    ErrorListArgsSchema,
    JobListArgsSchema,
    JobListSchema,
    JobSchema,
    JobWaitArgsSchema,
    RowErrorListSchema,
)
from app.schemas import ProblemSchema
from app.services import job_events, jobs
from app.services.job_state import JobState, state_of

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Background jobs")
ERROR_COLUMNS = ("row", "field", "message", "value")
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d{1,6})\"?", re.IGNORECASE)
PREFER_DOC = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "example": "wait=20"},
    "description": "`wait=N` (1-25): long poll, as `?wait=N`",
}


def etag_for(state: JobState, fmt: str) -> str:
    """Each representation of a state has its own validator; JSON's is the state's."""
    return state.etag if fmt == "json" else f'"{state.etag.strip(chr(34))}-{fmt}"'


def poll_headers(state: JobState, etag: str, waited: int | None = None) -> dict[str, str]:
    """The headers of a job's representation (this view's and the fast path's)."""
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if not state.finished:  # tell pollers how long to wait (and no one else)
        headers["Retry-After"] = "1"
    if waited is not None:
        headers["Preference-Applied"] = f"wait={waited}"
    return headers


def job_response(state: JobState, status: int = 200, *, waited: int | None = None) -> Response:
    """A job in the negotiated format, or ``304`` when ``If-None-Match`` names it."""
    fmt = negotiation.negotiate()
    etag = etag_for(state, fmt)
    headers = poll_headers(state, etag, waited)
    if status == 200 and request.if_none_match.contains_weak(etag.strip('"')):
        response = current_app.response_class(status=304, headers=headers)
        del response.headers["Content-Type"]
        response.vary.add("Accept")
        return response
    if fmt == "json":  # the bytes kept in Redis, as they are
        response = current_app.response_class(state.body, status, mimetype="application/json")
        response.vary.add("Accept")
        response.headers.update(headers)
        return response
    return negotiation.render(state.data(), status, headers, resource="job", fmt=fmt)


def requested_wait(query_wait: int | None) -> int | None:
    """Seconds to hold a poll: ``?wait=N`` (validated), else ``Prefer: wait=N``."""
    if query_wait is not None:
        return query_wait
    return preferred_wait(request.headers.get("Prefer", ""))


def preferred_wait(prefer: str) -> int | None:
    """``Prefer: wait=N`` as seconds to hold (a hint, brought into 1-25), or none."""
    found = PREFER_WAIT.search(prefer)
    if found is None or int(found.group(1)) == 0:
        return None
    return min(int(found.group(1)), jobs.MAX_WAIT_SECONDS)


@blp.route("")
class Jobs(MethodView):
    @jwt_required()
    @blp.arguments(JobListArgsSchema, location="query")
    @blp.response(200, JobListSchema)
    @blp.doc(security=SECURITY)
    def get(self, args: dict) -> Response:
        """List the caller's jobs, newest first"""
        page = jobs.list_jobs(
            caller(), status=args.get("status"), limit=args["limit"], cursor=args.get("cursor")
        )
        return list_response("jobs", [jobs.to_dict(j) for j in page.rows], page)


@blp.route("/<job_id:job_id>")
class Job(MethodView):
    @blp.arguments(JobWaitArgsSchema, location="query")
    @blp.response(200, JobSchema)
    @blp.alt_response(304, description="Unchanged: If-None-Match names the current state")
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown, or someone else's")
    @blp.doc(security=SECURITY, parameters=[PREFER_DOC])
    def get(self, args: dict, job_id: str) -> Response:
        """Read a job; long poll with Prefer: wait=N (Retry-After while it is not finished)"""
        user_id = security.token_identity()
        wait = requested_wait(args.get("wait"))
        if wait is None:
            return job_response(job_events.current(user_id, job_id))
        fmt, inm = negotiation.negotiate(), request.if_none_match
        seen = (lambda s: inm.contains_weak(etag_for(s, fmt).strip('"'))) if inm else None
        state = job_events.wait_for_change(user_id, job_id, seen=seen, seconds=wait)
        return job_response(state, waited=wait)


@blp.route("/<job_id:job_id>/errors")
class JobErrors(MethodView):
    @jwt_required()
    @blp.arguments(ErrorListArgsSchema, location="query")
    @blp.response(200, RowErrorListSchema)
    @blp.doc(security=SECURITY, **negotiation.CSV_DOC)
    def get(self, args: dict, job_id: str) -> Response:
        """The rows of an import that failed validation (also as CSV, all of them)"""
        job = jobs.get_job(caller(), job_id)
        if negotiation.negotiate(negotiation.LIST_FORMATS) == "csv":
            rows = (jobs.error_to_dict(e) for e in jobs.iter_errors(job))
            return negotiation.csv_response(
                ERROR_COLUMNS, rows, filename=f"job-{job.id}-errors.csv"
            )
        page = jobs.list_errors(job, limit=args["limit"], cursor=args.get("cursor"))
        return list_response("errors", [jobs.error_to_dict(e) for e in page.rows], page)


@blp.route("/<job_id:job_id>/cancel")
class JobCancel(MethodView):
    @jwt_required()
    @blp.response(202, JobSchema)
    @blp.alt_response(409, schema=ProblemSchema, description="The job has finished")
    @blp.doc(security=SECURITY)
    def post(self, job_id: str) -> Response:
        """Cancel a job (it stops at its next chunk boundary)"""
        return job_response(state_of(jobs.cancel(jobs.get_job(caller(), job_id))), 202)


@blp.route("/<job_id:job_id>/events")
class JobEvents(MethodView):
    @blp.response(200, description="text/event-stream: progress events, then done")
    @blp.doc(security=SECURITY)
    def get(self, job_id: str) -> Response:
        """Follow a job as Server-Sent Events (bounded; reconnect with Last-Event-ID)"""
        user_id = security.token_identity()
        job_events.current(user_id, job_id)  # 404 now, not an empty stream
        events = job_events.stream(
            user_id,
            job_id,
            last_event_id=request.headers.get("Last-Event-ID"),
            lifetime=current_app.config["SETTINGS"].job_events_seconds,
        )
        response = Response(stream_with_context(events), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        response.vary.add("Accept")
        return response
