"""The databases' own bulk loaders, the peers of an import: the same CSV file into the same
``items`` table, timed as a user would run them (the command's wall time).

- PostgreSQL: ``psql``'s ``\\copy items (name, price, quantity, sku, description) from
  FILE csv header``. ``items.store_id`` gets a column default for the run (an ``ALTER
  TABLE`` before and after, untimed) and the times have theirs (migration 0004): the
  file stays the file the service gets.
- SQLite: the ``sqlite3`` shell's ``.import --csv`` into a staging table, then one
  ``INSERT INTO items ... SELECT`` (the shell cannot fill ``store_id`` otherwise), as one
  command.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.imports.cpu import MachineCpu


def psql_copy(url: str, store_id: int, path: Path) -> dict[str, float]:
    psql = _tool("psql")

    def run(*commands: str) -> None:
        args = [psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        for command in commands:
            args += ["-c", command]
        subprocess.run(args, check=True, timeout=600)

    run(f"ALTER TABLE items ALTER store_id SET DEFAULT {int(store_id)}")
    try:
        with MachineCpu() as cpu:
            started = time.perf_counter()
            run(f"\\copy items (name, price, quantity, sku, description) from '{path}' csv header")
            elapsed = time.perf_counter() - started
    finally:
        run("ALTER TABLE items ALTER store_id DROP DEFAULT")
    return {"seconds": elapsed, "machine_cpu_s": cpu.seconds}


def sqlite_import(database: Path, store_id: int, path: Path) -> dict[str, float]:
    insert = (
        "INSERT INTO items (store_id, name, price, quantity, sku, description, created_at, "
        f"updated_at) SELECT {int(store_id)}, name, price, quantity, NULLIF(sku, ''), "
        "NULLIF(description, ''), strftime('%Y-%m-%d %H:%M:%f', 'now'), "
        "strftime('%Y-%m-%d %H:%M:%f', 'now') FROM bench_stage"
    )
    with MachineCpu() as cpu:
        started = time.perf_counter()
        _run_sqlite3(database, path, insert)
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "machine_cpu_s": cpu.seconds}


def _run_sqlite3(database: Path, path: Path, insert: str) -> None:
    subprocess.run(
        [
            _tool("sqlite3"),
            str(database),
            "-cmd",
            "PRAGMA foreign_keys=ON",
            "DROP TABLE IF EXISTS bench_stage",
            f".import --csv {path} bench_stage",
            insert,
            "DROP TABLE bench_stage",
        ],
        check=True,
        timeout=600,
    )


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed (apt-get install -y {name})")
    return found


def psycopg_copy(url: str, store_id: int, path: Path) -> dict[str, float]:
    """A third peer on PostgreSQL, the bare driver: the file's rows read into tuples
    first (untimed), then one ``COPY items (...) FROM STDIN`` in text format, the way
    the service sends them, with no parsing, checking, upload or checkpoint: what this
    client path costs the server alone."""
    import psycopg

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [(store_id, n, p, int(q), s or None, d or None) for n, p, q, s, d in reader]
    with psycopg.connect(url) as conn, MachineCpu() as cpu:
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY items (store_id, name, price, quantity, sku, description) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "machine_cpu_s": cpu.seconds}
