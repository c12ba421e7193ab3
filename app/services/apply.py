"""Set-based writes of an import chunk: upsert (telling inserts from updates), which names
exist (dry runs), delete what is absent.

A few statements per chunk, not one per row, and as little coming back as the counts
need:

- PostgreSQL, a chunk of new names (``fresh``): ``COPY`` straight into ``items`` inside a
  savepoint, the database's own bulk path. A name that exists after all (a unique
  violation) rolls the savepoint back and the chunk takes the general path.
- PostgreSQL, the general path: ``COPY`` into a temporary staging table, then one
  ``INSERT ... SELECT ... ON CONFLICT`` whose ``RETURNING`` names the rows it updated
  (``xmax <> 0``) or, under ``create``, the rows it inserted.
- SQLite: one ``INSERT ... SELECT ... FROM json_each(?) ON CONFLICT DO NOTHING``; how many
  rows it inserted is ``changes()``. Only when that is short of the chunk are the names
  that existed looked up (the rows with ids below the ones just inserted: SQLite lets one
  writer in at a time, this transaction has been it since its insert, and the rows it
  inserted took the ids above every row that was there) and, under ``upsert``, updated.

Counts come from what these statements did, never from a look beforehand: two imports
racing on the same new names cannot both count one as created.
Everything runs on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from sqlalchemy import Connection

from app.services.rows import Item

_SET = (
    "price = excluded.price, quantity = excluded.quantity, sku = excluded.sku, "
    "description = excluded.description, updated_at = excluded.updated_at"
)

# A price goes in as its decimal text; the column's NUMERIC affinity stores the number.
_SQLITE_INSERT = (
    "INSERT INTO items (store_id, name, price, quantity, sku, description, created_at, "
    "updated_at) SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
    "?, ? FROM json_each(?) WHERE true ON CONFLICT (store_id, name) DO NOTHING"
)
# The ids this transaction's insert took are the highest: what lies below existed before.
_SQLITE_FOUND = (
    "SELECT name FROM items WHERE store_id = ? AND id <= (SELECT max(id) FROM items) - ? "
    "AND name IN (SELECT json_extract(value, '$[0]') FROM json_each(?))"
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
_PG_SETTINGS = "SELECT " + ", ".join(
    f"set_config('{name}', 'off', true)"
    for name in ("synchronous_commit", "enable_hashjoin", "enable_mergejoin", "enable_material")
)
# The times are the columns' default, the transaction's (migration 0004): sending them
# would cost the server a timestamp parse per row and column.
_PG_COPY_ITEMS = "COPY items (store_id, name, price, quantity, sku, description) FROM STDIN"
# An anti-join: the staged names the store does NOT have. Its plan is always the staged
# rows each probing the unique index (a semi-join could be turned around by the planner).
_PG_ABSENT = (
    "SELECT s.name FROM import_stage AS s WHERE NOT EXISTS "
    "(SELECT 1 FROM items AS i WHERE i.store_id = %s AND i.name = s.name)"
)


# Rows per write statement: a chunk (``IMPORT_CHUNK_ROWS``, one transaction and one
# checkpoint) is written in batches of this many. Few commits keep SQLite fast (a commit
# writes every page the chunk dirtied in the price index, whose keys are scattered);
# few rows in flight keep the worker small (SQLite's statement holds the batch three
# times: Python's JSON, its copy, its parse). PostgreSQL idles between statements (the
# foreign key checks run at each statement's end), so it gets longer ones. Figures:
# docs/decisions.md, "Imports at the speed of the database's own loader".
BATCH_ROWS = {"postgresql": 20_000}
DEFAULT_BATCH_ROWS = 5_000
# SQLite's page cache for an import's connection: the price index of a million items.
SQLITE_IMPORT_CACHE_KIB = 32 * 1024


def batch_rows(dialect: str, configured: int = 0) -> int:
    """Rows per write statement: ``IMPORT_BATCH_ROWS`` if set, else this database's."""
    return configured or BATCH_ROWS.get(dialect, DEFAULT_BATCH_ROWS)


