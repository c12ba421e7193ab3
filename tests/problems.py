"""Assertions shared by the HTTP tests: RFC 9457 problem documents."""

from __future__ import annotations

from typing import Any

PROBLEM_KEYS = {"type", "title", "status", "detail", "request_id"}


def assert_problem(response: Any, status: int, *, case: Any = None) -> dict[str, Any]:
    """``response`` (Flask test client or requests) is a problem document with ``status``.

    ``case`` names the input in failure messages when a test loops over many inputs.
    """
    code = getattr(response, "status_code", None)
    body = response.json() if callable(response.json) else response.json
    assert code == status, (case, code, body)
    assert response.headers["Content-Type"].startswith("application/problem+json"), case
    assert set(body) >= PROBLEM_KEYS, (case, body)
    assert body["status"] == status and body["title"] and body["detail"], (case, body)
    return body


def assert_invalid(response: Any, *fields: str, case: Any = None) -> dict[str, Any]:
    """A 422 problem whose ``errors`` name exactly ``fields`` (in any order)."""
    body = assert_problem(response, 422, case=case)
    named = {e["field"] for e in body["errors"]}
    assert named == set(fields), (case, body["errors"])
    assert all(e["message"] for e in body["errors"]), (case, body["errors"])
    return body


def assert_unauthorized(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer"), response.headers
    return body
