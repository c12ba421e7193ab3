"""Capacity benchmark: hundreds of followers and slow uploaders held open on the web
service as shipped, while another client measures cached reads and ``/healthz``.

    python -m benchmarks.capacity            # 500 followers, 50 uploaders, 30 s window
    python -m benchmarks.capacity --quick    # smoke run: 100 followers, 10 uploaders, 10 s

Everything on 127.0.0.1, bounded in time, every process it starts stopped at the end:
its own redis-server, a temporary SQLite database (``BENCH_DATABASE_URL`` for PostgreSQL:
its tables are dropped and migrated again), gunicorn with the service's own
``gunicorn.conf.py`` (``WEB_CONCURRENCY=2``, rate limits on) and one Celery worker.
Results: ``benchmarks/results/capacity.json`` and ``capacity.md`` (see the README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

from benchmarks.capacity import load, wake
from benchmarks.capacity.http import Connection
from benchmarks.imports.run import ensure_pg_database, prepare_database, write_csv
from benchmarks.reads import loadgen
from benchmarks.reads.run import gunicorn_settings, seed
from tests.services import BIN, Process, RedisServer, service_env, start_web, wait_until

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SECRET = "benchmark-secret-key-that-is-long-enough-for-hs256"
# All load comes from one address: a default budget that the run cannot spend.
RATELIMIT_DEFAULT = "100000000 per minute"
TARGETS = {
    "cached_read_p99_ms": 100,
    "healthz_max_ms": 1000,
    "errors": 0,
    "redis_connections_per_web_process": 10,
    "job_polls_vs_bare": 0.5,
    "wake_p99_ms": 100,
}
MB = 1024 * 1024
AUTH_LUA = 'wrk.headers["Authorization"] = "Bearer {token}"\n'


# --- machine and processes --------------------------------------------------------------


def raise_open_files(needed: int) -> dict[str, int]:
    """Raise this process's soft RLIMIT_NOFILE (inherited by what it starts) if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"open file limit {soft} < {needed} needed (hard limit {hard})")
    return {"soft": soft, "hard": hard, "needed": needed}


class Sampler:
    """Every 0.5 s: each gunicorn worker's RSS and its Redis connections (Redis's
    ``CLIENT LIST`` matched to the worker's own sockets through psutil)."""

    def __init__(self, master_pid: int, redis_url: str, redis_port: int) -> None:
        self.master = psutil.Process(master_pid)
        self.client = redis.Redis.from_url(redis_url)
        self.redis_port = redis_port
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def snapshot(self) -> dict[str, Any]:
        clients = {
            int(c["addr"].rsplit(":", 1)[1]): c
            for c in self.client.client_list()
            if c.get("addr", "").startswith("127.0.0.1:")
        }
        workers = {}
        for proc in self.master.children():
            with contextlib.suppress(psutil.Error):
                ports = {
                    c.laddr.port
                    for c in proc.net_connections(kind="tcp")
                    if c.raddr and c.raddr.port == self.redis_port
                }
                mine = [clients[p] for p in ports if p in clients]
                workers[str(proc.pid)] = {
                    "rss_mb": round(proc.memory_info().rss / MB, 1),
                    "redis_connections": len(mine),
                    "redis_subscribers": sum(
                        1 for c in mine if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0
                    ),
                    "tcp_connections": len(proc.net_connections(kind="tcp")),
                }
        return {"t": time.time(), "redis_clients_total": len(clients), "workers": workers}

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(self.snapshot())
            self._stop.wait(0.5)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self, start: float, end: float) -> dict[str, Any]:
        window = [s for s in self.samples if start <= s["t"] <= end] or self.samples[-1:]
        pids = sorted({pid for s in window for pid in s["workers"]})
        per = {}
        for pid in pids:
            seen = [s["workers"][pid] for s in window if pid in s["workers"]]
            per[pid] = {
                "rss_mb_peak": max(w["rss_mb"] for w in seen),
                "rss_mb_end": seen[-1]["rss_mb"],
                "redis_connections_peak": max(w["redis_connections"] for w in seen),
                "redis_connections_end": seen[-1]["redis_connections"],
                "redis_subscribers_peak": max(w["redis_subscribers"] for w in seen),
                "tcp_connections_peak": max(w["tcp_connections"] for w in seen),
            }
        return {"samples": len(window), "workers": per}


# --- the service ----------------------------------------------------------------------


class Service:
    """redis-server, a migrated database, gunicorn as shipped and one Celery worker."""

    def __init__(self, workdir: Path, worker_nice: int) -> None:
        self.workdir = workdir
        self.processes: list[Any] = []
        self.redis = RedisServer(workdir)
        self.redis.start()
        self.processes.append(self.redis)
        url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'bench.db'}"
        if url.startswith(("postgres://", "postgresql")):
            ensure_pg_database(url.replace("+psycopg", ""))
        self.database = "postgresql" if url.startswith("postgres") else "sqlite"
        prepare_database(url)
        self.env = service_env(
            url,
            self.redis.url,
            SECRET_KEY=SECRET,
            RATELIMIT_ENABLED="true",
            RATELIMIT_DEFAULT=RATELIMIT_DEFAULT,
            LOG_LEVEL="WARNING",
            WEB_CONCURRENCY="2",
        )
        self.gunicorn = gunicorn_settings({**self.env, "PORT": "0", "BIND_HOST": "127.0.0.1"})
        self.web, self.base = start_web(self.env, workdir / "web.log", workers=2)
        self.processes.append(self.web)
        self.port = int(self.base.rsplit(":", 1)[1])
        celery = [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "--loglevel=INFO"]
        celery += ["--concurrency=1", "--without-gossip", "--without-mingle"]
        nice = ["nice", "-n", str(worker_nice)] if worker_nice else []
        self.worker = Process([*nice, *celery], self.env, workdir / "worker.log").start()
        self.processes.append(self.worker)
        wait_until(lambda: " ready." in self.worker.output(), timeout=60, what="celery worker")

    def bare(self, body_file: Path) -> str:
        """The bare Flask ``def`` view (benchmarks/reads/apps.py) under the same gunicorn."""
        port = str(free_port())
        env = {**self.env, "BENCH_BODY_FILE": str(body_file), "PORT": port}
        env["BIND_HOST"] = "127.0.0.1"
        args = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py"]
        proc = Process([*args, "benchmarks.reads.apps:bare()"], env, self.workdir / "bare.log")
        self.processes.append(proc.start())
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(base + "/page", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout=30, what="bare app")
        return base

    def stop(self) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()


def free_port() -> int:
    from tests.services import free_port as _free

    return _free()


# --- seeding --------------------------------------------------------------------------


def new_store(base: str, auth: dict[str, str], name: str) -> int:
    r = requests.post(f"{base}/v1/stores", json={"name": name}, headers=auth, timeout=10)
    r.raise_for_status()
    return r.json()["id"]


