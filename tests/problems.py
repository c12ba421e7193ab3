"""Assertions shared by the HTTP tests: RFC 9457 problem documents."""

from __future__ import annotations

from typing import Any

PROBLEM_KEYS = {"type", "title", "status", "detail", "request_id"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """``response`` (Flask test client or requests) is a problem document with ``status``."""
    code = getattr(response, "status_code", None)
    body = response.json() if callable(response.json) else response.json
    assert code == status, (code, body)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def assert_invalid(response: Any, *fields: str) -> dict[str, Any]:
    """A 422 problem whose ``errors`` name exactly ``fields`` (in any order)."""
    body = assert_problem(response, 422)
    named = {e["field"] for e in body["errors"]}
    assert named == set(fields), body["errors"]
    assert all(e["message"] for e in body["errors"])
    return body


def assert_unauthorized(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer"), response.headers
    return body
