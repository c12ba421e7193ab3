"""Set-based writes of an import chunk: which names exist, upsert, delete what is absent.

One statement per chunk, not one per row: ``INSERT ... ON CONFLICT (store_id, name) DO
UPDATE`` on SQLite (executemany of one prepared statement) and, on PostgreSQL, ``COPY``
into a temporary staging table followed by one ``INSERT ... SELECT ... ON CONFLICT``.
Everything runs on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import orjson
from sqlalchemy import Connection

from app.services.rows import Item

_SET = (
    "price = excluded.price, quantity = excluded.quantity, sku = excluded.sku, "
    "description = excluded.description, updated_at = excluded.updated_at"
)

_SQLITE_UPSERT = (
    "INSERT INTO items (store_id, name, price, quantity, sku, description, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, name) DO {action}"
)
_SQLITE_EXISTING = (
    "SELECT name FROM items WHERE store_id = ? AND name IN (SELECT value FROM json_each(?))"
)
_PG_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_stage (name text, price numeric(12, 2), "
    "quantity integer, sku text, description text) ON COMMIT DELETE ROWS"
)
_PG_UPSERT = (
    "INSERT INTO items (store_id, name, price, quantity, sku, description, created_at, "
    "updated_at) SELECT %s, name, price, quantity, sku, description, %s, %s "
    "FROM import_stage ON CONFLICT (store_id, name) DO {action}"
)
_PG_EXISTING = "SELECT name FROM items WHERE store_id = %s AND name = ANY(%s)"


def _action(create_only: bool) -> str:
    return "NOTHING" if create_only else f"UPDATE SET {_SET}"


def existing_names(conn: Connection, store_id: int, names: Sequence[str]) -> set[str]:
    """Which of ``names`` the store already has (one indexed query)."""
    if not names:
        return set()
    if conn.dialect.name == "postgresql":
        result = conn.exec_driver_sql(_PG_EXISTING, (store_id, list(names)))
    else:
        result = conn.exec_driver_sql(_SQLITE_EXISTING, (store_id, orjson.dumps(names).decode()))
    return {row[0] for row in result}


def upsert(
    conn: Connection, store_id: int, items: Sequence[Item], now: datetime, *, create_only: bool
) -> None:
    """Write ``items`` into the store: insert new names, update existing ones (unless
    ``create_only``, when existing names are left alone)."""
    if not items:
        return
    naive = now.replace(tzinfo=None)  # the schema stores naive UTC
    if conn.dialect.name == "postgresql":
        _pg_upsert(conn, store_id, items, naive, create_only)
        return
    # SQLAlchemy's SQLite types store NUMERIC as REAL and DATETIME as this text form.
    stamp = naive.strftime("%Y-%m-%d %H:%M:%S.%f")
    params = [
        (store_id, name, float(price), quantity, sku, description, stamp, stamp)
        for name, price, quantity, sku, description in items
    ]
    conn.exec_driver_sql(_SQLITE_UPSERT.format(action=_action(create_only)), params)


def _pg_upsert(
    conn: Connection, store_id: int, items: Sequence[Item], now: datetime, create_only: bool
) -> None:
    raw = conn.connection.driver_connection  # psycopg 3, same transaction as ``conn``
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(_PG_STAGE)
        with cur.copy(
            "COPY import_stage (name, price, quantity, sku, description) FROM STDIN"
        ) as copy:
            for item in items:
                copy.write_row(item)
        cur.execute(_PG_UPSERT.format(action=_action(create_only)), (store_id, now, now))


def store_items(conn: Connection, store_id: int, batch: int = 10000) -> Iterable[list[tuple]]:
    """The store's ``(id, name)`` pairs in keyset batches (memory stays flat)."""
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    sql = (
        f"SELECT id, name FROM items WHERE store_id = {mark} AND id > {mark} "
        f"ORDER BY id LIMIT {int(batch)}"
    )
    last = 0
    while True:
        rows = [tuple(r) for r in conn.exec_driver_sql(sql, (store_id, last))]
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def delete_ids(conn: Connection, ids: Sequence[int]) -> None:
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DELETE FROM items WHERE id = ANY(%s)", (list(ids),))
    else:
        conn.exec_driver_sql(
            "DELETE FROM items WHERE id IN (SELECT value FROM json_each(?))",
            (orjson.dumps(list(ids)).decode(),),
        )
