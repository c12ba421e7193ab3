"""Bulk import benchmark: the service end to end beside the database's own bulk loader.

    python -m benchmarks.imports            # 1 000 000 rows, 3 rounds, SQLite and PostgreSQL
    python -m benchmarks.imports --quick    # 20 000 rows, 1 round: smoke run

Per database, on loopback: a redis-server of its own, gunicorn with the service's
``gunicorn.conf.py`` (rate limits on, as it ships) and ONE Celery worker process
(``--concurrency=1``), as the Procfile runs them. In interleaved rounds on the same
generated CSV file: the service (upload -> ``202`` -> long polls until ``succeeded``),
with the worker's peak RSS and CPU and the whole machine's CPU; and the database's own loader
(``psql \\copy``; the ``sqlite3`` shell's ``.import`` + ``INSERT ... SELECT``) into the
same ``items`` table. The verdict is the ratio of the medians. Then a 40 MB upload (time
to ``202``, web RSS over idle). Results: ``benchmarks/results/imports.json`` and
``imports.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests
from sqlalchemy import text

from benchmarks.imports import baselines
from benchmarks.imports.cpu import MachineCpu, pool_cpu_seconds
from tests.services import RedisServer, service_env, start_web, start_worker, wait_until

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SECRET = "benchmark-secret-key-that-is-long-enough-for-hs256"
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/bench_imports")
TARGETS = {
    "ratio": 0.8,  # end to end rows/s over the loader's, on the same file and table
    "worker_peak_rss_mb": 200,
    "web_rss_over_idle_mb": 100,
    "upload_40mb_s": 1.0,
}
MB = 1024 * 1024


# --- files ----------------------------------------------------------------------------


def ensure_pg_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database if the server lacks it (one command)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created PostgreSQL database {name}", flush=True)


def write_csv(path: Path, rows: int) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("name,price,quantity,sku,description\n")
        for start in range(0, rows, 10000):
            f.write(
                "".join(
                    f"Item {i:07d},{i % 5000}.{i % 100:02d},{i % 250},SKU-{i:07d},"
                    f"Benchmark item number {i}\n"
                    for i in range(start, min(rows, start + 10000))
                )
            )
    return path


def write_csv_of_size(path: Path, size: int) -> Path:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("name,price,quantity,sku,description\n")
        while f.tell() < size:
            f.write(
                "".join(
                    f"Upload {i:08d},{i % 900}.50,{i % 40},U-{i:08d},Forty megabytes of items\n"
                    for i in range(rows, rows + 5000)
                )
            )
            rows += 5000
    return path


# --- processes and sampling -----------------------------------------------------------


class RssSampler:
    """Peak RSS of a process and its children, per pid, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def snapshot(self) -> dict[int, int]:
        out = {}
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                out[proc.pid] = proc.memory_info().rss
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, rss in self.snapshot().items():
                self.peak[pid] = max(self.peak.get(pid, 0), rss)
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Service:
    """gunicorn + one Celery worker process on one database, with an account and a token."""

    def __init__(self, workdir: Path, database_url: str, redis_url: str) -> None:
        env = service_env(
            database_url,
            redis_url,
            SECRET_KEY=SECRET,
            LOG_LEVEL="WARNING",
        )
        self.web, self.base = start_web(env, workdir / "web.log", workers=2)
        self.worker = start_worker(env, workdir / "worker.log", concurrency=1)
        wait_until(lambda: " ready." in self.worker.output(), timeout=60, what="worker")
        self.session = requests.Session()
        user = {"username": "bench", "password": "benchmark password"}
        self.session.post(f"{self.base}/v1/auth/register", json=user, timeout=10)
        login = self.session.post(f"{self.base}/v1/auth/login", json=user, timeout=10).json()
        self.token = login["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        self._stores = 0

    def new_store(self) -> int:
        self._stores += 1
        r = self.session.post(
            f"{self.base}/v1/stores", json={"name": f"Bench {self._stores}"}, timeout=10
        )
        return r.json()["id"]

    def upload(self, store_id: int, path: Path) -> tuple[requests.Response, float]:
        started = time.perf_counter()
        with open(path, "rb") as f:
            r = self.session.post(
                f"{self.base}/v1/stores/{store_id}/imports",
                data=f,
                headers={"Content-Type": "text/csv"},
                timeout=120,
            )
        return r, time.perf_counter() - started

    def stop(self) -> None:
        self.web.stop()
        self.worker.stop()


# --- measurements ---------------------------------------------------------------------


FINISHED = ("succeeded", "failed", "cancelled")


def end_to_end(service: Service, path: Path, rows: int) -> dict[str, Any]:
    """Upload -> ``202`` -> the job ``succeeded``, followed by long polls (woken by each
    change), with the worker's peak RSS and CPU and the whole machine's CPU."""
    store_id = service.new_store()
    worker_pid = service.worker.proc.pid  # type: ignore[union-attr]
    cpu_before = pool_cpu_seconds(psutil.Process(worker_pid))
    with RssSampler(worker_pid) as rss, MachineCpu() as machine:
        started = time.perf_counter()
        response, upload_s = service.upload(store_id, path)
        assert response.status_code == 202, response.text
        url = f"{service.base}/v1/jobs/{response.json()['id']}"
        job, etag = response.json(), None
        while job["status"] not in FINISHED:
            headers = {"Prefer": "wait=25", **({"If-None-Match": etag} if etag else {})}
            r = service.session.get(url, headers=headers, timeout=40)
            if r.status_code == 200:
                job, etag = r.json(), r.headers.get("ETag")
        elapsed = time.perf_counter() - started
    assert job["status"] == "succeeded" and job["progress"]["created"] == rows, job
    main_rss = rss.peak.get(worker_pid, 0)
    child_rss = max((v for pid, v in rss.peak.items() if pid != worker_pid), default=0)
    worker_cpu = pool_cpu_seconds(psutil.Process(worker_pid)) - cpu_before
    return {
        "store_id": store_id,
        "upload_s": round(upload_s, 3),
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed),
        "worker_child_peak_rss_mb": round(child_rss / MB, 1),
        "worker_main_peak_rss_mb": round(main_rss / MB, 1),
        "worker_cpu_s": round(worker_cpu, 2),
        "machine_cpu_s": round(machine.seconds, 2),
    }


