"""SQLite lock waits that yield (app/sqlite_cooperative.py): retried, bounded, honest."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from app import sqlite_cooperative


def _open(path, **kwargs) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, **kwargs)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def test_a_write_waits_for_the_lock_then_lands(tmp_path):
    path = tmp_path / "db.sqlite"
    holder = _open(path)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # the worker's chunk transaction
    holder.execute("INSERT INTO t VALUES (1)")
    waiting = _open(path, **sqlite_cooperative.connect_args(5.0))
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    started = time.monotonic()
    waiting.cursor().execute("INSERT INTO t VALUES (2)")
    assert 0.25 < time.monotonic() - started < 3
    assert sorted(r[0] for r in waiting.execute("SELECT x FROM t")) == [1, 2]


def test_a_lock_never_released_fails_after_the_timeout(tmp_path):
    path = tmp_path / "db.sqlite"
    holder = _open(path)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    waiting = _open(path, **sqlite_cooperative.connect_args(0.3))
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        waiting.cursor().execute("INSERT INTO t VALUES (2)")
    assert 0.25 < time.monotonic() - started < 2
    holder.execute("ROLLBACK")


def test_other_errors_are_not_retried(tmp_path):
    conn = _open(tmp_path / "db.sqlite", **sqlite_cooperative.connect_args(5.0))
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        conn.cursor().execute("SELECT * FROM missing")
    assert time.monotonic() - started < 0.5
