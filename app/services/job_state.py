"""A job's state in Redis, kept in step with the database after every commit.

The database is the truth; Redis holds, per job, what a poll answers: the owner's id,
the JSON body, its ETag and whether the job has finished (``js:<job id>``, a hash). A
commit that changes a job sends ``signals.job_changed``; ``publish`` then reads the
committed row, writes its state and publishes the job id on ``jobs:changed`` in one
atomic script, so a poll is one Redis read (no database, no ORM) and every waiting long
poll and event stream wakes (``job_notices``).

Two publishers may race (the web process cancels while the worker commits a chunk); a
finished state is final, so the script never lets an unfinished state replace it. Redis
down or the key missing (flush, eviction, expiry): the database answers and the state
is written back.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from flask import Flask

from app import ratelimit, signals
from app.extensions import db, redis_client
from app.models import Job
from app.services import jobs

log = logging.getLogger(__name__)

CHANNEL = "jobs:changed"
TTL_SECONDS = 24 * 3600

# KEYS[1] state key; ARGV: user id, etag, body, finished (0/1), ttl, publish (0/1), job id.
_WRITE = (
    """
if ARGV[4] == '0' and redis.call('HGET', KEYS[1], 'finished') == '1' then
  return 0
end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'etag', ARGV[2], 'body', ARGV[3],
           'finished', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[6] == '1' then
  redis.call('PUBLISH', '"""
    + CHANNEL
    + """', ARGV[7] .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[4] .. '\\n' .. ARGV[3])
end
return 1
"""
)


# One round trip for a poll: the rate-limit counters (``ratelimit.COUNT_LUA``), the
# session's blocklist fields, and the job's state.
# KEYS: blocklist, state, then one counter per limit. ARGV: sid, loaded-field name, then
# amount and window seconds per counter. Reply: {counts, -1} when a limit is spent, else
# {counts, {loaded, until}, {user, etag, body, finished}}.
_POLL = (
    ratelimit.COUNT_LUA
    + """
return {counts, redis.call('HMGET', KEYS[1], ARGV[2], ARGV[1]),
        redis.call('HMGET', KEYS[2], 'user', 'etag', 'body', 'finished')}
"""
)


@dataclass(frozen=True)
class JobState:
    """What a poll of one job answers, in JSON; other representations render ``data``."""

    job_id: str
    user_id: int
    etag: str
    body: bytes
    finished: bool

    def data(self) -> dict[str, Any]:
        return orjson.loads(self.body)


def parse_notice(data: bytes) -> tuple[str, JobState | None]:
    """A notice: the job id, then (unless the job is gone) the state just written, so a
    woken waiter needs no Redis read: ``id\\nuser\\netag\\nfinished\\nbody``."""
    parts = data.split(b"\n", 4)
    job_id = parts[0].decode()
    if len(parts) < 5:
        return job_id, None
    _, user, etag, finished, body = parts
    return job_id, JobState(job_id, int(user), etag.decode(), body, finished == b"1")


def key(job_id: str) -> str:
    return f"js:{job_id}"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def state_of(job: Job) -> JobState:
    body = orjson.dumps(jobs.to_dict(job))
    return JobState(job.id, job.user_id, etag_of(body), body, job.status in jobs.TERMINAL)


def _script(name: str, source: str) -> Any:
    client = redis_client.client
    script = getattr(client, name, None)
    if script is None:
        script = client.register_script(source)
        setattr(client, name, script)  # one per client
    return script


@dataclass(frozen=True)
class Poll:
    """What one poll's round trip found (``breached``: a limit is spent; read nothing)."""

    counts: list[int]
    breached: bool
    blocklist_loaded: bool = False
    revoked_until: bytes | None = None
    state: JobState | None = None


def poll(job_id: str, *, sid: str, blocklist: str, loaded: str, counters: list) -> Poll:
    """Count the request, read the session's blocklist fields and the job's state, in
    one round trip (the job-poll fast path). ``counters``: ``(key, amount, seconds)``."""
    keys = [blocklist, key(job_id), *(c[0] for c in counters)]
    args: list[Any] = [sid, loaded]
    for _, amount, seconds in counters:
        args += [amount, seconds]
    reply = _script("_job_state_poll", _POLL)(keys=keys, args=args)
    counts = list(reply[0])
    if reply[1] == -1:
        return Poll(counts, True)
    (found_loaded, until), (user, etag, body, finished) = reply[1], reply[2]
    state = None
    if isinstance(body, bytes) and isinstance(user, bytes) and isinstance(etag, bytes):
        state = JobState(job_id, int(user), etag.decode(), body, finished == b"1")
    return Poll(counts, False, found_loaded is not None, until, state)


def _write(state: JobState, *, notify: bool) -> None:
    _script("_job_state_write", _WRITE)(
        keys=[key(state.job_id)],
        args=[
            state.user_id,
            state.etag,
            state.body,
            int(state.finished),
            TTL_SECONDS,
            int(notify),
            state.job_id,
        ],
    )


def publish(job_id: str) -> None:
    """After a commit that changed the job: its committed state to Redis, and a notice.

    A Redis failure is logged, never raised: the commit stands and polls read the
    database (the key is dropped so no poll serves the state from before the commit).
    """
    job = db.session.get(Job, job_id, populate_existing=True)
    try:
        if job is None:
            redis_client.client.delete(key(job_id))
            redis_client.client.publish(CHANNEL, job_id)
            return
        _write(state_of(job), notify=True)
    except redis.RedisError as exc:
        redis_client.failed(exc, "job state")
        _forget(job_id)


def _forget(job_id: str) -> None:
    try:
        redis_client.client.delete(key(job_id))
    except redis.RedisError:
        log.warning("job %s: state in Redis may be stale until its next change", job_id)


def read(job_id: str) -> JobState | None:
    """The job's state: from Redis (one round trip) when it is there, else the database.

    ``None`` when no such job exists. The caller checks who owns it.
    """
    if len(job_id) > 36:
        return None
    if redis_client.available():
        try:
            found = redis_client.client.hmget(key(job_id), "user", "etag", "body", "finished")
        except redis.RedisError as exc:
            redis_client.failed(exc, "job state")
        else:
            user, etag, body, finished = found
            if isinstance(body, bytes) and isinstance(user, bytes) and isinstance(etag, bytes):
                return JobState(job_id, int(user), etag.decode(), body, finished == b"1")
    return _from_database(job_id)


def _from_database(job_id: str) -> JobState | None:
    job = db.session.get(Job, job_id, populate_existing=True)
    # A long poll or an event stream goes on waiting: it must not pin a pooled connection.
    db.session.close()
    if job is None:
        return None
    state = state_of(job)
    if redis_client.available():
        try:
            _write(state, notify=False)
        except redis.RedisError as exc:
            redis_client.failed(exc, "job state")
    return state


def _on_job_changed(sender: Any, *, job_ids: tuple[str, ...], **extra: Any) -> None:
    for job_id in job_ids:
        publish(job_id)


def init_app(app: Flask) -> None:
    """Keep Redis in step with every committed job change this process makes."""
    signals.job_changed.connect(_on_job_changed, weak=False)