def upload(base: str, auth: dict[str, str], store_id: int, path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        r = requests.post(
            f"{base}/v1/stores/{store_id}/imports",
            data=f,
            headers={**auth, "Content-Type": "text/csv"},
            timeout=120,
        )
    assert r.status_code == 202, r.text
    return r.json()


def job(base: str, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    return requests.get(f"{base}/v1/jobs/{job_id}", headers=auth, timeout=10).json()


def worker_rate(base: str, auth: dict[str, str], job_id: str) -> float:
    """Rows/s of the worker on a running import, over about two seconds."""
    wait_until(
        lambda: job(base, auth, job_id)["progress"]["processed"] > 0,
        timeout=60, interval=0.05, what="the first long import to start",
    )  # fmt: skip
    first, t0 = job(base, auth, job_id)["progress"]["processed"], time.monotonic()
    time.sleep(2.0)
    state = job(base, auth, job_id)
    if state["status"] != "running":  # finished within the two seconds: at least this fast
        return state["progress"]["processed"] / 2.0
    return max(1.0, (state["progress"]["processed"] - first) / (time.monotonic() - t0))


def cancel_all(base: str, auth: dict[str, str], job_ids: list[str], timeout: float) -> None:
    """Cancel what has not finished and wait (bounded) until each has stopped."""
    for job_id in job_ids:
        requests.post(f"{base}/v1/jobs/{job_id}/cancel", headers=auth, timeout=10)
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: all(job(base, auth, j)["status"] in load.TERMINAL for j in job_ids),
            timeout=timeout,
            interval=0.25,
            what="cancelled jobs to stop",
        )


# --- the held window ------------------------------------------------------------------


async def hold(
    service: Service,
    token: str,
    job_ids: list[str],
    upload_store: int,
    read_path: str,
    *,
    followers: int,
    uploaders: int,
    seconds: float,
    sampler: Sampler,
) -> dict[str, Any]:
    """Followers and uploaders held open; probes measure during the last ``seconds``."""
    ramp, settle = min(5.0, 1.0 + followers / 200), 3.0
    pool = load.JobPool(job_ids)
    kinds = {"event_streams": load.Stats(), "long_polls": load.Stats(), "uploads": load.Stats()}
    stop = asyncio.Event()
    t0 = time.monotonic()
    hold_until = t0 + ramp + settle + seconds
    window_start = time.time() + ramp + settle

    async def staggered(delay: float, coro: Any) -> None:
        await asyncio.sleep(delay)
        await coro

    follower_tasks = []
    for i in range(followers):
        client = load.streamer if i % 2 == 0 else load.long_poller
        stats = kinds["event_streams" if i % 2 == 0 else "long_polls"]
        coro = client(i // 2, service.port, token, pool, stats, stop)
        follower_tasks.append(asyncio.create_task(staggered(ramp * i / followers, coro)))
    upload_tasks = [
        asyncio.create_task(
            staggered(
                ramp * i / max(1, uploaders),
                load.uploader(i, service.port, token, upload_store, kinds["uploads"], hold_until),
            )
        )
        for i in range(uploaders)
    ]
    queue: Any = multiprocessing.get_context("spawn").Queue()
    targets = [
        ("cached_read", read_path, 4, 0.05),  # 80 reads/s over 4 connections
        ("healthz", "/healthz", 2, 0.1),  # 20/s over 2 connections
    ]
    probe = multiprocessing.get_context("spawn").Process(
        target=load.probe_main, args=(service.port, targets, window_start, seconds, queue)
    )
    probe.start()
    live: list[int] = []
    try:
        while time.monotonic() < hold_until:
            await asyncio.sleep(0.5)
            if time.time() >= window_start:
                for stats in kinds.values():
                    stats.open_samples.append(stats.open_now)
                live.append(len([j for j in job_ids if j not in pool.finished]))
        stop.set()
        window_end = time.time()
        # Uploads were sized to end inside the window: their answers may take a moment.
        if upload_tasks:
            await asyncio.wait(upload_tasks, timeout=35)
        unanswered = sum(1 for t in upload_tasks if not t.done())
        for task in follower_tasks + upload_tasks:
            task.cancel()
        await asyncio.gather(*follower_tasks, *upload_tasks, return_exceptions=True)
        probes = await asyncio.to_thread(queue.get, True, seconds + 60)
    finally:
        probe.join(timeout=5)
        if probe.is_alive():
            probe.kill()
    uploads = kinds["uploads"]
    uploads.counts["unanswered_after_window"] = unanswered
    uploads.transport_errors += unanswered
    return {
        "window_seconds": seconds,
        "ramp_seconds": ramp,
        "settle_seconds": settle,
        "followers": followers,
        "uploaders": uploaders,
        "clients": {k: v.summary() for k, v in kinds.items()},
        "probes": {name: probe_summary(p) for name, p in probes.items()},
        "live_jobs_during_window": {"min": min(live or [0]), "max": max(live or [0])},
        "jobs_finished_during_hold": len(pool.finished),
        "processes": sampler.summary(window_start, window_end),
    }


def probe_summary(p: dict[str, Any]) -> dict[str, Any]:
    statuses = p["statuses"]
    bad = sum(n for code, n in statuses.items() if int(code) >= 400)
    return {
        "path": p["path"],
        "pacing": f"{p['connections']} connections, one request each every {p['every_s']} s",
        "latency_ms": wake.summarize(p["latency_ms"]),
        "service_ms": wake.summarize(p["service_ms"]),
        "statuses": statuses,
        "x_cache": p["x_cache"],
        "errors": bad + p["transport_errors"],
        "error_samples": p["error_samples"],
    }


# --- wake latency ---------------------------------------------------------------------


async def wake_phase(
    service: Service, auth: dict[str, str], token: str, stores: dict[str, int], csv: Path,
    small: Path, jobs_n: int,
) -> dict[str, Any]:  # fmt: skip
    """Long polls held on queued and running jobs while their state changes: claims and
    finishes committed by the worker, cancels committed by the web process."""
    base = service.base
    # Two long imports keep the worker busy while the small jobs wait, queued, for cancels.
    blockers = [await asyncio.to_thread(upload, base, auth, stores["blocker"], csv) for _ in "ab"]
    smalls = []
    for _ in range(jobs_n):
        smalls.append(await asyncio.to_thread(upload, base, auth, stores["wake"], small))
    ids = [b["id"] for b in blockers] + [j["id"] for j in smalls]
    until = time.monotonic() + 90
    followers = [asyncio.create_task(wake.follow(service.port, token, i, until)) for i in ids]
    await asyncio.sleep(1.5)  # every follower holding its long poll
    conn = Connection(load.HOST, service.port)
    cancels = []
    for j in smalls[: jobs_n // 2]:
        r = await conn.request("POST", f"/v1/jobs/{j['id']}/cancel", auth, timeout=30)
        body = json.loads(r.body) if r.body else {}
        cancels.append(
            {"job_id": j["id"], "status": r.status, "job_status": body.get("status"),
             "finished_at": body.get("finished_at"), "sent": r.sent_at, "acked": r.done_at}
        )  # fmt: skip
        await asyncio.sleep(0.1)
    # The blockers stop at their next chunk (or at once if queued): the rest then runs.
    for b in blockers:
        await conn.request("POST", f"/v1/jobs/{b['id']}/cancel", auth, timeout=30)
    conn.close()
    followed = await asyncio.gather(*followers)
    by_id = {c["job_id"]: c for c in cancels if c["job_status"] == "cancelled"}
    bounds = []
    for f in followed:
        if (c := by_id.get(f["job_id"])) is not None:
            f["cancelled_by_us"] = c["finished_at"]
            woke = [a for a in f["answers"] if a.get("after", {}).get("status") == "cancelled"]
            if woke and woke[0]["known_at"] < c["sent"]:
                bounds.append((woke[0]["arrived"] - c["sent"]) * 1000)
    result = wake.samples(followed)
    result["cancels"] = {
        "sent": len(cancels),
        "of_queued_jobs": len(by_id),
        "arrival_minus_cancel_sent_ms": wake.summarize(bounds),
    }
    result["jobs_followed"] = len(ids)
    result["jobs_not_finished"] = sum(1 for f in followed if f["final"] not in load.TERMINAL)
    result["preference_applied"] = sum(
        1 for f in followed for a in f["answers"] if a.get("applied")
    )
    result["answers"] = sum(len(f["answers"]) for f in followed)
    return result


# --- job polls against the bare view ---------------------------------------------------


def wrk(url: str, seconds: int, script: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    out = done.stdout
    if done.returncode or "Requests/sec:" not in out:  # a failed run is a figure, not a crash
        print(f"  wrk failed ({done.returncode}): {done.stderr.strip()} {out[-500:]}", flush=True)
        return {"rps": 0.0, "p50_ms": None, "p99_ms": None, "non_2xx_3xx": 0,
                "socket_errors": 1, "failed": (done.stderr or out)[-500:]}  # fmt: skip
    figures = loadgen.parse(out, url)
    return {
        "rps": figures["rps"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "non_2xx_3xx": figures["errors"],
        "socket_errors": figures["socket_errors"],
    }


def job_polls(
    service: Service, token: str, job_id: str, workdir: Path, rounds: int, seconds: int
) -> dict[str, Any]:
    """``GET /v1/jobs/<id>`` (finished job, Bearer token, rate limits on) against a bare
    Flask view returning the same bytes, interleaved rounds of ``wrk -t2 -c32``."""
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{service.base}/v1/jobs/{job_id}"
    body = requests.get(url, headers=auth, timeout=10).content
    (workdir / "job.json").write_bytes(body)
    bare = service.bare(workdir / "job.json")
    assert requests.get(bare + "/page", timeout=10).content == body
    script = workdir / "auth.lua"
    script.write_text(AUTH_LUA.format(token=token))
    runs: dict[str, list[dict[str, Any]]] = {"job_polls": [], "bare": []}
    for target in (url, bare + "/page"):
        wrk(target, 1, script)  # warm-up: connections, caches
    for r in range(rounds):
        order = [("job_polls", url), ("bare", bare + "/page")]
        for name, target in order if r % 2 == 0 else order[::-1]:
            runs[name].append(wrk(target, seconds, script))
            if "failed" in runs[name][-1]:
                log = workdir / ("web.log" if name == "job_polls" else "bare.log")
                print(log.read_text(errors="replace")[-1500:], flush=True)
            print(f"  round {r + 1} {name:>9}: {runs[name][-1]['rps']:8.0f} req/s", flush=True)
    pairs = zip(runs["job_polls"], runs["bare"], strict=True)
    ratios = [a["rps"] / b["rps"] if b["rps"] else 0.0 for a, b in pairs]
    return {
        "body_bytes": len(body),
        "rounds": rounds,
        "seconds_per_run": seconds,
        "runs": runs,
        "ratios": [round(x, 3) for x in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_spread": [round(min(ratios), 3), round(max(ratios), 3)],
        "job_polls_rps_median": round(statistics.median(x["rps"] for x in runs["job_polls"])),
        "bare_rps_median": round(statistics.median(x["rps"] for x in runs["bare"])),
        "errors": sum(x["non_2xx_3xx"] + x["socket_errors"] for x in runs["job_polls"]),
    }


# --- the run --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run (writes capacity-quick.*)")
    parser.add_argument("--followers", type=int, help="event streams + long polls (500)")
    parser.add_argument("--uploaders", type=int, help="uploads at 1 KB/s (50)")
    parser.add_argument("--seconds", type=float, help="measured window (30)")
    parser.add_argument("--rounds", type=int, help="job-poll rounds against the bare view (5)")
    parser.add_argument("--round-seconds", type=int, help="seconds per wrk run (6)")
    parser.add_argument("--wake-jobs", type=int, help="jobs followed for wake latency (40)")
    parser.add_argument("--import-rows", type=int, default=200_000, help="rows per long import")
    parser.add_argument("--long-jobs", type=int, help="long imports (default: enough to last)")
    parser.add_argument(
        "--worker-nice", type=int, default=10,
        help="nice value of the Celery worker (it runs on another dyno in production)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quick = args.quick
    followers = args.followers or (100 if quick else 500)
    uploaders = args.uploaders if args.uploaders is not None else (10 if quick else 50)
    seconds = args.seconds or (10.0 if quick else 30.0)
    rounds = args.rounds or (2 if quick else 5)
    round_seconds = args.round_seconds or (3 if quick else 6)
    wake_jobs = args.wake_jobs or (16 if quick else 40)
    long_jobs = args.long_jobs or 0  # 0: as many as the worker's measured rate needs
    started = time.monotonic()
    limits = raise_open_files(2 * (followers + uploaders) + 1024)
    load_before = [round(x, 2) for x in os.getloadavg()]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(f"capacity: {followers} followers, {uploaders} uploaders, {seconds:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        workdir = Path(tmp)
        service = None
        try:
            service = Service(workdir, args.worker_nice)
            results = _run(
                service, workdir, followers=followers, uploaders=uploaders, seconds=seconds,
                rounds=rounds, round_seconds=round_seconds, wake_jobs=wake_jobs,
                import_rows=args.import_rows, long_jobs=long_jobs,
            )  # fmt: skip
            long_jobs = results["long_jobs"]
        finally:
            if service is not None:
                service.stop()
    results["verdicts"] = verdicts(results)
    results["machine"] = {
        "nproc": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "open_files": limits,
    }
    results["settings"] = {
        "command": "python -m benchmarks.capacity " + " ".join(argv or sys.argv[1:]),
        "commit": commit,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "ratelimit_default": RATELIMIT_DEFAULT,
        "worker": f"celery --concurrency=1, nice {args.worker_nice}",
        "long_imports": f"{long_jobs} x {args.import_rows} rows",
        "total_seconds": round(time.monotonic() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if quick else ""
    (args.out / f"capacity{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"capacity{suffix}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def _run(service: Service, workdir: Path, *, followers: int, uploaders: int, seconds: float,
         rounds: int, round_seconds: int, wake_jobs: int, import_rows: int,
         long_jobs: int) -> dict[str, Any]:  # fmt: skip
    base = service.base
    print(f"web {base}: gunicorn {service.gunicorn}; seeding", flush=True)
    data = seed(base)
    auth, token = data["auth"], data["auth"]["Authorization"].split()[1]
    read_path = f"/v1/stores/{data['store_id']}/items"
    checks = [requests.get(base + read_path, timeout=10).headers.get("X-Cache") for _ in range(3)]
    stores = {
        name: new_store(base, auth, f"Bench {name}") for name in ("uploads", "blocker", "wake")
    }
    csv = write_csv(workdir / "long.csv", import_rows)
    small = write_csv(workdir / "small.csv", 500)
    long_ids = [upload(base, auth, new_store(base, auth, "Bench long 0"), csv)["id"]]
    if not long_jobs:
        # Enough long imports, one after another on the worker, to outlast the hold at
        # the worker's rate measured now (it only slows down under the held load).
        rate = worker_rate(base, auth, long_ids[0])
        hold_s = min(5.0, 1.0 + followers / 200) + 3.0 + seconds + 15.0
        long_jobs = min(40, max(2, int(rate * hold_s / import_rows) + 1))
        print(f"worker: {rate:.0f} rows/s idle -> {long_jobs} long imports", flush=True)
    for i in range(1, long_jobs):
        long_ids.append(upload(base, auth, new_store(base, auth, f"Bench long {i}"), csv)["id"])
    print(f"{long_jobs} long imports of {import_rows} rows submitted", flush=True)
    sampler = Sampler(service.web.proc.pid, service.redis.url, service.redis.port)
    idle = sampler.snapshot()
    with sampler:
        print(f"hold: {followers} followers, {uploaders} uploaders, {seconds:.0f} s", flush=True)
        held = asyncio.run(
            hold(service, token, long_ids, stores["uploads"], read_path, followers=followers,
                 uploaders=uploaders, seconds=seconds, sampler=sampler)
        )  # fmt: skip
        end = sampler.snapshot()
    held["long_jobs_at_end"] = dict(
        sorted(
            {s: sum(1 for j in long_ids if job(base, auth, j)["status"] == s) for s in
             ("queued", "running", "succeeded", "failed", "cancelled")}.items()
        )
    )  # fmt: skip
    held["idle"] = idle
    held["after"] = end
    print("wake latency: stopping the long imports", flush=True)
    cancel_all(base, auth, long_ids, timeout=60)
    woke = asyncio.run(wake_phase(service, auth, token, stores, csv, small, wake_jobs))
    print(f"wake: {woke['wake_ms']}", flush=True)
    finished = [
        j["id"]
        for j in requests.get(f"{base}/v1/jobs?status=succeeded", headers=auth, timeout=10).json()[
            "jobs"
        ]
    ]
    polls = job_polls(service, token, finished[0], workdir, rounds, round_seconds)
    return {
        "long_jobs": long_jobs,
        "database": service.database,
        "gunicorn": service.gunicorn,
        "x_cache_before": checks,
        "held": held,
        "wake": woke,
        "job_polls": polls,
    }


def verdicts(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    held, probes = r["held"], r["held"]["probes"]
    workers = held["processes"]["workers"].values()
    errors = {k: v["errors"] for k, v in held["clients"].items()}
    errors |= {f"probe_{k}": v["errors"] for k, v in probes.items()}
    errors["wake_pollers"] = r["wake"]["errors"]
    errors["job_polls_wrk"] = r["job_polls"]["errors"]
    figures = {
        "cached_read_p99_ms": probes["cached_read"]["latency_ms"].get("p99"),
        "healthz_max_ms": probes["healthz"]["latency_ms"].get("max"),
        "errors": sum(errors.values()),
        "redis_connections_per_web_process": max(
            (w["redis_connections_peak"] for w in workers), default=None
        ),
        "job_polls_vs_bare": r["job_polls"]["ratio_median"],
        "wake_p99_ms": r["wake"]["wake_ms"].get("p99"),
    }
    out = {}
    for name, target in TARGETS.items():
        value = figures[name]
        higher = name == "job_polls_vs_bare"
        met = value is not None and (value >= target if higher else value <= target)
        out[name] = {"value": value, "target": f"{'>=' if higher else '<='} {target}", "met": met}
    out["errors"]["by_client"] = errors
    return out


def markdown(r: dict[str, Any]) -> str:
    m, s, held, v = r["machine"], r["settings"], r["held"], r["verdicts"]
    lines = [
        "# Capacity benchmark",
        "",
        f"`{s['command'].strip()}` at commit `{s['commit']}`, {s['when']}, on {m['nproc']} "
        f"cores (load average {m['load_average_before']} before, {m['load_average_after']} "
        f"after), Python {m['python']}, {r['database']}. gunicorn as `gunicorn.conf.py` "
        f"says at run time: `{r['gunicorn']}`; rate limits on (`{s['ratelimit_default']}`); "
        f"{s['worker']}; long imports {s['long_imports']}. The machine is shared: the load "
        "generator, redis-server, the worker and other developers' jobs run on the same "
        "cores.",
        "",
        "## Verdicts",
        "",
        "| target | figure | met |",
        "|---|---|---|",
    ]
    names = {
        "cached_read_p99_ms": "cached read p99 (ms) during the held window",
        "healthz_max_ms": "`/healthz` max (ms) during the held window",
        "errors": "errors (non-2xx/3xx and connection errors, every client)",
        "redis_connections_per_web_process": "Redis connections per web process (peak)",
        "job_polls_vs_bare": "job polls / bare view req/s (median of rounds)",
        "wake_p99_ms": "long-poll wake p99 (ms) after the commit",
    }
    for key, label in names.items():
        verdict = v[key]
        lines.append(
            f"| {label} {verdict['target']} | {verdict['value']} "
            f"| {'yes' if verdict['met'] else '**no**'} |"
        )
    lines += ["", f"Errors by client: `{v['errors']['by_client']}`.", ""]
    lines += [
        f"## Held window: {held['followers']} followers, {held['uploaders']} uploaders, "
        f"{held['window_seconds']:.0f} s measured",
        "",
        f"Ramp {held['ramp_seconds']} s, settle {held['settle_seconds']} s, then the "
        f"window. Long imports still live during the window: {held['live_jobs_during_window']}"
        f"; at the end: {held['long_jobs_at_end']}.",
        "",
        "| probe | pacing | latency p50 / p90 / p99 / max ms (from schedule) "
        "| service time p50 / p99 / max ms | requests | statuses | X-Cache | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in held["probes"].items():
        lat, svc = p["latency_ms"], p["service_ms"]
        lines.append(
            f"| {name} `{p['path']}` | {p['pacing']} | {lat.get('p50')} / {lat.get('p90')} / "
            f"{lat.get('p99')} / {lat.get('max')} | {svc.get('p50')} / {svc.get('p99')} / "
            f"{svc.get('max')} | {lat['n']} | {p['statuses']} | {p['x_cache']} "
            f"| {p['errors']} |"
        )
    lines += [
        "",
        "| clients | open at once during the window (min / median / max) | statuses "
        "| connection errors | other counts | first errors |",
        "|---|---|---|---|---|---|",
    ]
    skip = {"statuses", "non_2xx_3xx", "transport_errors", "errors", "error_samples"}
    skip |= {"open_min", "open_median", "open_max"}
    for name, c in held["clients"].items():
        other = {k: x for k, x in c.items() if k not in skip and x is not None}
        lines.append(
            f"| {name} | {c['open_min']} / {c['open_median']} / {c['open_max']} "
            f"| {c['statuses']} | {c['transport_errors']} | {other} "
            f"| {'; '.join(c['error_samples'][:3])} |"
        )
    lines += [
        "",
        "| web worker pid | RSS MB peak / end | Redis connections peak / end "
        "| of which subscribers (peak) | TCP connections (peak) |",
        "|---|---|---|---|---|",
    ]
    for pid, w in held["processes"]["workers"].items():
        idle = held["idle"]["workers"].get(pid, {})
        lines.append(
            f"| {pid} | {w['rss_mb_peak']} / {w['rss_mb_end']} (idle {idle.get('rss_mb')}) "
            f"| {w['redis_connections_peak']} / {w['redis_connections_end']} "
            f"| {w['redis_subscribers_peak']} | {w['tcp_connections_peak']} |"
        )
    wk = r["wake"]
    lines += [
        "",
        "## Long-poll wake latency (outside the window)",
        "",
        f"{wk['jobs_followed']} jobs long-polled (`Prefer: wait=25` + `If-None-Match`) "
        f"while they were claimed, run, finished or cancelled; {wk['answers']} answers, "
        f"{wk['preference_applied']} with `Preference-Applied`, {wk['held_across_the_commit']} "
        f"wakes held by the server across the commit, {wk['unchanged_200_answers']} "
        f"unchanged `200`s, {wk['unmatched_answers']} answers not matched to a stamped "
        f"commit, {wk['errors']} errors, {wk['jobs_not_finished']} jobs not finished in time.",
        "",
        "| commit | n | p50 | p90 | p99 | max (ms, arrival minus the commit's stamp) |",
        "|---|---|---|---|---|---|",
        _wake_row("all", wk["wake_ms"]),
        *(_wake_row(k, x) for k, x in wk["by_commit"].items()),
        _wake_row(
            "cancel, from the cancel request's sending",
            wk["cancels"]["arrival_minus_cancel_sent_ms"],
        ),
        "",
        "## Job polls against the bare view (outside the window)",
        "",
    ]
    jp = r["job_polls"]
    lines += [
        f"`wrk -t2 -c32 --latency` with a Lua script setting `Authorization`, "
        f"{jp['rounds']} interleaved rounds of {jp['seconds_per_run']} s; a finished job, "
        f"{jp['body_bytes']} bytes, against a bare Flask `def` view returning the same bytes "
        "(`benchmarks/reads/apps.py:baseline`) under the same `gunicorn.conf.py`.",
        "",
        f"Ratio per round {jp['ratios']}: median {jp['ratio_median']} (spread "
        f"{jp['ratio_spread'][0]}-{jp['ratio_spread'][1]}); job polls median "
        f"{jp['job_polls_rps_median']} req/s, bare {jp['bare_rps_median']} req/s; "
        f"{jp['errors']} errors.",
        "",
        "| round | job polls req/s | p50 / p99 ms | bare req/s | p50 / p99 ms |",
        "|---|---|---|---|---|",
    ]
    for i, (a, b) in enumerate(zip(jp["runs"]["job_polls"], jp["runs"]["bare"], strict=True)):
        lines.append(
            f"| {i + 1} | {a['rps']:.0f} | {a['p50_ms']} / {a['p99_ms']} | {b['rps']:.0f} "
            f"| {b['p50_ms']} / {b['p99_ms']} |"
        )
    lines += ["", "Raw figures: `capacity.json` beside this file.", ""]
    return "\n".join(lines)


def _wake_row(name: str, x: dict[str, Any]) -> str:
    cells = [x["n"], *(x.get(k) for k in ("p50", "p90", "p99", "max"))]
    return f"| {name} | {' | '.join(str(c) for c in cells)} |"
