"""What the same rows cost without the service: the raw ceiling and the naive ORM way.

Only the insert is timed (the file is read into tuples first): a ceiling for the
database work alone, measured in the same run as the end-to-end figures.
"""

from __future__ import annotations

import csv
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg

BATCH = 5000


def read_rows(path: Path) -> list[tuple]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        return [(n, p, int(q), s, d) for n, p, q, s, d in reader]


def _batches(rows: list[tuple]) -> Iterator[list[tuple]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


def sqlite_executemany(path: Path, rows: list[tuple]) -> float:
    """Rows/s of plain ``sqlite3`` executemany into an empty table (WAL, as the service)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("DROP TABLE IF EXISTS raw_items")
    conn.execute(
        "CREATE TABLE raw_items (name TEXT, price REAL, quantity INTEGER, sku TEXT, "
        "description TEXT)"
    )
    data = [(n, float(p), q, s, d) for n, p, q, s, d in rows]
    started = time.perf_counter()
    for batch in _batches(data):
        conn.executemany("INSERT INTO raw_items VALUES (?, ?, ?, ?, ?)", batch)
        conn.commit()
    elapsed = time.perf_counter() - started
    conn.execute("DROP TABLE raw_items")
    conn.close()
    return len(rows) / elapsed


def pg_copy(url: str, rows: list[tuple]) -> float:
    """Rows/s of psycopg ``COPY`` into an empty table."""
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_items")
        conn.execute(
            "CREATE TABLE raw_items (name text, price numeric(12, 2), quantity integer, "
            "sku text, description text)"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY raw_items FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE raw_items")
        conn.commit()
    return len(rows) / elapsed


def orm_add_all(app, store_id: int, rows: list[tuple]) -> float:
    """Rows/s of the naive way: ORM ``Item`` objects, ``add_all``, a commit per batch."""
    from app.extensions import db
    from app.models import Item

    with app.app_context():
        started = time.perf_counter()
        for batch in _batches(rows):
            db.session.add_all(
                Item(
                    store_id=store_id,
                    name=n,
                    price=Decimal(p),
                    quantity=q,
                    sku=s or None,
                    description=d or None,
                )
                for n, p, q, s, d in batch
            )
            db.session.commit()
            db.session.expunge_all()
        elapsed = time.perf_counter() - started
        db.session.remove()
    return len(rows) / elapsed


STAMP = "2026-01-01 00:00:00.000000"
SQLITE_ITEMS_UPSERT = (
    "INSERT INTO items (store_id, name, price, quantity, sku, description, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, name) DO UPDATE SET "
    "price = excluded.price, quantity = excluded.quantity, sku = excluded.sku, "
    "description = excluded.description, updated_at = excluded.updated_at"
)


def sqlite_items_upsert(path: Path, store_id: int, rows: list[tuple]) -> float:
    """Rows/s of raw ``sqlite3`` upserts into the real ``items`` table (its indexes and
    constraints), a commit per 5 000: the ceiling for this schema, without the service."""
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA foreign_keys=ON")
    data = [(store_id, n, float(p), q, s, d, STAMP, STAMP) for n, p, q, s, d in rows]
    started = time.perf_counter()
    for batch in _batches(data):
        conn.executemany(SQLITE_ITEMS_UPSERT, batch)
        conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


def pg_items_copy_insert(url: str, store_id: int, rows: list[tuple]) -> float:
    """Rows/s of raw psycopg: ``COPY`` into a temporary table, then ``INSERT ... SELECT``
    into the real ``items`` table, a commit per 5 000: this schema's ceiling."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TEMPORARY TABLE raw_stage (name text, price numeric(12, 2), "
            "quantity integer, sku text, description text) ON COMMIT DELETE ROWS"
        )
        conn.commit()
        started = time.perf_counter()
        for batch in _batches(rows):
            with conn.cursor() as cur:
                with cur.copy("COPY raw_stage FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                cur.execute(
                    "INSERT INTO items (store_id, name, price, quantity, sku, description, "
                    "created_at, updated_at) SELECT %s, name, price, quantity, sku, "
                    "description, now(), now() FROM raw_stage",
                    (store_id,),
                )
            conn.commit()
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed
