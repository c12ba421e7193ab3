"""Bulk import benchmark: one command, bounded, each figure beside its baseline.

    python -m benchmarks.imports            # 100 000 and 1 000 000 rows, SQLite and PostgreSQL
    python -m benchmarks.imports --quick    # 20 000 rows, smoke run

Per database, on loopback: a redis-server of its own, gunicorn with the service's
``gunicorn.conf.py`` and ONE Celery worker process (``--concurrency=1``), as the
Procfile runs them. For each generated CSV file: upload -> ``202`` -> poll until
``succeeded`` (end to end), the worker's peak RSS, then the raw ceiling on the same rows
(``sqlite3`` executemany / psycopg ``COPY`` into an empty table) and the naive baseline
(SQLAlchemy ORM ``add_all``, on the 100 000-row file only: it is slow). Then a 40 MB
upload (time to ``202``, web RSS over idle) and job polls with 32 concurrent clients.
Results: ``benchmarks/results/imports.json`` and ``imports.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
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
from tests.services import RedisServer, service_env, start_web, start_worker, wait_until

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SECRET = "benchmark-secret-key-that-is-long-enough-for-hs256"
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/bench_imports")
TARGETS = {
    "postgresql_rows_per_s": 100_000,
    "sqlite_rows_per_s": 150_000,
    "worker_peak_rss_mb": 200,
    "web_rss_over_idle_mb": 100,
    "upload_40mb_s": 1.0,
    "poll_p99_ms": 20,
}
ORM_MAX_ROWS = 100_000
# wrk runs one Lua state per thread: seed each differently (the table's address).
JITTER_LUA = """
function init(args)
  math.randomseed(os.time() + (tonumber(string.match(tostring({}), "0x(%x+)"), 16) or 0))
end
function delay()
  return math.random(0, 2 * PACE)
end
"""
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
            RATELIMIT_ENABLED="false",
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


def end_to_end(service: Service, path: Path, rows: int) -> dict[str, Any]:
    store_id = service.new_store()
    worker_pid = service.worker.proc.pid  # type: ignore[union-attr]
    with RssSampler(worker_pid) as rss:
        started = time.perf_counter()
        response, upload_s = service.upload(store_id, path)
        assert response.status_code == 202, response.text
        url = f"{service.base}/v1/jobs/{response.json()['id']}"
        while True:
            job = service.session.get(url, timeout=10).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    assert job["status"] == "succeeded" and job["progress"]["created"] == rows, job
    main_rss = rss.peak.get(worker_pid, 0)
    child_rss = max((v for pid, v in rss.peak.items() if pid != worker_pid), default=0)
    started_at = dt.datetime.fromisoformat(job["started_at"].replace("Z", "+00:00"))
    finished_at = dt.datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
    return {
        "rows": rows,
        "file_mb": round(path.stat().st_size / MB, 1),
        "upload_s": round(upload_s, 3),
        "end_to_end_s": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed),
        "worker_processing_s": round((finished_at - started_at).total_seconds(), 3),
        "worker_child_peak_rss_mb": round(child_rss / MB, 1),
        "worker_main_peak_rss_mb": round(main_rss / MB, 1),
        "store_id": store_id,
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
    # Let the worker finish this one so it does not weigh on the polls measured next.
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
        "job_url": url,
    }


def paced_polls(
    url: str, token: str, *, clients: int, seconds: float, every: float, jitter: bool = False
) -> dict:
    """``clients`` pollers, each polling ``url`` every ``every`` seconds (keep-alive); with
    ``jitter``, each waits a uniform random 0..2x``every`` instead (independent pollers)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def poller() -> None:
        nonlocal errors
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        mine, bad = [], 0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok = session.get(url, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            mine.append(time.perf_counter() - started)
            bad += not ok
            next_at += random.uniform(0, 2 * every) if jitter else every
            time.sleep(max(0.0, next_at - time.monotonic()))
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=poller) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _latency_summary(latencies, seconds, errors)


def _latency_summary(latencies: list[float], seconds: float, errors: int) -> dict:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {
        "requests": len(ordered),
        "requests_per_s": round(len(ordered) / seconds),
        "errors": errors,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(1000 * ordered[-1], 2),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
    }


