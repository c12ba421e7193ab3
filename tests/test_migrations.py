"""Migrations over data: 0003 rebuilds ``jobs`` on SQLite (batch mode) without losing the
rows that reference it, and jobs then outlive their store. (Every test session also runs
all migrations from an empty database, on SQLite or PostgreSQL.)"""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from app import create_app
from app.extensions import db
from tests.conftest import TEST_SECRET

SEED = [
    "INSERT INTO users (id, username, password_hash, created_at, updated_at) "
    "VALUES (1, 'u', 'h', '2026-01-01', '2026-01-01')",
    "INSERT INTO stores (id, name, owner_id, created_at, updated_at) "
    "VALUES (1, 's', 1, '2026-01-01', '2026-01-01')",
    "INSERT INTO jobs (id, kind, user_id, store_id, status, mode, dry_run, file_format, "
    "upload_bytes, body_sha256, processed, created, updated, deleted, failed, bytes_done, "
    "attempts, cancel_requested, created_at, heartbeat_at) VALUES ('j', 'item_import', 1, "
    "1, 'succeeded', 'upsert', false, 'csv', 1, 'x', 0, 0, 0, 0, 0, 0, 0, false, "
    "'2026-01-01', '2026-01-01')",
    "INSERT INTO job_errors (job_id, row, field, message) VALUES ('j', 1, 'f', 'm')",
    "INSERT INTO upload_chunks (job_id, seq, data) VALUES ('j', 0, x'00')",
]


def count(conn, table: str) -> int:
    return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def test_0003_keeps_job_rows_and_lets_jobs_outlive_their_store(tmp_path, redis_server):
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'migrate.db'}",
            "REDIS_URL": redis_server.url,
            "SECRET_KEY": TEST_SECRET,
            "RATELIMIT_ENABLED": "false",
        }
    )
    with app.app_context():
        upgrade(revision="0002_import_jobs")
        with db.engine.begin() as conn:
            for statement in SEED:
                conn.execute(text(statement))
        upgrade()
        with db.engine.begin() as conn:
            assert (count(conn, "job_errors"), count(conn, "upload_chunks")) == (1, 1)
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # back on
            conn.execute(text("DELETE FROM stores"))
            assert conn.execute(text("SELECT id, store_id FROM jobs")).all() == [("j", None)]
            assert count(conn, "job_errors") == 1
        downgrade(revision="0002_import_jobs")  # the storeless job goes, with what is its
        with db.engine.begin() as conn:
            assert (count(conn, "jobs"), count(conn, "job_errors")) == (0, 0)
        upgrade()
        db.engine.dispose()
