"""Load generation (wrk) and the read-while-writing check."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
import time
from typing import Any
from urllib.parse import urlsplit

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk_run(
    wrk: str,
    url: str,
    seconds: float,
    connections: int,
    headers: dict[str, str] | None = None,
    script: str | None = None,
) -> dict[str, Any]:
    """One wrk run: requests/s, latency percentiles (ms) and non-2xx/3xx count."""
    extra = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
    extra += ["-s", script] if script else []
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", *extra, url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    return parse(out, url)


def parse(out: str, url: str) -> dict[str, Any]:
    """What a wrk run printed (``--latency``), as figures."""
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+(?:us|ms|s|m))\s*$", out, re.M))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if set(pct) != {"50", "75", "90", "99"} or rps is None:
        raise RuntimeError(f"wrk printed no figures for {url}:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rps": float(rps.group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(pct["50"]),
        "p90_ms": _ms(pct["90"]),
        "p99_ms": _ms(pct["99"]),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(map(int, sockets.groups())) if sockets else 0,
    }


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30), path


def read_while_writing(
    base: str,
    page: str,
    data: dict[str, Any],
    *,
    seconds: float,
    readers: int,
    write_every: float,
) -> dict[str, Any]:
    """Readers fetch the page while one item's quantity is written every ``write_every`` s.

    A read is stale if the quantity it shows is older than the last write that had been
    acknowledged (200) before the read was sent. Quantities only ever increase.
    """
    item_id = data["item_ids"][0]
    committed = [0]
    stop = threading.Event()
    stats = {"reads": 0, "hits": 0, "stale": 0, "writes": 0, "write_errors": 0, "read_errors": 0}
    stale_examples: list[dict[str, int]] = []
    lock = threading.Lock()

    def writer() -> None:
        conn, _ = _connection(base)
        headers = {**data["auth"], "Content-Type": "application/json"}
        version, next_at = 0, time.monotonic()
        while not stop.is_set():
            version += 1
            body = json.dumps({"quantity": version})
            conn.request("PATCH", f"/v1/items/{item_id}", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                committed[0] = version
                stats["writes"] += 1
            else:
                stats["write_errors"] += 1
            next_at += write_every
            time.sleep(max(0.0, next_at - time.monotonic()))

    def reader() -> None:
        conn, _ = _connection(base)
        while not stop.is_set():
            floor = committed[0]
            conn.request("GET", page)
            response = conn.getresponse()
            raw = response.read()
            with lock:
                stats["reads"] += 1
                if response.status != 200:
                    stats["read_errors"] += 1
                    continue
                if response.getheader("X-Cache") == "HIT":
                    stats["hits"] += 1
                seen = json.loads(raw)["items"][0]["quantity"]
                if seen < floor:
                    stats["stale"] += 1
                    if len(stale_examples) < 5:
                        stale_examples.append({"seen": seen, "committed_before": floor})

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(readers)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {
        **stats,
        "seconds": round(elapsed, 1),
        "readers": readers,
        "write_every_s": write_every,
        "reads_per_s": round(stats["reads"] / elapsed, 1),
        "hit_ratio": round(stats["hits"] / max(1, stats["reads"] - stats["read_errors"]), 4),
        "stale_examples": stale_examples,
    }