def web_upload(service: Service, path: Path) -> dict[str, Any]:
    """Time to 202 for a 40 MB file and the web processes' peak RSS over idle."""
    store_id = service.new_store()
    sampler = RssSampler(service.web.proc.pid)  # type: ignore[union-attr]
    idle = sampler.snapshot()
    with sampler:
        response, upload_s = service.upload(store_id, path)
    assert response.status_code == 202, response.text
    over = max(sampler.peak.get(pid, 0) - rss for pid, rss in idle.items())
    url = f"{service.base}/v1/jobs/{response.json()['id']}"
    wait_until(
        lambda: service.session.get(url, timeout=10).json()["status"] == "succeeded",
        timeout=600,
        interval=0.5,
        what="the 40 MB import",
    )
    return {
        "file_mb": round(path.stat().st_size / MB, 1),
        "time_to_202_s": round(upload_s, 3),
        "web_peak_rss_over_idle_mb": round(over / MB, 1),
    }


def empty_items(url: str) -> None:
    """Back to an empty ``items`` table (untimed), so every measurement starts alike."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60)
        conn.execute("DELETE FROM items")
        conn.commit()
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        return
    import psycopg

    with psycopg.connect(_plain_url(url), autocommit=True) as server:
        server.execute("TRUNCATE items")
        server.execute("VACUUM ANALYZE items")
        server.execute("CHECKPOINT")


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


# --- databases ------------------------------------------------------------------------


def prepare_database(url: str) -> Any:
    """Empty the database, run the real migrations, return an app bound to it."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": SECRET, "REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        upgrade()
        db.session.remove()
    return app


