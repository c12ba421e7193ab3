"""JWT wiring: who a token names, whether it was revoked, and 401 problems for bad tokens."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
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


class VerifiedTokens:
    """Access tokens already verified by flask-jwt-extended, remembered until they expire.

    A poller or a follower sends the same token again and again; decoding it (PyJWT checks
    every character of every segment in Python) was half the cost of a poll. The same
    bytes verify the same way until the token's expiry, so a remembered token is only
    compared with the clock; revocation is still checked on every request. Bounded, the
    oldest forgotten first.
    """

    SIZE = 4096

    def __init__(self) -> None:
        self._known: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._lock = threading.Lock()

    def payload(self, token: str) -> dict[str, Any]:
        """The token's claims; raises flask-jwt-extended's errors for a bad token."""
        known = self._known.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        payload = decode_token(token)  # needs an app context: the library's own config
        if payload.get("type") != "access":
            raise WrongTokenError("Only non-refresh tokens are allowed")
        with self._lock:
            if len(self._known) >= self.SIZE:
                self._known.popitem(last=False)
            self._known[token] = (payload, float(payload["exp"]))
        return payload


verified = VerifiedTokens()


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer`` header (the scheme in any case)."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _canonical_scheme() -> None:
    """``before_request``: the scheme is case-insensitive (RFC 9110 §11.1), but
    flask-jwt-extended matches ``Bearer`` exactly; write it so for the library."""
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, space, rest = header.partition(" ")
    if scheme != "Bearer" and scheme.lower() == "bearer":
        request.environ["HTTP_AUTHORIZATION"] = f"Bearer{space}{rest}"


def token_identity() -> int:
    """The user id of the request's access token, without reading the user.

    The token is checked as ``jwt_required`` checks it (flask-jwt-extended's decoding:
    signature, algorithm, expiry; then type and revocation) and a bad one gets the same
    401 problems. For the hot, read-only job polls: the job's owner is compared with the
    id, so no database read is needed.
    """
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        raise NoAuthorizationError("Missing Authorization Header")
    payload = verified.payload(token)
    if sessions.is_revoked(payload):
        raise RevokedTokenError(get_unverified_jwt_headers(token), payload)
    return int(payload["sub"])


def init_app(app: Flask) -> None:
    jwt.init_app(app)
    app.before_request(_canonical_scheme)

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
