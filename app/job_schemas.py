"""Schemas of imports and jobs: query arguments (validated) and responses (documented).

Responses are built by ``app.services.jobs.to_dict`` (a poll must stay cheap); these
schemas describe them in the OpenAPI document.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from app.schemas import PageArgsSchema
from app.services.jobs import MAX_WAIT_SECONDS, MODES, STATUSES


class ImportArgsSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # ?format= and friends belong to negotiation

    mode = fields.String(
        load_default="upsert",
        validate=validate.OneOf(MODES),
        metadata={"description": "upsert (default), create or replace"},
    )
    dry_run = fields.Boolean(
        load_default=False, metadata={"description": "Validate and count, change nothing"}
    )


class JobListArgsSchema(PageArgsSchema):
    class Meta:
        unknown = EXCLUDE

    status = fields.String(validate=validate.OneOf(STATUSES))


class JobWaitArgsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    wait = fields.Integer(
        validate=validate.Range(min=1, max=MAX_WAIT_SECONDS),
        metadata={
            "description": "Long poll: hold up to this many seconds until the job changes "
            "(as `Prefer: wait=N`)"
        },
    )


class ErrorListArgsSchema(PageArgsSchema):
    class Meta:
        unknown = EXCLUDE


class JobProgressSchema(Schema):
    total = fields.Integer(allow_none=True, metadata={"description": "null until known"})
    processed = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    deleted = fields.Integer()
    failed = fields.Integer()


class JobSchema(Schema):
    id = fields.String(metadata={"description": "UUID"})
    kind = fields.String(metadata={"example": "item_import"})
    status = fields.String(validate=validate.OneOf(STATUSES))
    store_id = fields.Integer(
        allow_none=True, metadata={"description": "null once the store has been deleted"}
    )
    mode = fields.String(validate=validate.OneOf(MODES))
    dry_run = fields.Boolean()
    progress = fields.Nested(JobProgressSchema)
    percent = fields.Float()
    error = fields.Dict(allow_none=True, metadata={"description": "A problem object or null"})
    errors_url = fields.String()
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema))
    next = fields.String(allow_none=True)


class RowErrorSchema(Schema):
    row = fields.Integer(metadata={"description": "1-based data row (a CSV header is row 0)"})
    field = fields.String()
    message = fields.String()
    value = fields.String(allow_none=True)


class RowErrorListSchema(Schema):
    errors = fields.List(fields.Nested(RowErrorSchema))
    next = fields.String(allow_none=True)
