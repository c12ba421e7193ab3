"""Accounts and tokens: register, login, refresh, logout, me."""

from __future__ import annotations

from flask import Response, current_app
from flask.views import MethodView
from flask_jwt_extended import get_jwt, get_jwt_identity, jwt_required

from app import negotiation
from app.api.common import Blueprint, caller
from app.extensions import limiter
from app.schemas import LoginSchema, ProblemSchema, RegisterSchema, TokenSchema, UserSchema
from app.services import accounts, sessions
from app.services.errors import Unauthorized

blp = Blueprint("auth", __name__, url_prefix="/v1/auth", description="Accounts and tokens")


def _auth_limit() -> str:
    return current_app.config["SETTINGS"].ratelimit_auth


# One budget for login and register together: alternating between them gains nothing.
auth_limit = limiter.shared_limit(_auth_limit, scope="auth")


def _settings():
    return current_app.config["SETTINGS"]


@blp.route("/register", methods=["POST"])
@auth_limit
@blp.arguments(RegisterSchema)
@blp.response(201, UserSchema)
@blp.alt_response(409, schema=ProblemSchema, description="Username taken")
def register(body: dict) -> Response:
    """Create an account"""
    user = accounts.register_user(username=body["username"], password=body["password"])
    return negotiation.render(UserSchema().dump(user), 201, resource="user")


@blp.route("/login", methods=["POST"])
@auth_limit
@blp.arguments(LoginSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, schema=ProblemSchema, description="Wrong credentials")
def login(body: dict) -> Response:
    """Exchange a username and password for tokens"""
    user = accounts.authenticate(username=body["username"], password=body["password"])
    if user is None:
        raise Unauthorized("The username or password is wrong.")
    tokens = sessions.issue_tokens(user, access_seconds=_settings().access_token_minutes * 60)
    return negotiation.render(tokens, resource="token")


@blp.route("/refresh", methods=["POST"])
@jwt_required(refresh=True)
@blp.response(200, TokenSchema)
@blp.doc(security=[{"bearerAuth": []}])
def refresh() -> Response:
    """Get a new access token with a refresh token"""
    tokens = sessions.refresh_access(
        identity=get_jwt_identity(),
        sid=get_jwt()["sid"],
        access_seconds=_settings().access_token_minutes * 60,
    )
    return negotiation.render(tokens, resource="token")


@blp.route("/logout", methods=["POST"])
@jwt_required()
@blp.response(204)
@blp.doc(security=[{"bearerAuth": []}])
def logout() -> Response:
    """Revoke this session's tokens, in every process"""
    seconds = _settings().refresh_token_days * 86400
    sessions.revoke_session(sid=get_jwt()["sid"], refresh_seconds=seconds)
    return negotiation.no_content()


@blp.route("/me")
class Me(MethodView):
    decorators = [jwt_required()]

    @blp.response(200, UserSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self) -> Response:
        """The authenticated user"""
        return negotiation.render(UserSchema().dump(caller()), resource="user")
