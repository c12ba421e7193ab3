"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from app import negotiation
from app.extensions import limiter
from app.services import health

blp = Blueprint("health", __name__)


@blp.get("/healthz")
@limiter.exempt
def healthz() -> Response:
    """The process is up."""
    return negotiation.render({"status": "ok"}, resource="health")


@blp.get("/readyz")
@limiter.exempt
def readyz() -> Response:
    """Database, Redis and the Celery broker all answer."""
    celery = current_app.extensions["celery"]
    checks = {
        "database": health.check_database(),
        "redis": health.check_redis(),
        "broker": health.check_broker(
            celery.conf.broker_url, transport_options=celery.conf.broker_transport_options
        ),
    }
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return negotiation.render(body, 200 if ok else 503, resource="health")
