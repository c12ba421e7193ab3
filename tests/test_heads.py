"""Request heads: what Heroku's router passes reaches the app; a head over Heroku's limits
is a ``414``/``431`` problem document as far as gunicorn lets it reach the app; past
gunicorn's own limits, and for what gunicorn refuses outright, gunicorn answers first."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
import requests

from app.heads import HEADER_LINE_MAX, REQUEST_LINE_MAX
from tests.problems import assert_problem
from tests.test_caching import _api

GUNICORN_LINE_MAX = 8190  # gunicorn.conf.py: limit_request_line, gunicorn's own ceiling


def header_of_line(length: int, name: str = "X-Long") -> dict[str, str]:
    """One header whose line (``name: value``) is ``length`` bytes."""
    return {name: "x" * (length - len(name) - 2)}


def raw(base: str, head: bytes) -> tuple[int, str]:
    """Send ``head`` as it is; the answer's status and content type."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer and (piece := sock.recv(65536)):
            answer += piece
    status_line, *lines = answer.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), fields.get("Content-Type", "")


@pytest.fixture
def server(live_server) -> str:
    return live_server(workers=1, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="1000 per minute")


def test_heads_herokus_router_passes_are_served(server):
    stores = f"{server}/v1/stores"
    query = "?q=" + "x" * (GUNICORN_LINE_MAX - len("GET /v1/stores?q= HTTP/1.1"))
    r = requests.get(stores + query, timeout=10)
    assert r.status_code == 200 and r.json()["stores"] == [], r.text[:200]
    r = requests.get(stores, headers=header_of_line(HEADER_LINE_MAX), timeout=10)
    assert r.status_code == 200, r.text[:200]
    many = {f"X-Field-{i}": "1" for i in range(90)}  # requests adds a few; 100 at most
    r = requests.get(stores, headers=many, timeout=10)
    assert r.status_code == 200, r.text[:200]


def test_a_header_over_herokus_limit_is_a_431_problem_on_every_path(server):
    auth, sid, iid = _api(server)
    job = requests.post(
        f"{server}/v1/stores/{sid}/imports",
        data="name,price\nTea,1\n",
        headers={**auth, "Content-Type": "text/csv"},
        timeout=10,
    )
    cached = f"{server}/v1/items/{iid}"
    assert requests.get(cached, timeout=10).status_code == 200  # now a cache hit
    long = header_of_line(HEADER_LINE_MAX + 1)
    for url in (cached, f"{server}/v1/stores", f"{server}/v1/jobs/{job.json()['id']}"):
        r = requests.get(url, headers={**auth, **long}, timeout=10)
        body = assert_problem(r, 431, case=url)
        assert "X-Long" in body["detail"]
    huge_cookie = header_of_line(2 * HEADER_LINE_MAX, "Cookie")
    r = requests.post(
        f"{server}/v1/stores", json={"name": "No"}, headers={**auth, **huge_cookie}, timeout=10
    )
    assert_problem(r, 431)
    assert requests.get(cached, headers=auth, timeout=10).status_code == 200


def test_a_request_line_over_herokus_limit_is_a_414_problem_where_it_reaches_the_app(client):
    # gunicorn's ceiling is below Heroku's limit; other servers may pass longer lines.
    query = "?q=" + "x" * REQUEST_LINE_MAX
    assert_problem(client.get("/v1/stores" + query), 414)
    assert_problem(client.get("/v1/stores", headers=header_of_line(HEADER_LINE_MAX + 1)), 431)
    assert client.get("/v1/stores", headers=header_of_line(HEADER_LINE_MAX)).status_code == 200


def test_what_gunicorn_answers_before_the_app(server):
    """docs/decisions.md: gunicorn's own text/html answers, which the app never sees."""
    target = "/v1/stores?q=" + "x" * (GUNICORN_LINE_MAX - len("GET /v1/stores?q= HTTP/1.1") + 1)
    line = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert raw(server, line) == (414, "text/html")
    too_long = "x" * (2 * HEADER_LINE_MAX + 1)
    assert raw(server, f"GET / HTTP/1.1\r\nHost: x\r\nX-Long: {too_long}\r\n\r\n".encode()) == (
        431,
        "text/html",
    )
    fields = "".join(f"X-F{i}: 1\r\n" for i in range(101))
    assert raw(server, f"GET / HTTP/1.1\r\n{fields}\r\n".encode()) == (431, "text/html")
    assert raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n") == (400, "text/html")
    assert requests.get(f"{server}/healthz", timeout=10).status_code == 200
