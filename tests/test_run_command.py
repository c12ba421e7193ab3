"""The README's run command starts the whole service; the Procfile's lines are sound."""

from __future__ import annotations

import os
import runpy
import shlex
import signal
import subprocess

import pytest
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
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["bind"] == ["[::]:6543"]
    assert conf["workers"] == 3 and conf["worker_class"] == "gthread"
    # inside Heroku's 30 s router timeout and the 30 s between SIGTERM and SIGKILL
    assert conf["timeout"] < 30 and conf["graceful_timeout"] < 30


@pytest.fixture
def run_command(tmp_path, redis_server):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "PORT": str(port),
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "WEB_CONCURRENCY": "1",
        "CELERY_CONCURRENCY": "1",
        # the venv is already installed; never reach for the network from a test
        "PIP_NO_INDEX": "1",
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
    yield proc, f"http://127.0.0.1:{port}", log
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_run_command_serves_the_api(run_command):
    proc, base, log = run_command

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"scripts/run exited:\n{log.read_text()[-3000:]}")
        try:
            return requests.get(base + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, timeout=120, interval=0.5, what="scripts/run to be ready")
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
