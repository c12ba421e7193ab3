"""Bulk item imports: the file is the body; the answer is a job to poll."""

from __future__ import annotations

from typing import BinaryIO

from flask import Response, current_app, request
from flask.views import MethodView
from flask_jwt_extended import jwt_required
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app.api.common import Blueprint, caller
from app.api.jobs import job_response
from app.bodies import streams_body
from app.extensions import db
from app.job_schemas import ImportArgsSchema, JobSchema
from app.schemas import ProblemSchema
from app.services import catalog, jobs, uploads
from app.services.errors import Invalid
from app.services.job_state import state_of

blp = Blueprint("imports", __name__, url_prefix="/v1", description="Bulk item imports")

FORMAT_OF_MEDIA_TYPE = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
}
FORMAT_OF_SUFFIX = {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}
ACCEPTED = "text/csv, application/json, application/x-ndjson or multipart/form-data"


@blp.route("/stores/<int:store_id>/imports")
class StoreImports(MethodView):
    @jwt_required()
    @blp.arguments(ImportArgsSchema, location="query")
    @blp.response(202, JobSchema, description="Job accepted; poll its Location")
    @blp.alt_response(200, schema=JobSchema, description="Same Idempotency-Key and request")
    @blp.alt_response(413, schema=ProblemSchema, description="Larger than MAX_IMPORT_BYTES")
    @blp.alt_response(415, schema=ProblemSchema, description="Not CSV, JSON or NDJSON")
    @blp.doc(security=[{"bearerAuth": []}])
    @streams_body
    def post(self, args: dict, store_id: int) -> Response:
        """Import items from a CSV, JSON array or NDJSON file (owner only)"""
        catalog.require_owner(catalog.get_store(store_id), caller())
        file_format, source = uploaded_file()
        # No pooled connection is held while the client sends the file, however slowly.
        db.session.commit()
        salt = f"{store_id}|{file_format}|{args['mode']}|{int(args['dry_run'])}\n".encode()
        spooled = uploads.spool(source, limit=settings().max_import_bytes, salt=salt)
        try:
            if spooled.size == 0:
                raise BadRequest("The file is empty.")
            job, new = jobs.submit(
                user=caller(),
                store=catalog.get_store(store_id),  # it may have been deleted meanwhile
                file_format=file_format,
                mode=args["mode"],
                dry_run=args["dry_run"],
                spooled=spooled,
                idempotency_key=idempotency_key(),
            )
        finally:
            spooled.close()
        if new:
            jobs.dispatch(job.id)
        response = job_response(state_of(job), 202 if new else 200)
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        return response


def settings():
    return current_app.config["SETTINGS"]


def uploaded_file() -> tuple[str, BinaryIO]:
    """The file's format and a stream of its bytes: the raw body, or multipart ``file``."""
    # This endpoint alone takes bodies up to MAX_IMPORT_BYTES (Flask 3.1: per request).
    request.max_content_length = settings().max_import_bytes
    if request.mimetype == "multipart/form-data":
        part = request.files.get("file")
        if part is None:
            raise BadRequest("A multipart upload needs the file in a part named 'file'.")
        suffix = "." + (part.filename or "").rsplit(".", 1)[-1].lower()
        file_format = FORMAT_OF_MEDIA_TYPE.get(part.mimetype) or FORMAT_OF_SUFFIX.get(suffix)
        if file_format is None:
            raise UnsupportedMediaType(f"The 'file' part must be CSV, JSON or NDJSON ({ACCEPTED}).")
        return file_format, part.stream
    file_format = FORMAT_OF_MEDIA_TYPE.get(request.mimetype)
    if file_format is None:
        raise UnsupportedMediaType(
            f"Content-Type {request.mimetype or '(none)'!r} is not importable; send {ACCEPTED}."
        )
    return file_format, request.stream


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise Invalid(
            "The Idempotency-Key header is not valid.",
            errors=[{"field": "Idempotency-Key", "message": "Must be 1-255 characters."}],
        )
    return key