def database_version(url: str) -> str:
    if url.startswith("sqlite"):
        return f"SQLite {sqlite3.sqlite_version}"
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def run_database(
    name: str,
    url: str,
    path: Path,
    rows: int,
    rounds: int,
    upload: Path,
    workdir: Path,
    redis: RedisServer,
) -> dict[str, Any]:
    """Rounds of (the service end to end, the database's own loader), the order turning
    each round, the table emptied before each measurement."""
    print(f"== {name}", flush=True)
    prepare_database(url)
    service = Service(workdir, url, redis.url)
    out: dict[str, Any] = {"version": database_version(_plain_url(url)), "rounds": []}
    try:
        for n in range(rounds):
            figures: dict[str, Any] = {}
            order = ["service", "loader"] if n % 2 == 0 else ["loader", "service"]
            if name == "postgresql":
                order.insert(1, "driver")
            for who in order:
                empty_items(url)
                if who == "service":
                    figures["service"] = end_to_end(service, path, rows)
                elif who == "driver":
                    driver = baselines.psycopg_copy(_plain_url(url), service.new_store(), path)
                    figures["driver"] = {k: round(v, 3) for k, v in driver.items()}
                else:
                    store_id = service.new_store()
                    if name == "sqlite":
                        loader = baselines.sqlite_import(
                            Path(url.removeprefix("sqlite:///")), store_id, path
                        )
                    else:
                        loader = baselines.psql_copy(_plain_url(url), store_id, path)
                    figures["loader"] = {k: round(v, 3) for k, v in loader.items()}
            figures["ratio"] = round(
                figures["loader"]["seconds"] / figures["service"]["seconds"], 3
            )
            print(
                f"   round {n + 1}: service {figures['service']['seconds']} s, loader "
                f"{figures['loader']['seconds']} s, ratio {figures['ratio']}",
                flush=True,
            )
            out["rounds"].append(figures)
        service_s = [r["service"]["seconds"] for r in out["rounds"]]
        loader_s = [r["loader"]["seconds"] for r in out["rounds"]]
        out["service_s"], out["loader_s"] = spread(service_s), spread(loader_s)
        out["ratio_of_medians"] = round(
            statistics.median(loader_s) / statistics.median(service_s), 3
        )
        out["ratio_per_round"] = spread([r["ratio"] for r in out["rounds"]])
        out["worker_child_peak_rss_mb"] = spread(
            [r["service"]["worker_child_peak_rss_mb"] for r in out["rounds"]]
        )
        empty_items(url)
        out["upload_40mb"] = web_upload(service, upload)
    finally:
        service.stop()
    return out


