"""Set-based writes of an import chunk: upsert (telling inserts from updates), which names
exist (dry runs), delete what is absent.

A few statements per chunk, not one per row. PostgreSQL: ``COPY`` into a temporary
staging table, then one ``INSERT ... SELECT ... ON CONFLICT`` whose ``RETURNING`` says
which rows it inserted (``xmax = 0``) and which it updated. SQLite: one ``INSERT ...
SELECT ... FROM json_each(?) ON CONFLICT DO NOTHING RETURNING name`` (the names it
inserted), then an ``UPDATE`` of the others: SQLite lets one writer in at a time, and
this transaction has been the writer since its insert, so the others existed.

Counts come from what these statements did, never from a look beforehand: two imports
racing on the same new names cannot both count one as created.
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

_SQLITE_INSERT = (
    "INSERT INTO items (store_id, name, price, quantity, sku, description, created_at, "
    "updated_at) SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
    "?, ? FROM json_each(?) WHERE true ON CONFLICT (store_id, name) DO NOTHING RETURNING name"
)
_SQLITE_UPDATE = (
    "UPDATE items SET price = ?, quantity = ?, sku = ?, description = ?, updated_at = ? "
    "WHERE store_id = ? AND name = ?"
)
_SQLITE_EXISTING = (
    "SELECT name FROM items WHERE store_id = ? AND name IN (SELECT value FROM json_each(?))"
)
_PG_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_stage (name text, price numeric(12, 2), "
    "quantity integer, sku text, description text) ON COMMIT DELETE ROWS"
)
_PG_INSERT = (
    "INSERT INTO items (store_id, name, price, quantity, sku, description, created_at, "
    "updated_at) SELECT %s, name, price, quantity, sku, description, %s, %s "
    "FROM import_stage ON CONFLICT (store_id, name) DO {action}"
)
# An updated row carries this transaction's id in xmax; an inserted one has none.
_PG_UPSERT = (
    f"WITH written AS ({_PG_INSERT.format(action='UPDATE SET ' + _SET)} "
    "RETURNING name, xmax = 0 AS inserted) SELECT name FROM written WHERE NOT inserted"
)
_PG_CREATE = _PG_INSERT.format(action="NOTHING") + " RETURNING name"
# An anti-join: the staged names the store does NOT have. Its plan is always the staged
# rows each probing the unique index (a semi-join could be turned around by the planner).
_PG_ABSENT = (
    "SELECT s.name FROM import_stage AS s WHERE NOT EXISTS "
    "(SELECT 1 FROM items AS i WHERE i.store_id = %s AND i.name = s.name)"
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
    """Write a chunk's items (unless ``dry_run``); return the names the store already had,
    as the write found them (a dry run looks them up: it predicts, it writes nothing).

    ``create_only`` leaves existing names alone (the caller reports them).
    """
    if not items:
        return set()
    stage(conn, items)
    if dry_run:
        return existing_names(conn, store_id, [item[0] for item in items])
    return upsert(conn, store_id, items, now, create_only=create_only)


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
        # The name lookups must probe the unique index row by row. With statistics taken
        # while the store was small (autovacuum lags a bulk load), the planner would rather
        # hash the whole store on every chunk: quadratic over a large import.
        cur.execute("SET LOCAL enable_hashjoin TO OFF")
        cur.execute("SET LOCAL enable_mergejoin TO OFF")
        cur.execute("SET LOCAL enable_material TO OFF")
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
        absent = {row[0] for row in conn.exec_driver_sql(_PG_ABSENT, (store_id,))}
        return set(names) - absent
    else:
        result = conn.exec_driver_sql(_SQLITE_EXISTING, (store_id, orjson.dumps(names).decode()))
    return {row[0] for row in result}


def upsert(
    conn: Connection, store_id: int, items: Sequence[Item], now: datetime, *, create_only: bool
) -> set[str]:
    """Write the chunk into the store: insert new names, update existing ones (unless
    ``create_only``, when existing names are left alone). Returns the names that existed
    (not inserted by this write). PostgreSQL: the chunk is staged already."""
    if not items:
        return set()
    naive = now.replace(tzinfo=None)  # the schema stores naive UTC
    names = {item[0] for item in items}
    if conn.dialect.name == "postgresql":
        params = (store_id, naive, naive)
        if create_only:
            return names - {row[0] for row in conn.exec_driver_sql(_PG_CREATE, params)}
        return {row[0] for row in conn.exec_driver_sql(_PG_UPSERT, params)}
    # SQLAlchemy's SQLite types store NUMERIC as REAL and DATETIME as this text form.
    stamp = naive.strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = orjson.dumps([(n, float(p), q, s, d) for n, p, q, s, d in items]).decode()
    written = conn.exec_driver_sql(_SQLITE_INSERT, (store_id, stamp, stamp, rows))
    existing = names - {row[0] for row in written}
    if existing and not create_only:
        conn.exec_driver_sql(
            _SQLITE_UPDATE,
            [(float(p), q, s, d, stamp, store_id, n) for n, p, q, s, d in items if n in existing],
        )
    return existing


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
