"""Readiness checks of the parts the service depends on."""

from __future__ import annotations

import logging

from kombu import Connection
from sqlalchemy import text

from app.extensions import db, redis_client

log = logging.getLogger(__name__)


def check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any failure means "not ready", never a 500
        db.session.rollback()
        log.warning("readiness: database down: %s", exc)
        return "down"


def check_redis() -> str:
    try:
        redis_client.client.ping()
        return "ok"
    except Exception as exc:
        log.warning("readiness: redis down: %s", exc)
        return "down"


def check_broker(
    url: str,
    *,
    timeout: float = 1.0,
    transport_options: dict | None = None,
    ssl: dict | bool | None = None,
) -> str:
    """``ok`` when the Celery broker answers; ``ssl`` as the worker uses it (``rediss://``)."""
    # The worker's own socket timeouts are long (a busy broker is no reason to drop a
    # task); a readiness probe must answer quickly, so it uses the short ones.
    options = {
        **(transport_options or {}),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    try:
        connection = Connection(
            url, connect_timeout=timeout, transport_options=options, ssl=ssl or False
        )
        with connection as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
        return "ok"
    except Exception as exc:
        log.warning("readiness: broker down: %s", exc)
        return "down"
