"""Public user profiles."""

from __future__ import annotations

from flask import Response

from app import negotiation
from app.api.common import Blueprint
from app.schemas import ProfileSchema
from app.services import accounts

blp = Blueprint("users", __name__, url_prefix="/v1/users", description="Public profiles")


@blp.route("/<username>")
@blp.response(200, ProfileSchema)
def profile(username: str) -> Response:
    """A user's public profile"""
    return negotiation.render(accounts.public_profile(username=username), resource="user")
