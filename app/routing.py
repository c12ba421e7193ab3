"""Path ids, one rule each for every route: URL converters registered once, before any
blueprint adds a route.

- ``<int:…>`` takes ASCII digits only. werkzeug's own converter matches ``\\d+``,
  which in Python is any Unicode decimal digit, and ``int()`` reads them all:
  ``/v1/stores/%EF%BC%91`` (a fullwidth one) was store 1. Anything else is a 404.
- ``<job_id:…>`` takes the characters job ids are made of (``JOB_ID``); a NUL or any
  other character is a 404 before any lookup (PostgreSQL refuses a NUL in a text
  comparison: that was a 500). The job polls' fast path matches its paths with the same
  pattern.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter, IntegerConverter

# What a job id may look like: ``jobs.new_job_id`` makes UUIDs (36 characters).
JOB_ID = "[0-9A-Za-z-]{1,36}"


class AsciiIntegerConverter(IntegerConverter):
    """werkzeug's ``int``, matching ASCII digits only."""

    regex = "[0-9]+"


class JobIdConverter(BaseConverter):
    """A job id: up to 36 ASCII letters, digits and dashes."""

    regex = JOB_ID


def job_id_schema(converter: BaseConverter) -> dict[str, object]:
    """The OpenAPI description of a ``job_id`` path parameter."""
    return {"type": "string", "pattern": f"^{JOB_ID}$", "maxLength": 36}


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = AsciiIntegerConverter
    app.url_map.converters["job_id"] = JobIdConverter
