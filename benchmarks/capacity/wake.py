"""Long-poll wake latency: how soon a held ``GET /v1/jobs/<id>`` answers after the commit
that changed the job.

The commit's time comes from the job itself. Every transition the benchmark can name
stamps the job in the same transaction that makes it, from the committing process's
clock (the same machine's clock as ours) taken just *before* the commit:

- ``queued -> running`` (the worker's claim): ``started_at``;
- ``-> succeeded | failed | cancelled`` (the worker's last commit, or the web process's
  cancel of a queued job): ``finished_at``.

So ``arrival - stamp`` is an upper bound of the wake latency (it also contains the
commit itself): how long after the change a client following the job learns of it. An
answer counts when the client already knew the state before the change (its previous
answer arrived before the stamp) and the answer shows exactly that transition; answers
that carry an unstamped change (a chunk's progress) are counted apart. Wakes whose
request was itself sent before the stamp were held by the server across the change
(``held``); a server that answers at once leaves the client polling as ``Retry-After``
asks, and the latency shows it. For cancels, arrival minus the cancel request's sending
is kept too: a second upper bound that does not depend on the server's stamps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import time
from typing import Any

from benchmarks.capacity.http import Connection, HTTPError
from benchmarks.capacity.load import HOST, TERMINAL


def stamp(value: str | None) -> float | None:
    """An ISO 8601 time of the API as epoch seconds (a naive one is UTC)."""
    if not value:
        return None
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


async def follow(port: int, token: str, job_id: str, until: float) -> dict[str, Any]:
    """Long-poll one job until it has finished (or ``until``, ``time.monotonic()``),
    keeping every answer: when its request was sent, when it arrived, what it said."""
    conn = Connection(HOST, port)
    auth = {"Authorization": f"Bearer {token}"}
    answers: list[dict[str, Any]] = []
    first = await conn.request("GET", f"/v1/jobs/{job_id}", auth, timeout=30)
    state, etag = json.loads(first.body), first.headers.get("etag")
    known_at = first.done_at
    try:
        while state["status"] not in TERMINAL and time.monotonic() < until:
            headers = {**auth, "Prefer": "wait=25"}
            if etag:
                headers["If-None-Match"] = etag
            try:
                r = await conn.request("GET", f"/v1/jobs/{job_id}", headers, timeout=35)
            except HTTPError as exc:
                answers.append({"error": str(exc)})
                await asyncio.sleep(1)
                continue
            answer = {
                "status": r.status,
                "sent": r.sent_at,
                "arrived": r.done_at,
                "applied": r.headers.get("preference-applied"),
                "known_at": known_at,  # when the state this answer replaces had arrived
            }
            known_at = r.done_at
            changed = False
            if r.status == 200:
                new = json.loads(r.body)
                changed = new != state
                answer["before"], answer["after"] = _brief(state), _brief(new)
                state, etag = new, r.headers.get("etag")
            answers.append(answer)
            if r.status not in (200, 304):
                await asyncio.sleep(1)
            elif not answer["applied"] and not changed:
                await asyncio.sleep(1)  # a server that does not hold: poll as Retry-After asks
    finally:
        conn.close()
    return {"job_id": job_id, "answers": answers, "final": state["status"]}


def _brief(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": job["status"],
        "processed": job["progress"]["processed"],
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
    }


def samples(followed: list[dict[str, Any]]) -> dict[str, Any]:
    """Wake latencies (ms) out of the followed jobs' answers, by the commit that woke them."""
    wakes: dict[str, list[float]] = {"claim": [], "finish": [], "cancel": []}
    unmatched = errors = immediate = held = 0
    for job in followed:
        for a in job["answers"]:
            if "error" in a or a["status"] not in (200, 304):
                errors += 1
                continue
            if a["status"] != 200:
                continue
            before, after = a["before"], a["after"]
            if before == after:
                immediate += 1  # unchanged 200: no long poll held it
                continue
            if before["status"] == "queued" and after["status"] == "running":
                kind, at = ("claim", stamp(after["started_at"]))
                if after["processed"]:
                    kind = ""  # a chunk committed too: the claim is not what woke it
            elif after["status"] in TERMINAL and before["status"] not in TERMINAL:
                kind = "cancel" if job.get("cancelled_by_us") == after["finished_at"] else "finish"
                at = stamp(after["finished_at"])
            else:
                kind, at = "", None
            if not kind or at is None or a["known_at"] >= at:
                unmatched += 1
                continue
            held += a["sent"] < at
            wakes[kind].append((a["arrived"] - at) * 1000)
    every = sorted(x for xs in wakes.values() for x in xs)
    return {
        "wake_ms": summarize(every),
        "by_commit": {k: summarize(sorted(v)) for k, v in wakes.items()},
        "held_across_the_commit": held,
        "unmatched_answers": unmatched,
        "unchanged_200_answers": immediate,
        "errors": errors,
    }


def summarize(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {
        "n": len(ordered),
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.fmean(ordered), 2),
    }
