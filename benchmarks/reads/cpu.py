"""CPU cost per request at the WSGI level: a figure other processes' load barely moves.

Requests/s through gunicorn on a shared 2-core machine swing with whatever else runs;
CPU time does not (much). Each app is called directly as WSGI, in this process, and
charged the process CPU time it used plus, for the service, the CPU time redis-server
spent on it (``INFO cpu``). gunicorn's own per-request work (HTTP parsing, sockets, the
access log) is the same for every app and is not included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from werkzeug.test import EnvironBuilder

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


@dataclass
class Case:
    """One app and request to cost; ``setup`` runs before each measurement."""

    app: WSGIApp
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    uses_redis: bool = True
    setup: Callable[[], None] | None = None


def _call(app: WSGIApp, environ: dict[str, Any]) -> list[Any]:
    seen: list[Any] = []
    body = app(dict(environ), lambda status, headers, exc_info=None: seen.extend(headers))
    for _chunk in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return seen


def _redis_cpu(client: redis.Redis | None) -> float:
    if client is None:
        return 0.0
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def headers_of(case: Case) -> dict[str, str]:
    environ = EnvironBuilder(path=case.path, base_url="http://127.0.0.1", headers=case.headers)
    return dict(_call(case.app, environ.get_environ()))


def cost(case: Case, *, seconds: float, redis_client: redis.Redis) -> dict[str, float]:
    """Microseconds of CPU per request: this process, redis-server, and their sum."""
    if case.setup is not None:
        case.setup()
    environ = EnvironBuilder(
        path=case.path, base_url="http://127.0.0.1", headers=case.headers
    ).get_environ()
    for _ in range(50):  # warm: entries stored, loops and pools created
        _call(case.app, environ)
    client = redis_client if case.uses_redis else None
    redis_before = _redis_cpu(client)
    started = time.process_time()
    count = 0
    while time.process_time() - started < seconds:
        for _ in range(20):
            _call(case.app, environ)
        count += 20
    app_us = (time.process_time() - started) / count * 1e6
    redis_us = (_redis_cpu(client) - redis_before) / count * 1e6
    return {"app_us": app_us, "redis_us": redis_us, "total_us": app_us + redis_us}


def compare(
    cases: dict[str, Case], *, rounds: int, seconds: float, redis_client: redis.Redis
) -> dict[str, dict[str, float]]:
    """Each case measured ``rounds`` times, interleaved; the least CPU per request kept
    (interference from other processes only ever adds to it)."""
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for name, case in cases.items():
            result = cost(case, seconds=seconds, redis_client=redis_client)
            if name not in best or result["total_us"] < best[name]["total_us"]:
                best[name] = result
    return {name: {k: round(v, 1) for k, v in r.items()} for name, r in best.items()}
