"""What every resource blueprint shares: body parsing, the caller, list responses."""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Response, request, url_for
from flask_jwt_extended import current_user
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser

from app import negotiation
from app.models import User
from app.services.pagination import Page

NO_BODY = "This request needs a body, even if every field is optional ({} changes nothing)."


class BodyParser(FlaskParser):
    """webargs parser whose "json" location is any body the negotiation layer parses.

    Every body the spec documents is required. A request without one is read as ``{}``,
    so the ``422`` names the fields it lacks; where no field is required (``PATCH``), ``{}``
    would pass, so the ``422`` names the body itself.
    """

    def load_json(self, req: Any, schema: Schema) -> Any:
        data = negotiation.parse_body()
        if data is None:
            if not any(field.required for field in schema.fields.values()):
                raise ValidationError({"body": [NO_BODY]})
            return {}
        if isinstance(data, dict) and req.mimetype in negotiation.FORM_MEDIA_TYPES:
            # An HTML form sends its empty inputs as "": for an optional field that
            # means "not given" (default or unchanged), not an invalid or blank value.
            data = {key: value for key, value in data.items() if value != ""}
        return data


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = BodyParser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A write whose answer the client cannot read is refused (406) before it happens.
        self.before_request(negotiation.refuse_unreadable_write)


def caller() -> User:
    """The authenticated user (views calling this are behind ``jwt_required``)."""
    return current_user


def list_response(plural: str, rows: list[dict[str, Any]], page: Page) -> Response:
    """``{plural: [...], next}`` with a ``Link: rel="next"`` header when there is more."""
    next_url = None
    headers: dict[str, str] = {}
    if page.next_cursor:
        args = request.args.to_dict()
        args["cursor"] = page.next_cursor
        next_url = url_for(request.endpoint, **(request.view_args or {}), **args, _external=True)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return negotiation.render({plural: rows, "next": next_url}, headers=headers, resource=plural)
