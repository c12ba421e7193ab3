"""The held load (followers and slow uploaders) and the probes that measure beside it.

Followers and uploaders share one asyncio loop in the benchmark's process. The probes
(cached reads, ``/healthz``) run in a process of their own so that the followers' loop
never delays a probe's clock: a probe's latency is the server's, not our client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from benchmarks.capacity.http import Connection, HTTPError

TERMINAL = ("succeeded", "failed", "cancelled")
HOST = "127.0.0.1"
CSV_HEADER = b"name,price,quantity,sku,description\n"


@dataclass
class Stats:
    """What one kind of client saw: statuses, transport errors, a few samples of each."""

    statuses: Counter = field(default_factory=Counter)
    transport_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    open_now: int = 0
    open_samples: list[int] = field(default_factory=list)
    hold_seconds: list[float] = field(default_factory=list)  # long polls answered 304

    def status(self, code: int) -> None:
        self.statuses[code] += 1
        if code >= 400 and len(self.error_samples) < 10:
            self.error_samples.append(f"HTTP {code}")

    def transport(self, exc: BaseException) -> None:
        self.transport_errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{type(exc).__name__}: {exc}")

    @property
    def bad_statuses(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 400)

    def summary(self) -> dict[str, Any]:
        opens = self.open_samples or [0]
        holds = sorted(self.hold_seconds)
        return {
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_2xx_3xx": self.bad_statuses,
            "transport_errors": self.transport_errors,
            "errors": self.bad_statuses + self.transport_errors,
            "error_samples": self.error_samples,
            **dict(self.counts),
            "open_min": min(opens),
            "open_median": sorted(opens)[len(opens) // 2],
            "open_max": max(opens),
            "held_304_seconds_median": round(holds[len(holds) // 2], 2) if holds else None,
        }


class JobPool:
    """The live jobs followers spread over; a follower whose job ends moves to another."""

    def __init__(self, job_ids: list[str]) -> None:
        self.ids = list(job_ids)
        self.finished: dict[str, float] = {}

    def pick(self, index: int) -> str | None:
        live = [j for j in self.ids if j not in self.finished]
        return live[index % len(live)] if live else None

    def finish(self, job_id: str) -> None:
        self.finished.setdefault(job_id, time.time())


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _retry_after(headers: dict[str, str]) -> float:
    try:
        return min(5.0, max(0.5, float(headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


async def long_poller(
    index: int, port: int, token: str, pool: JobPool, stats: Stats, stop: asyncio.Event
) -> None:
    """``GET /v1/jobs/<id>`` with ``Prefer: wait=25`` and the last ETag, in a loop. A
    server that does not hold the request (no ``Preference-Applied``) is polled as its
    ``Retry-After`` asks instead, so the load stays what real clients would send."""
    conn = Connection(HOST, port)
    job = etag = last_body = None
    try:
        while not stop.is_set():
            if job is None or job in pool.finished:
                job, etag, last_body = pool.pick(index), None, None
                if job is None:
                    await _pause(stop, 1.0)
                    continue
            headers = {"Authorization": f"Bearer {token}", "Prefer": "wait=25"}
            if etag:
                headers["If-None-Match"] = etag
            stats.open_now += 1
            try:
                r = await conn.request("GET", f"/v1/jobs/{job}", headers, timeout=35)
            except HTTPError as exc:
                stats.transport(exc)
                await _pause(stop, 1.0)
                continue
            finally:
                stats.open_now -= 1
            stats.status(r.status)
            applied = "preference-applied" in r.headers
            stats.counts["answers_with_preference_applied" if applied else "answers_without"] += 1
            changed = False
            if r.status == 200:
                changed = r.body != last_body
                last_body, etag = r.body, r.headers.get("etag")
                if json.loads(r.body).get("status") in TERMINAL:
                    pool.finish(job)
            elif r.status == 304:
                stats.hold_seconds.append(r.done_at - r.sent_at)
            else:
                await _pause(stop, 1.0)
                continue
            if not applied and not changed:
                await _pause(stop, _retry_after(r.headers))
    finally:
        conn.close()


def parse_events(buffer: bytes) -> tuple[list[dict[str, str]], bytes]:
    """Complete Server-Sent Events in ``buffer`` and what is left of it."""
    events = []
    buffer = buffer.replace(b"\r\n", b"\n")
    while b"\n\n" in buffer:
        block, buffer = buffer.split(b"\n\n", 1)
        event: dict[str, str] = {}
        for line in block.decode("utf-8", "replace").split("\n"):
            if not line or line.startswith(":"):
                event.setdefault("comment", line)
                continue
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
        events.append(event)
    return events, buffer


async def streamer(
    index: int, port: int, token: str, pool: JobPool, stats: Stats, stop: asyncio.Event
) -> None:
    """``GET /v1/jobs/<id>/events``, reconnecting (after the stream's ``retry:``, with
    ``Last-Event-ID``) whenever a stream ends, until its job is done; then another job."""
    conn = Connection(HOST, port)
    job = last_id = None
    retry = 1.0
    try:
        while not stop.is_set():
            if job is None or job in pool.finished:
                job, last_id = pool.pick(index), None
                if job is None:
                    await _pause(stop, 1.0)
                    continue
            headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            opened = False
            try:
                await asyncio.wait_for(conn.send("GET", f"/v1/jobs/{job}/events", headers), 30)
                status, head = await asyncio.wait_for(conn.read_head(), 30)
                stats.status(status)
                if status != 200:
                    conn.close()
                    await _pause(stop, 1.0)
                    continue
                stats.counts["streams"] += 1
                stats.open_now += 1
                opened = True
                chunks = conn.body_chunks(status, head)
                buffer = b""
                while True:
                    try:  # the server sends a keep-alive comment at least every 10-15 s
                        chunk = await asyncio.wait_for(anext(chunks), 40)
                    except StopAsyncIteration:
                        break
                    events, buffer = parse_events(buffer + chunk)
                    for event in events:
                        if "retry" in event:
                            with contextlib.suppress(ValueError):
                                retry = int(event["retry"]) / 1000
                        last_id = event.get("id", last_id)
                        if name := event.get("event"):
                            stats.counts[f"events_{name}"] += 1
                            if name == "done":
                                pool.finish(job)
            except TimeoutError:
                stage = "between events" if opened else "before the response headers"
                stats.transport(TimeoutError(f"no byte for 30-40 s {stage}"))
                conn.close()
            except (HTTPError, OSError) as exc:
                stats.transport(exc)
                conn.close()
            finally:
                if opened:
                    stats.open_now -= 1
            await _pause(stop, retry)
    finally:
        conn.close()


def csv_body(uploader: int, size: int) -> bytes:
    """A valid CSV of exactly ``size`` bytes (its last description padded to fit)."""
    rows = [CSV_HEADER]
    length = len(CSV_HEADER)
    for n in itertools.count():
        row = f"Upload {uploader:03d}-{n:06d},{1 + n % 90}.25,{n % 7},U{uploader}-{n},slow".encode()
        if length + len(row) + 1 + 120 > size:
            pad = size - length - len(row) - 1
            rows.append(row + b"x" * max(0, pad) + b"\n")
            break
        rows.append(row + b"\n")
        length += len(row) + 1
    return b"".join(rows)[:size]


async def uploader(
    index: int,
    port: int,
    token: str,
    store_id: int,
    stats: Stats,
    hold_until: float,
    rate: int = 1024,
) -> None:
    """Uploads imports at ``rate`` bytes/s, each body sized to end before ``hold_until``
    (``time.monotonic()``), ``Content-Length`` set; every answer is read (until 30 s after
    the last byte)."""
    while (seconds := hold_until - time.monotonic() - 1.0) >= 3.0:
        body = csv_body(index, int(rate * seconds))
        conn = Connection(HOST, port)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "text/csv",
            "Content-Length": str(len(body)),
        }
        stats.open_now += 1
        try:
            await asyncio.wait_for(conn.open(), 30)
            assert conn.writer is not None
            conn.writer.write(conn.head("POST", f"/v1/stores/{store_id}/imports", headers))
            started = time.monotonic()
            for k, offset in enumerate(range(0, len(body), rate)):
                await asyncio.sleep(max(0.0, started + k - time.monotonic()))
                conn.writer.write(body[offset : offset + rate])
                await asyncio.wait_for(conn.writer.drain(), 30)
            status, head = await asyncio.wait_for(conn.read_head(), 30)
            async for _ in conn.body_chunks(status, head, "POST"):
                pass
            stats.status(status)
            stats.counts["uploads_answered"] += 1
            stats.counts["upload_bytes"] += len(body)
        except TimeoutError:
            stats.transport(TimeoutError("no progress for 30 s (connect, send or answer)"))
        except (HTTPError, OSError) as exc:
            stats.transport(exc)
        finally:
            stats.open_now -= 1
            conn.close()


# --- probes (a process of their own) ----------------------------------------------------


async def _probe_loop(
    port: int, path: str, every: float, start: float, seconds: float, out: dict
) -> None:
    """Requests paced every ``every`` seconds on one keep-alive connection. Latency is
    taken from the request's scheduled time (a slow answer delays the next ones, and
    that wait counts: no coordinated omission) and, beside it, from its sending."""
    conn = Connection(HOST, port)
    n = 0
    while (scheduled := start + n * every) < start + seconds:
        n += 1
        await asyncio.sleep(max(0.0, scheduled - time.time()))
        try:
            r = await conn.request("GET", path, {"Accept": "application/json"}, timeout=30)
        except HTTPError as exc:
            out["transport_errors"] += 1
            out["latency_ms"].append((time.time() - scheduled) * 1000)
            if len(out["error_samples"]) < 10:
                out["error_samples"].append(str(exc))
            continue
        out["latency_ms"].append((r.done_at - scheduled) * 1000)
        out["service_ms"].append((r.done_at - r.sent_at) * 1000)
        out["statuses"][str(r.status)] = out["statuses"].get(str(r.status), 0) + 1
        cache = r.headers.get("x-cache", "-")
        out["x_cache"][cache] = out["x_cache"].get(cache, 0) + 1
    conn.close()


def probe_main(port: int, targets: list[tuple[str, str, int, float]], start: float,
               seconds: float, queue: Any) -> None:  # fmt: skip
    """Entry point of the probe process: ``targets`` are (name, path, connections,
    interval); results go back through ``queue``."""

    async def run() -> dict:
        results = {
            name: {"path": path, "connections": conns, "every_s": every, "transport_errors": 0}
            | {key: [] for key in ("latency_ms", "service_ms", "error_samples")}
            | {"statuses": {}, "x_cache": {}}
            for name, path, conns, every in targets
        }
        loops = [
            # connections of one target are spread over its interval
            _probe_loop(port, path, every, start + every * c / conns, seconds, results[name])
            for name, path, conns, every in targets
            for c in range(conns)
        ]
        await asyncio.gather(*loops)
        return results

    queue.put(asyncio.run(run()))
