"""Generations: every committed write to a store makes its cached reads unreachable.

The services send ``app.signals.store_changed`` after a commit (API writes and bulk
imports alike); ``Generations`` listens and replaces the store's generation token and the
global one (``rg:all``). A generation is a token never used before (a random one per
bump), not a counter: a generation key lost to a restart or an eviction comes back as a
fresh token, so it can never make an old entry match again.

A bump that fails (Redis down or hung) is kept and retried by a background thread every
``RETRY_SECONDS`` until Redis takes it; meanwhile this process caches nothing
(``available`` is false), since it alone knows that some entries are stale.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from flask import Flask

from app.caching.backend import ReadCacheBackend
from app.extensions import redis_client
from app.signals import store_changed

log = logging.getLogger(__name__)
RETRY_SECONDS = 0.1


class Generations:
    """The generation bumps of one app, with the ones Redis has not taken yet."""

    def __init__(self, backend: ReadCacheBackend) -> None:
        self.backend = backend
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._retrier: threading.Thread | None = None

    def listen(self, app: Flask) -> None:
        """Bump on every ``store_changed`` this app's services send."""
        store_changed.connect(self._on_store_changed, sender=app)

    def _on_store_changed(self, sender: Any, *, store_id: int, **_: Any) -> None:
        self.bump(store_id)

    def available(self) -> bool:
        """False while Redis is failing or a bump of ours is still pending."""
        if not redis_client.available():
            return False
        return not self._pending or self._flush_pending()

    def bump(self, store_id: int) -> None:
        """After a committed write to a store: new generations for it and for all lists."""
        if redis_client.available():  # don't make writes wait on a dead Redis
            try:
                self.backend.new_generations([store_id])
                return
            except redis.RedisError as exc:
                redis_client.failed(exc, "bump")
        with self._lock:
            self._pending.add(store_id)
        self._start_retrier()

    def _flush_pending(self) -> bool:
        with self._lock:
            pending = set(self._pending)
        if not pending:
            return True
        try:
            self.backend.new_generations(pending)
        except redis.RedisError as exc:
            redis_client.failed(exc, "retrying bumps")
            return False
        with self._lock:
            self._pending -= pending
        log.info("read cache: %d pending generation bump(s) applied", len(pending))
        return True

    def _start_retrier(self) -> None:
        with self._lock:
            if self._retrier is not None and self._retrier.is_alive():
                return
            self._retrier = threading.Thread(
                target=self._retry_loop, name="read-cache-bumps", daemon=True
            )
            self._retrier.start()

    def _retry_loop(self) -> None:
        while True:
            time.sleep(RETRY_SECONDS)
            if self._flush_pending():
                return