def apply_chunk(
    conn: Connection,
    store_id: int,
    items: Sequence[Item],
    now: datetime,
    *,
    create_only: bool,
    dry_run: bool,
    fresh: bool = False,
) -> set[str]:
    """Write a batch's items (unless ``dry_run``); return the names the store already had,
    as the write found them (a dry run looks them up: it predicts, it writes nothing).

    ``create_only`` leaves existing names alone (the caller reports them). ``fresh``: the
    caller expects none of the names to exist (the last batch had none), so PostgreSQL
    tries its bulk path first.
    """
    if not items:
        return set()
    postgresql = conn.dialect.name == "postgresql"
    _local_settings(conn)
    if postgresql:
        if fresh and not dry_run and _copy_new(conn, store_id, items):
            return set()
        stage(conn, items)
    if dry_run:
        return existing_names(conn, store_id, [item[0] for item in items])
    return upsert(conn, store_id, items, now, create_only=create_only)


def _raw(conn: Connection) -> Any:
    return conn.connection.driver_connection  # psycopg 3, same transaction as ``conn``


def _local_settings(conn: Connection) -> None:
    """Once per transaction. SQLite: a page cache large enough for the indexes a chunk
    touches. PostgreSQL: ``synchronous_commit = off`` (a database crash
    may then lose the last chunks, but each chunk's items and its checkpoint commit
    together, so they are lost together and the resumed job replays them; nothing is
    counted twice), and name lookups that probe the unique index row by row (with
    statistics taken while the store was small, as autovacuum lags a bulk load, the
    planner would rather hash the whole store on every chunk: quadratic over an import).
    """
    transaction = conn.get_transaction()
    if conn.info.get("import_settings") is transaction:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_PG_SETTINGS)
    else:
        conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}")
    conn.info["import_settings"] = transaction


def _copy_new(conn: Connection, store_id: int, items: Sequence[Item]) -> bool:
    """PostgreSQL: ``COPY`` the batch straight into ``items``, all of it inserted, or
    nothing (``False``: a name exists; the savepoint took the partial copy back)."""
    with _raw(conn).cursor() as cur:
        cur.execute("SAVEPOINT import_copy")
        try:
            with cur.copy(_PG_COPY_ITEMS) as copy:
                for item in items:
                    copy.write_row((store_id, *item))
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT import_copy")
            return False
        cur.execute("RELEASE SAVEPOINT import_copy")
    return True


def stage(conn: Connection, items: Sequence[Item]) -> None:
    """PostgreSQL: COPY the batch's items, alone, into the session's staging table."""
    with _raw(conn).cursor() as cur:
        cur.execute(_PG_STAGE)
        # Emptied at each commit, but a chunk stages several batches in one transaction.
        cur.execute("DELETE FROM import_stage")
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
    if conn.dialect.name == "postgresql":
        params = (store_id, naive, naive)
        if create_only:
            names = {item[0] for item in items}
            return names - {row[0] for row in conn.exec_driver_sql(_PG_CREATE, params)}
        return {row[0] for row in conn.exec_driver_sql(_PG_UPSERT, params)}
    # SQLAlchemy's SQLite types store DATETIME as this text form.
    stamp = naive.strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = orjson.dumps(items).decode()
    raw = _raw(conn)
    inserted = raw.execute(_SQLITE_INSERT, (store_id, stamp, stamp, rows)).rowcount
    if inserted == len(items):
        return set()
    existing = {r[0] for r in raw.execute(_SQLITE_FOUND, (store_id, inserted, rows))}
    if existing and not create_only:
        raw.executemany(
            _SQLITE_UPDATE,
            [(p, q, s, d, stamp, store_id, n) for n, p, q, s, d in items if n in existing],
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
