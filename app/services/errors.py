"""Domain errors raised by services; ``app.errors`` maps them to problem documents."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class NotFound(ServiceError):
    status = 404
    title = "Not Found"


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class Invalid(ServiceError):
    """Input that is well-formed but breaks a rule (422), with the fields named."""

    status = 422
    title = "Unprocessable Content"
