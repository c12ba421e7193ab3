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
_PG_EXISTING = (
    "SELECT s.name FROM import_stage s JOIN items i ON i.store_id = %s AND i.name = s.name"
)


_PG_UPDATE = (
    "UPDATE items AS i SET price = s.price, quantity = s.quantity, sku = s.sku, "
    "description = s.description, updated_at = %s FROM import_stage AS s "
    "WHERE i.store_id = %s AND i.name = s.name RETURNING i.name"
)
_PG_INSERT_NEW = (
    "INSERT INTO items (store_id, name, price, quantity, sku, description, created_at, "
    "updated_at) SELECT %s, s.name, s.price, s.quantity, s.sku, s.description, %s, %s "
    "FROM import_stage AS s{where}"
)
_PG_ABSENT = (
    " WHERE NOT EXISTS (SELECT 1 FROM items AS i WHERE i.store_id = %s AND i.name = s.name)"
)


def apply_chunk(
    conn: Connection,
    store_id: int,
    items: Sequence[Item],
    now: datetime,
    *,
    create_only: bool,
    dry_run: bool,
) -> set[str]:
    """Write a chunk's items (unless ``dry_run``); return the names the store already had.

    ``create_only`` leaves existing names alone (the caller reports them).
    """
    if not items:
        return set()
    stage(conn, items)
    if conn.dialect.name == "postgresql" and not (dry_run or create_only):
        return _pg_update_then_insert(conn, store_id, len(items), now.replace(tzinfo=None))
    existing = existing_names(conn, store_id, [item[0] for item in items])
    if not dry_run:
        upsert(conn, store_id, items, now, create_only=create_only)
    return existing


def _pg_update_then_insert(conn: Connection, store_id: int, count: int, now: datetime) -> set[str]:
    """An UPDATE ... FROM and a plain INSERT: a third cheaper than ``ON CONFLICT DO UPDATE``
    (no speculative insertion), and the UPDATE's RETURNING names what existed. A name
    another client adds in between makes the INSERT fail: the chunk rolls back and the
    job resumes from its checkpoint (it cannot be counted twice)."""
    existing = {row[0] for row in conn.exec_driver_sql(_PG_UPDATE, (now, store_id))}
    if len(existing) < count:
        where = _PG_ABSENT if existing else ""  # nothing existed: insert every staged row
        params = (store_id, now, now, store_id) if existing else (store_id, now, now)
        conn.exec_driver_sql(_PG_INSERT_NEW.format(where=where), params)
    return existing


def _action(create_only: bool) -> str:
    return "NOTHING" if create_only else f"UPDATE SET {_SET}"


def stage(conn: Connection, items: Sequence[Item]) -> None:
    """Start a chunk. PostgreSQL: COPY its items into the session's staging table.

    Also ``synchronous_commit = off`` for this transaction: a database crash may then lose
    the last chunks, but each chunk's items and its checkpoint commit together, so they
    are lost together and the resumed job replays them; nothing is counted twice.
    """
    if conn.dialect.name != "postgresql":
        return
    raw = conn.connection.driver_connection  # psycopg 3, same transaction as ``conn``
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.execute("SET LOCAL synchronous_commit TO OFF")
        cur.execute(_PG_STAGE)
        with cur.copy(
            "COPY import_stage (name, price, quantity, sku, description) FROM STDIN"
        ) as copy:
            for item in items:
                copy.write_row(item)


def existing_names(conn: Connection, store_id: int, names: Sequence[str]) -> set[str]:
    """Which of ``names`` (the chunk's, already staged) the store has: one indexed query."""
    if not names:
        return set()
    if conn.dialect.name == "postgresql":
        result = conn.exec_driver_sql(_PG_EXISTING, (store_id,))
    else:
        result = conn.exec_driver_sql(_SQLITE_EXISTING, (store_id, orjson.dumps(names).decode()))
    return {row[0] for row in result}


def upsert(
    conn: Connection, store_id: int, items: Sequence[Item], now: datetime, *, create_only: bool
) -> None:
    """Write the chunk into the store: insert new names, update existing ones (unless
    ``create_only``, when existing names are left alone)."""
    if not items:
        return
    naive = now.replace(tzinfo=None)  # the schema stores naive UTC
    if conn.dialect.name == "postgresql":
        sql = _PG_UPSERT.format(action=_action(create_only))
        conn.exec_driver_sql(sql, (store_id, naive, naive))
        return
    # SQLAlchemy's SQLite types store NUMERIC as REAL and DATETIME as this text form.
    stamp = naive.strftime("%Y-%m-%d %H:%M:%S.%f")
    params = [
        (store_id, name, float(price), quantity, sku, description, stamp, stamp)
        for name, price, quantity, sku, description in items
    ]
    conn.exec_driver_sql(_SQLITE_UPSERT.format(action=_action(create_only)), params)


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