def wrk_polls(
    url: str, token: str, seconds: int, *, pace_ms: int | None = None, jitter: bool = False
) -> dict | None:
    """32 connections polling ``url`` with wrk: closed loop (as fast as the server answers)
    or, with ``pace_ms``, each connection waiting that long between polls (wrk's Lua
    ``delay()``; the wait is not counted in the latency). Exact pacing keeps the 32 in
    lockstep (bursts of 32 at once); ``jitter`` draws each wait uniformly from
    0..2x``pace_ms`` (same mean rate), as independent clients poll."""
    if not (wrk := _which("wrk")):
        return None
    command = [wrk, "-t2", "-c32", f"-d{seconds}s", "--latency"]
    command += ["-H", f"Authorization: Bearer {token}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if jitter:
            script.write(JITTER_LUA.replace("PACE", str(pace_ms or 0)))
        else:
            script.write(f"function delay()\n  return {pace_ms or 0}\nend\n")
    if pace_ms:
        command += ["-s", script.name]
    try:
        out = subprocess.run(
            [*command, url], capture_output=True, text=True, timeout=seconds + 30
        ).stdout
    finally:
        os.unlink(script.name)
    result: dict[str, Any] = {"raw": out}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "90%", "99%"):
            result[f"p{parts[0][:-1]}_ms"] = _ms(parts[1])
        if line.startswith("Requests/sec:"):
            result["requests_per_s"] = round(float(parts[1]))
        if "Non-2xx" in line:
            result["non_2xx"] = int(parts[-1])
    return result


def _polls(figures: dict | None) -> str:
    if not figures:
        return "wrk not installed"
    text = f"{figures.get('p50_ms')} / {figures.get('p90_ms')} / {figures.get('p99_ms')}"
    return f"{text} ({figures.get('requests_per_s')} req/s{_errors(figures)})"


def _ms(value: str) -> float:
    for suffix, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(suffix):
            return round(float(value[: -len(suffix)]) * factor, 2)
    return float(value)


def _which(name: str) -> str | None:
    from shutil import which

    return which(name)


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
    name: str, url: str, files: dict[int, Path], upload: Path, workdir: Path, redis: RedisServer
) -> dict[str, Any]:
    print(f"== {name}", flush=True)
    app = prepare_database(url)
    service = Service(workdir, url, redis.url)
    out: dict[str, Any] = {"version": database_version(_plain_url(url)), "sizes": []}
    try:
        for rows, path in files.items():
            figures = end_to_end(service, path, rows)
            print(f"   {rows} rows end to end: {figures['rows_per_s']} rows/s", flush=True)
            data = baselines.read_rows(path)
            if name == "sqlite":
                raw = baselines.sqlite_executemany(workdir / "raw.db", data)
            else:
                raw = baselines.pg_copy(_plain_url(url), data)
            figures["raw_rows_per_s"] = round(raw)
            figures["ratio_to_raw"] = round(figures["rows_per_s"] / raw, 3)
            if name == "sqlite":
                schema = baselines.sqlite_items_upsert(
                    Path(url.removeprefix("sqlite:///")), service.new_store(), data
                )
            else:
                schema = baselines.pg_items_copy_insert(_plain_url(url), service.new_store(), data)
            figures["schema_ceiling_rows_per_s"] = round(schema)
            figures["ratio_to_schema_ceiling"] = round(figures["rows_per_s"] / schema, 3)
            if rows <= ORM_MAX_ROWS:
                orm = baselines.orm_add_all(app, service.new_store(), data)
                figures["orm_add_all_rows_per_s"] = round(orm)
                figures["ratio_to_orm"] = round(figures["rows_per_s"] / orm, 1)
            del data
            print(f"   raw {figures['raw_rows_per_s']} rows/s", flush=True)
            out["sizes"].append(figures)
        out["upload_40mb"] = web_upload(service, upload)
        job_url = out["upload_40mb"].pop("job_url")
        # Verdict: 32 independent pollers (threads, keep-alive, each waiting a uniform
        # 0-500 ms between polls). wrk's delay() adds a tail of its own (see the /healthz
        # control), so its paced figures are reported beside, not used for the verdict.
        out["polls_independent"] = paced_polls(
            job_url, service.token, clients=32, seconds=10, every=0.25, jitter=True
        )
        out["polls_independent_wrk"] = wrk_polls(
            job_url, service.token, 10, pace_ms=250, jitter=True
        )
        out["polls_wrk_control_healthz"] = wrk_polls(
            f"{service.base}/healthz", service.token, 10, pace_ms=250, jitter=True
        )
        out["polls_lockstep_wrk"] = wrk_polls(job_url, service.token, 10, pace_ms=250)
        out["polls_closed_loop_wrk"] = wrk_polls(job_url, service.token, 10)
    finally:
        service.stop()
    return out


