"""Every Celery setting, lowercase, read from the environment.

Durability first: a task is acknowledged only after it ran (``task_acks_late``), a
worker killed mid-task leaves its message to be redelivered
(``task_reject_on_worker_lost``), and a worker holds one message at a time.
"""

from __future__ import annotations

import os
import ssl

_redis = os.environ.get("REDIS_URL") or "redis://localhost:6379/0"

broker_url = os.environ.get("CELERY_BROKER_URL") or _redis
# The job row in the database is the truth about a job; no result backend.
result_backend = None
task_ignore_result = True

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_default_queue = "default"
# Task modules, and the reaper (a thread in each worker's main process that re-sends
# import jobs no live worker holds; see workers/reaper.py).
imports = ("workers.tasks", "workers.reaper")
task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True
worker_hijack_root_logger = False
worker_max_tasks_per_child = int(os.environ.get("CELERY_MAX_TASKS_PER_CHILD") or 200)
# A pool process that ends a task above this RSS (KiB) is replaced by a fresh fork: a
# large import leaves its heap fragmented and SQLite's page cache warm, and the next
# one would start from there (178, 198, then 209 MB peaks over three million-row
# imports in one process; each starts near 100 MB in a fresh one).
worker_max_memory_per_child = int(os.environ.get("CELERY_MAX_MEMORY_PER_CHILD") or 150_000)
worker_concurrency = int(os.environ.get("CELERY_CONCURRENCY") or 2)
broker_connection_retry_on_startup = True
# The web process only sends tasks: one pooled broker connection, so its Redis
# connections stay few (Heroku's small Redis plans allow few per app).
broker_pool_limit = int(os.environ.get("CELERY_BROKER_POOL_LIMIT") or 1)
broker_connection_timeout = 2.0
broker_transport_options = {
    # Longer than any task may run between checkpoints: an unacked message is
    # redelivered only after this many seconds.
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT") or 3600),
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
}


def broker_ssl_options(url: str) -> dict[str, int] | None:
    """TLS options for a ``rediss://`` broker (Heroku Redis uses self-signed certificates)."""
    if not url.startswith("rediss://"):
        return None
    reqs = os.environ.get("REDIS_SSL_CERT_REQS", "none").lower()
    modes = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL}
    return {"ssl_cert_reqs": modes.get(reqs, ssl.CERT_NONE)}


broker_use_ssl = broker_ssl_options(broker_url)
