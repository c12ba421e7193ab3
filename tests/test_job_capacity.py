"""Long-lived requests against real gunicorn (the shipped gevent worker class): many
followers and slow uploads hold no thread, a stalled body is cut off with 408, async views
under concurrency, Redis connections bounded, and a stopping worker answers its waiters.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import threading
import time
from urllib.parse import urlsplit

import psutil
import redis
import requests

OPEN = {"RATELIMIT_DEFAULT": "100000 per minute", "PYTHON_MAX_THREADS": "2"}


def queued_job(base: str, account, store_id: int) -> str:
    """A job no worker will take (none runs here): it stays queued, so followers wait."""
    response = requests.post(
        f"{base}/v1/stores/{store_id}/imports",
        data="name,price\nTea,1\n",
        headers={**account.headers, "Content-Type": "text/csv"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def raw_request(base: str, head: str, body: bytes = b"") -> socket.socket:
    """Send a request's head (and the start of a body) and keep the connection open."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return sock


def head(method: str, path: str, account, **headers: str) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", f"Authorization: Bearer {account}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return "\n".join(lines) + "\n"


def partial_upload(base: str, account, store_id: int) -> socket.socket:
    """An import whose body announces 5000 bytes and sends its first 17 only."""
    announced = head(
        "POST",
        f"/v1/stores/{store_id}/imports",
        account.access_token,
        Content_Type="text/csv",
        Content_Length="5000",
    )
    return raw_request(base, announced, b"name,price\nTea,1\n")


def read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and (b"Connection: close" not in data or not chunk):
                header, _, rest = data.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in header.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
    except TimeoutError:
        pass
    return data


def parse(answer: bytes) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of a raw HTTP/1.1 answer with a JSON body."""
    head_, _, body = answer.partition(b"\r\n\r\n")
    lines = head_.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def timed_get(url: str, **kwargs) -> tuple[float, int]:
    started = time.monotonic()
    status = requests.get(url, timeout=10, **kwargs).status_code
    return time.monotonic() - started, status


def redis_connections_of(pid: int, redis_url: str) -> int:
    """Connections the process holds to our Redis, as Redis itself lists its clients."""
    ours = {
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == urlsplit(redis_url).port
    }
    listed = {c["addr"] for c in redis.Redis.from_url(redis_url).client_list()}
    return len(ours & listed)


def test_many_followers_and_slow_uploads_leave_every_endpoint_answering(
    live_server, alice, store, redis_server
):
    base = live_server(workers=1, **OPEN)
    job_id = queued_job(base, alice, store["id"])
    token = alice.access_token
    held: list[socket.socket] = []
    for _ in range(40):  # event streams
        held.append(raw_request(base, head("GET", f"/v1/jobs/{job_id}/events", token)))
    for _ in range(40):  # long polls, each holding 20 s
        held.append(raw_request(base, head("GET", f"/v1/jobs/{job_id}?wait=20", token)))
    uploads = [
        raw_request(
            base,
            head(
                "POST",
                f"/v1/stores/{store['id']}/imports",
                token,
                Content_Type="text/csv",
                Content_Length="100000",
            ),
            b"name,price\n",
        )
        for _ in range(20)
    ]
    stop = threading.Event()

    def trickle() -> None:  # 20 uploads still arriving, slowly (never cut off)
        while not stop.wait(0.5):
            for sock in uploads:
                sock.sendall(b"a,1\n")

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        time.sleep(1.0)  # all held by now: 100 requests on a process with 2 threads
        items = f"{base}/v1/stores/{store['id']}/items"
        requests.get(items, timeout=10)  # primes the cache
        latencies = []
        for _ in range(20):
            for url in (f"{base}/healthz", items):
                elapsed, status = timed_get(url)
                assert status == 200, url
                latencies.append(elapsed)
        assert max(latencies) < 1.0, sorted(latencies)[-5:]
        assert sorted(latencies)[int(len(latencies) * 0.9)] < 0.2, sorted(latencies)[-5:]
        # every event stream is open and has its first bytes
        for sock in held[:40]:
            sock.settimeout(5)
            assert b"200 OK" in sock.recv(4096)
        worker = psutil.Process(live_server.started[-1].proc.pid).children()[0]
        connections = redis_connections_of(worker.pid, redis_server.url)
        assert connections <= 10, connections
    finally:
        stop.set()
        sender.join()
        for sock in held + uploads:
            sock.close()


def test_a_body_that_stops_arriving_is_cut_off_with_408(live_server, alice, store):
    base = live_server(workers=1, BODY_TIMEOUT="1", **OPEN)
    started = time.monotonic()
    sock = partial_upload(base, alice, store["id"])
    status, headers, body = parse(read_response(sock, timeout=10))
    elapsed = time.monotonic() - started
    assert status == 408 and headers["content-type"] == "application/problem+json"
    assert body["status"] == 408 and "stopped arriving" in body["detail"] and body["request_id"]
    assert 0.9 < elapsed < 5, elapsed
    sock.settimeout(5)
    assert sock.recv(100) == b""  # and the server closed the connection
    sock.close()
    # Nothing was recorded for the cut-off upload.
    listed = requests.get(f"{base}/v1/jobs", headers=alice.headers, timeout=10).json()
    assert listed["jobs"] == []
    # A JSON body cut short the same way, on an endpoint without a token.
    sock = raw_request(
        base,
        "POST /v1/auth/register HTTP/1.1\nHost: x\nContent-Type: application/json\n"
        "Content-Length: 100\n",
        b'{"username": "slo',
    )
    status, headers, body = parse(read_response(sock, timeout=10))
    sock.close()
    assert (status, body["status"]) == (408, 408)


def test_async_views_under_concurrent_load_on_gevent(live_server, client, alice, store):
    for n in range(30):
        client.post(
            f"/v1/stores/{store['id']}/items",
            json={"name": f"item {n}", "price": n},
            headers=alice.headers,
        )
    base = live_server(workers=1, CACHE_TTL="0", **OPEN)  # every read runs the async view

    def read(n: int) -> int:
        query = f"limit={1 + n % 40}&q={n % 7}&sort={'price' if n % 2 else '-id'}"
        return requests.get(f"{base}/v1/stores/{store['id']}/items?{query}", timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(read, range(400)))
    assert statuses == [200] * 400
    assert "RuntimeError" not in live_server.started[-1].output()


def test_a_stopping_worker_answers_its_long_polls_at_once(live_server, alice, store):
    base = live_server(workers=1, **OPEN)
    job_id = queued_job(base, alice, store["id"])
    answers: list[tuple[float, int]] = []

    def hold() -> None:
        started = time.monotonic()
        response = requests.get(f"{base}/v1/jobs/{job_id}?wait=20", headers=alice.headers)
        answers.append((time.monotonic() - started, response.status_code))

    poller = threading.Thread(target=hold)
    poller.start()
    time.sleep(1.0)
    live_server.started[-1].signal(signal.SIGTERM)
    poller.join(timeout=15)
    assert answers and answers[0][1] == 200, answers
    assert answers[0][0] < 5, answers


def test_an_upload_cut_short_by_the_client_records_nothing(live_server, alice, store):
    base = live_server(workers=1, **OPEN)
    sock = partial_upload(base, alice, store["id"])
    time.sleep(0.3)
    sock.close()  # gone before the body's end: the file is not the one announced
    time.sleep(0.5)
    listed = requests.get(f"{base}/v1/jobs", headers=alice.headers, timeout=10).json()
    assert listed["jobs"] == []