def _plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# --- report ---------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Bulk import benchmark",
        "",
        f"Run {results['when']} with `{results['command']}` on {m['nproc']} cores "
        f"(`nproc`), load average {m['load_before']} before and {m['load_after']} after, "
        f"Python {m['python']}. One Celery worker process (`--concurrency=1`), gunicorn "
        "with the service's `gunicorn.conf.py` (2 workers), everything on loopback. "
        "The machine was shared with other jobs while this ran; the raw ceilings and "
        "baselines were measured in the same run, so the ratios are the fairer figures.",
        "",
        "## End to end (upload -> succeeded), CSV files",
        "",
        "| database | rows | file MB | end to end s | rows/s | target | raw ceiling rows/s "
        "| of raw | same rows into `items`, raw driver rows/s | of that "
        "| ORM add_all rows/s | x ORM | worker child peak RSS MB | worker main RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for db_name, data in results["databases"].items():
        target = TARGETS[f"{db_name}_rows_per_s"]
        for s in data["sizes"]:
            verdict = "met" if s["rows_per_s"] >= target else "**missed**"
            lines.append(
                f"| {db_name} ({data['version']}) | {s['rows']:,} | {s['file_mb']} "
                f"| {s['end_to_end_s']} | {s['rows_per_s']:,} | >= {target:,}: {verdict} "
                f"| {s['raw_rows_per_s']:,} | {s['ratio_to_raw']:.0%} "
                f"| {s['schema_ceiling_rows_per_s']:,} | {s['ratio_to_schema_ceiling']:.0%} "
                f"| {s.get('orm_add_all_rows_per_s', 'not run')} "
                f"| {s.get('ratio_to_orm', '-')} | {s['worker_child_peak_rss_mb']} "
                f"| {s['worker_main_peak_rss_mb']} |"
            )
    lines += [
        "",
        "Raw ceiling: the same rows into an empty table without indexes (the issue's "
        "ceiling). Into `items`: the same rows written by the bare driver into the real "
        "table (its unique, price and primary-key indexes, checks and foreign key), as a "
        "fresh store's rows, with no parsing, validation, checkpoint or upload: what this "
        "schema costs the database alone.",
        "",
        f"Worker RSS target: <= {TARGETS['worker_peak_rss_mb']} MB for the 1 000 000-row "
        "file, read as the pool child that runs the import (the main process only "
        "consumes messages and runs the reaper; its figure is shown beside it).",
        "",
        "## Uploading 40 MB, and polling a job",
        "",
        "| database | time to 202 s (target <= 1) | web peak RSS over idle MB (target <= 100) "
        "| polls p50 / p90 / p99 ms: 32 independent pollers, 4/s each on average "
        "(Python threads; target p99 <= 20) "
        "| the same load from wrk's delay() "
        "| control: wrk's delay() on /healthz (the client's own tail) "
        "| wrk lockstep, every 250 ms exactly (bursts of 32) "
        "| wrk closed loop, 32 connections | closed-loop req/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for db_name, data in results["databases"].items():
        up, closed = data["upload_40mb"], data["polls_closed_loop_wrk"]
        cells = [
            _polls(data.get(k))
            for k in (
                "polls_independent",
                "polls_independent_wrk",
                "polls_wrk_control_healthz",
                "polls_lockstep_wrk",
                "polls_closed_loop_wrk",
            )
        ]
        lines.append(
            f"| {db_name} | {up['time_to_202_s']} ({up['file_mb']} MB) "
            f"| {up['web_peak_rss_over_idle_mb']} | {' | '.join(cells)} "
            f"| {closed.get('requests_per_s') if closed else '-'} |"
        )
    lines += ["", "Raw figures: `imports.json` beside this file.", ""]
    return "\n".join(lines)


def _errors(polls: dict) -> str:
    bad = polls.get("errors", polls.get("non_2xx", 0))
    return f", {bad} errors" if bad else ", no errors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 000 rows only, smoke run")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [20_000] if args.quick else [100_000, 1_000_000]
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
        "databases": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
        workdir = Path(tmp)
        print("generating files", flush=True)
        files = {n: write_csv(workdir / f"items-{n}.csv", n) for n in sizes}
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
                results["databases"][name] = run_database(name, url, files, upload, sub, redis)
        finally:
            redis.stop()
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (args.out / f"imports{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"imports{suffix}.md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
