"""JWT wiring: who a token names, whether it was revoked, and 401 problems for bad tokens."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask_jwt_extended import decode_token, get_unverified_jwt_headers
from flask_jwt_extended.exceptions import (
    NoAuthorizationError,
    RevokedTokenError,
    WrongTokenError,
)

from app.errors import problem
from app.extensions import jwt
from app.models import User
from app.services import accounts, sessions

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="stores-api"'}


def _unauthorized(detail: str, error: str = "invalid_token") -> Response:
    headers = {"WWW-Authenticate": f'Bearer realm="stores-api", error="{error}"'}
    return problem(401, detail, title="Unauthorized", headers=headers)


def token_identity() -> int:
    """The user id of the request's access token, without reading the user.

    The token is checked as ``jwt_required`` checks it (flask-jwt-extended's decoding:
    signature, algorithm, expiry; then type and revocation) and a bad one gets the same
    401 problems. For the hot, read-only job polls: the job's owner is compared with the
    id, so no database read is needed.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NoAuthorizationError("Missing Authorization Header")
    payload = decode_token(token)
    if payload.get("type") != "access":
        raise WrongTokenError("Only non-refresh tokens are allowed")
    if sessions.is_revoked(payload):
        raise RevokedTokenError(get_unverified_jwt_headers(token), payload)
    return int(payload["sub"])


def init_app(app: Flask) -> None:
    jwt.init_app(app)

    @jwt.user_lookup_loader
    def _load_user(header: dict[str, Any], payload: dict[str, Any]) -> User | None:
        try:
            return accounts.get_user(int(payload["sub"]))
        except (KeyError, TypeError, ValueError):
            return None

    @jwt.token_in_blocklist_loader
    def _revoked(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return sessions.is_revoked(payload)

    @jwt.unauthorized_loader
    def _missing(reason: str) -> Response:
        return problem(
            401,
            f"This endpoint needs a bearer token: {reason}.",
            title="Unauthorized",
            headers=CHALLENGE,
        )

    @jwt.invalid_token_loader
    def _invalid(reason: str) -> Response:
        return _unauthorized(f"The token is not valid: {reason}.")

    @jwt.expired_token_loader
    def _expired(header: dict[str, Any], payload: dict[str, Any]) -> Response:
        return _unauthorized("The token has expired; refresh it or log in again.")

    @jwt.revoked_token_loader
    def _revoked_answer(header: dict[str, Any], payload: dict[str, Any]) -> Response:
        return _unauthorized("The token has been revoked (logged out).")

    @jwt.user_lookup_error_loader
    def _gone(header: dict[str, Any], payload: dict[str, Any]) -> Response:
        return _unauthorized("The token's user no longer exists.")

    @jwt.needs_fresh_token_loader
    def _stale(header: dict[str, Any], payload: dict[str, Any]) -> Response:
        return _unauthorized("This action needs a fresh token; log in again.")

    @jwt.token_verification_failed_loader
    def _failed(header: dict[str, Any], payload: dict[str, Any]) -> Response:
        return _unauthorized("The token failed verification.")
