"""Jobs: the caller's own, read by id (cheap), listed, their row errors, cancel, events."""

from __future__ import annotations

from flask import Response, current_app, request, stream_with_context
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from app import negotiation
from app.api.common import Blueprint, caller, list_response
from app.job_schemas import (
    ErrorListArgsSchema,
    JobListArgsSchema,
    JobListSchema,
    JobSchema,
    RowErrorListSchema,
)
from app.schemas import ProblemSchema
from app.services import job_events, jobs

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Background jobs")
ERROR_COLUMNS = ("row", "field", "message", "value")
SECURITY = [{"bearerAuth": []}]


def render_job(job, status: int = 200) -> Response:
    # While a job is not finished, tell pollers how long to wait.
    headers = {"Retry-After": "1"} if job.status in jobs.ACTIVE else None
    return negotiation.render(jobs.to_dict(job), status, headers, resource="job")


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


@blp.route("/<string:job_id>")
class Job(MethodView):
    @jwt_required()
    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown, or someone else's")
    @blp.doc(security=SECURITY)
    def get(self, job_id: str) -> Response:
        """Read a job (Retry-After while it is not finished)"""
        return render_job(jobs.get_job(caller(), job_id))


@blp.route("/<string:job_id>/errors")
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


@blp.route("/<string:job_id>/cancel")
class JobCancel(MethodView):
    @jwt_required()
    @blp.response(202, JobSchema)
    @blp.alt_response(409, schema=ProblemSchema, description="The job has finished")
    @blp.doc(security=SECURITY)
    def post(self, job_id: str) -> Response:
        """Cancel a job (it stops at its next chunk boundary)"""
        return render_job(jobs.cancel(jobs.get_job(caller(), job_id)), 202)


@blp.route("/<string:job_id>/events")
class JobEvents(MethodView):
    @jwt_required()
    @blp.response(200, description="text/event-stream: progress events, then done")
    @blp.doc(security=SECURITY)
    def get(self, job_id: str) -> Response:
        """Follow a job as Server-Sent Events (bounded; reconnect with Last-Event-ID)"""
        job = jobs.get_job(caller(), job_id)
        events = job_events.stream(
            job.id,
            last_event_id=request.headers.get("Last-Event-ID"),
            lifetime=current_app.config["SETTINGS"].job_events_seconds,
        )
        response = Response(stream_with_context(events), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        response.vary.add("Accept")
        return response
