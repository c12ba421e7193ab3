"""SQLite under gevent: wait for a lock without stopping the whole process.

SQLite's own busy handler sleeps inside C while another connection (the worker applying
an import chunk) holds the write lock. Under the gevent worker every request of the
process shares that thread, so one web write waiting for the lock froze all of them, for
as long as the worker's transaction lasted (cached-read p99 32 ms without uploads, about
500 ms with 50 uploads finishing during an import, ``benchmarks.capacity``). Here the
connection is opened with no busy timeout and a statement refused with "database is
locked" is retried after a ``time.sleep`` (gevent's, once patched: other requests run
meanwhile), for as long as SQLite itself would have waited. Retrying a statement SQLite
refused is what its busy handler does too: the statement had no effect.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

MAX_DELAY = 0.05


def _retrying(call: Callable[..., T], *args: Any, timeout: float) -> T:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return call(*args)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)


class Cursor(sqlite3.Cursor):
    timeout = 30.0

    def execute(self, *args: Any) -> Cursor:  # type: ignore[override]
        return _retrying(super().execute, *args, timeout=self.timeout)

    def executemany(self, *args: Any) -> Cursor:  # type: ignore[override]
        return _retrying(super().executemany, *args, timeout=self.timeout)


class Connection(sqlite3.Connection):
    """``sqlite3.connect(..., timeout=0, factory=Connection)``: cooperative lock waits."""

    timeout = 30.0

    def cursor(self, factory: Any = Cursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def commit(self) -> None:
        _retrying(super().commit, timeout=self.timeout)


def connect_args(timeout: float) -> dict[str, Any]:
    """SQLAlchemy ``connect_args`` for a SQLite URL in a gevent-patched process."""
    Cursor.timeout = Connection.timeout = timeout
    return {"timeout": 0, "factory": Connection}
