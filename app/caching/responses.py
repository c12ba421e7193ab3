"""Headers of a cached answer, shared by the fast path and the Flask path."""

from __future__ import annotations

from app.caching.backend import Hit


def hit_headers(hit: Hit) -> list[tuple[str, str]]:
    return [("ETag", hit.etag), ("Cache-Control", "no-cache"), ("X-Cache", "HIT")]


def not_modified_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # RFC 9110 §15.4.5: a 304 repeats Vary (and the validators), no content headers.
    return [(k, v) for k, v in headers if k.lower() == "vary"]