def _plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# --- report ---------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Bulk import benchmark: the service beside the database's own loader",
        "",
        f"Run {results['when']} with `{results['command']}` on {m['nproc']} cores "
        f"(`nproc`), load average {m['load_before']} before and {m['load_after']} after, "
        f"Python {m['python']}. The service as it ships: gunicorn with its "
        "`gunicorn.conf.py`, rate limits on, ONE Celery worker process (`--concurrency=1`, "
        "the Procfile's worker), its own redis-server, everything on loopback. The file: "
        f"{results['rows']:,} rows of CSV ({results['file_mb']} MB), into a new store. "
        f"{results['rounds']} interleaved rounds per database (the order turns each "
        "round), `items` emptied and vacuumed before every measurement.",
        "",
        "End to end: upload -> `202` -> the job `succeeded` (followed by long polls), "
        "what a client waits. The peer: the database's own bulk loader, the same file "
        "into the same `items` table (its indexes, checks and foreign key), as a command "
        "(`benchmarks/imports/baselines.py`).",
        "",
        "| database | end to end s, median (min - max) | rows/s | loader s, median "
        "(min - max) | loader rows/s | ratio of medians (target >= "
        f"{TARGETS['ratio']}) | ratio per round, median (min - max) | worker peak RSS MB, "
        f"median (max) (target <= {TARGETS['worker_peak_rss_mb']}) | before this change "
        "(rows/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = results["rows"]
    for db_name, data in results["databases"].items():
        svc, ldr, ratio = data["service_s"], data["loader_s"], data["ratio_of_medians"]
        rss = data["worker_child_peak_rss_mb"]
        verdict = "met" if ratio >= TARGETS["ratio"] else "**missed**"
        rss_verdict = "met" if rss["max"] <= TARGETS["worker_peak_rss_mb"] else "**missed**"
        before = data.get("before")
        lines.append(
            f"| {db_name} ({data['version']}) | {svc['median']} ({svc['min']} - {svc['max']}) "
            f"| {round(rows / svc['median']):,} | {ldr['median']} ({ldr['min']} - "
            f"{ldr['max']}) | {round(rows / ldr['median']):,} | {ratio}: {verdict} "
            f"| {data['ratio_per_round']['median']} ({data['ratio_per_round']['min']} - "
            f"{data['ratio_per_round']['max']}) | {rss['median']} ({rss['max']}): "
            f"{rss_verdict} | {f'{before:,}' if before else '-'} |"
        )
    lines += [
        "",
        "## Where the time goes (per round)",
        "",
        "CPU seconds in the same run, beside the wall time: the worker's pool process "
        "(read, parse, check, send; SQLite's own work runs inside it too) and the whole "
        f"machine ({results['machine']['nproc']} cores: at most "
        f"{results['machine']['nproc']} CPU seconds per second), which counts the database "
        "server's processes, the loader's included. On PostgreSQL a third peer, the bare "
        "driver: the same rows parsed beforehand (untimed) and sent by psycopg in one "
        "`COPY` in the text format the service uses, which prices the server's side of "
        "the service's path alone.",
        "",
        "| database | round | end to end s | upload s | worker CPU s | machine CPU s "
        "| loader s | loader machine CPU s | bare driver COPY s | its machine CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for db_name, data in results["databases"].items():
        for n, r in enumerate(data["rounds"], 1):
            svc, ldr, drv = r["service"], r["loader"], r.get("driver", {})
            lines.append(
                f"| {db_name} | {n} | {svc['seconds']} | {svc['upload_s']} "
                f"| {svc['worker_cpu_s']} | {svc['machine_cpu_s']} "
                f"| {ldr['seconds']} | {ldr['machine_cpu_s']} "
                f"| {drv.get('seconds', '-')} | {drv.get('machine_cpu_s', '-')} |"
            )
    lines += [
        "",
        "## Uploading 40 MB",
        "",
        "| database | time to 202 s (target <= 1) | web peak RSS over idle MB (target <= 100) |",
        "|---|---|---|",
    ]
    for db_name, data in results["databases"].items():
        up = data["upload_40mb"]
        lines.append(
            f"| {db_name} | {up['time_to_202_s']} ({up['file_mb']} MB) "
            f"| {up['web_peak_rss_over_idle_mb']} |"
        )
    lines += ["", "Raw figures: `imports.json` beside this file.", ""]
    return "\n".join(lines)


def _before(previous: dict[str, Any] | None, db_name: str, rows: int) -> int | None:
    """The committed result's end-to-end rows/s for this file size (what we had)."""
    data = (previous or {}).get("databases", {}).get(db_name, {})
    if "service_s" in data and previous and previous.get("rows") == rows:
        return round(rows / data["service_s"]["median"])
    for size in data.get("sizes", []):  # the format before the loader peers
        if size.get("rows") == rows:
            return size["rows_per_s"]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 000 rows, 1 round: smoke run")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows, rounds = (20_000, 1) if args.quick else (args.rows, args.rounds)
    suffix = "-quick" if args.quick else ""
    previous_file = args.out / f"imports{suffix}.json"
    previous = json.loads(previous_file.read_text()) if previous_file.exists() else None
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.imports" + (" --quick" if args.quick else ""),
        "machine": {
            "nproc": os.cpu_count(),
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "targets": TARGETS,
        "rows": rows,
        "rounds": rounds,
        "databases": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
        workdir = Path(tmp)
        print("generating files", flush=True)
        path = write_csv(workdir / f"items-{rows}.csv", rows)
        results["file_mb"] = round(path.stat().st_size / MB, 1)
        upload = write_csv_of_size(workdir / "upload-40mb.csv", 40 * MB)
        redis = RedisServer(workdir)
        redis.start()
        try:
            for name in args.databases.split(","):
                if name == "sqlite":
                    url = f"sqlite:///{workdir / 'bench.db'}"
                else:
                    ensure_pg_database(PG_URL)
                    url = PG_URL.replace("postgresql://", "postgresql+psycopg://")
                sub = workdir / name
                sub.mkdir()
                data = run_database(name, url, path, rows, rounds, upload, sub, redis)
                data["before"] = _before(previous, name, rows)
                results["databases"][name] = data
        finally:
            redis.stop()
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"imports{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"imports{suffix}.md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
