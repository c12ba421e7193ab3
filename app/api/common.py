"""What every resource blueprint shares: body parsing, the caller, list responses."""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Response, request, url_for
from flask_jwt_extended import current_user
from webargs.flaskparser import FlaskParser

from app import negotiation
from app.models import User
from app.services.pagination import Page


class BodyParser(FlaskParser):
    """webargs parser whose "json" location is any body the negotiation layer parses."""

    def _raw_load_json(self, req: Any) -> Any:
        data = negotiation.parse_body()
        if isinstance(data, dict) and req.mimetype in negotiation.FORM_MEDIA_TYPES:
            # An HTML form sends its empty inputs as "": for an optional field that
            # means "not given" (default or unchanged), not an invalid or blank value.
            data = {key: value for key, value in data.items() if value != ""}
        return data if data is not None else {}


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
