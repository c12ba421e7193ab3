"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Response, current_app

from app import negotiation
from app.api.common import Blueprint
from app.extensions import limiter
from app.schemas import HealthSchema, ReadinessSchema
from app.services import health

# A flask-smorest blueprint, so the probes are in /openapi.json like every other endpoint.
blp = Blueprint("health", __name__, description="Liveness and readiness probes")


@blp.route("/healthz", methods=["GET"])
@limiter.exempt
@blp.response(200, HealthSchema)
def healthz() -> Response:
    """The process is up."""
    return negotiation.render({"status": "ok"}, resource="health")


@blp.route("/readyz", methods=["GET"])
@limiter.exempt
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, schema=ReadinessSchema, description="A dependency is down; named in checks")
def readyz() -> Response:
    """Database, Redis and the Celery broker all answer."""
    celery = current_app.extensions["celery"]
    checks = {
        "database": health.check_database(),
        "redis": health.check_redis(),
        "broker": health.check_broker(
            celery.conf.broker_url,
            transport_options=celery.conf.broker_transport_options,
            ssl=celery.conf.broker_use_ssl,
        ),
    }
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return negotiation.render(body, 200 if ok else 503, resource="health")
