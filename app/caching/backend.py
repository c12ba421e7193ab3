"""The read cache's flask-caching backend: entries and generations in Redis.

``Cache`` (``app.extensions.cache``) is configured with ``CACHE_TYPE`` naming this class,
so flask-caching builds it, owns it and hands it to ``app.caching`` as ``cache.cache``
(``CACHE_TYPE = "app.caching.backend.ReadCacheBackend"``).
It is flask-caching's ``RedisCache`` on the process's one connection pool (its plain
``get``/``set``/``delete`` work as usual, under ``CACHE_KEY_PREFIX``), plus what a
never-stale read cache needs and ``get``/``set`` cannot express:

- an entry is a Redis hash (body, ETag, replayable headers, and the generation it was
  rendered at, with the name of that generation's key), not a pickled value, so a hit
  is served as the stored bytes;
- a lookup counts the request against its rate limits (the counters Flask-Limiter reads)
  and reads the entry and its generation's current token, in one script and one round
  trip (``LOOKUP_SCRIPT``);
- a store happens only if the generation read before the query is still current,
  atomically (``STORE_SCRIPT``).

Scripts read the generation key an entry names (not declared in ``KEYS``): fine on a
standalone Redis (Heroku's), not on Redis Cluster.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask
from flask_caching.backends.rediscache import RedisCache
from redis.commands.core import Script

from app import ratelimit
from app.caching.keys import GLOBAL_GEN, store_gen_key
from app.extensions import redis_client

# Headers a view sets that describe the representation and are replayed on a hit.
# Per-request ones (request id, rate limit, date) are never stored.
NOT_STORED = frozenset(
    {
        "content-length", "x-request-id", "etag", "cache-control", "x-cache", "date",
        "server", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after",
    }
)  # fmt: skip

# One round trip for a read: the rate-limit counters, then the entry and its generation.
# KEYS: entry, snapshot generation, then one counter per rate limit (Flask-Limiter's order).
# ARGV: If-None-Match ("" if none), fresh token, then amount and window seconds per counter.
# The counters are ``ratelimit.COUNT_LUA``'s (the same budget Flask-Limiter enforces). Replies:
#   {counts, -1}                      a limit is spent (counting stops there, as Flask-
#                                     Limiter's fail-on-first-breach does); no entry read
#   {counts, 0, token}                miss: the snapshot generation's token (created as
#                                     ARGV[2] when missing) that a render stores against
#   {counts, 1, headers, etag, body}  hit
#   {counts, 2, headers, etag}        hit, and If-None-Match names its ETag (304)
# where counts is {count, ttl} per counter evaluated.
LOOKUP_SCRIPT = (
    ratelimit.COUNT_LUA
    + """
local e = redis.call('HMGET', KEYS[1], 'd', 'g', 'h', 'e')
if not e[1] or redis.call('GET', e[1]) ~= e[2] then
  local g = redis.call('GET', KEYS[2])
  if not g then g = ARGV[2]; redis.call('SET', KEYS[2], g) end
  return {counts, 0, g}
end
local inm = ARGV[1]
if inm ~= '' and (inm == '*' or string.find(inm, e[4], 1, true)) then
  return {counts, 2, e[3], e[4]}
end
return {counts, 1, e[3], e[4], redis.call('HGET', KEYS[1], 'b')}
"""
)
# KEYS: entry, snapshot generation, dependency generation (the entry's validity).
# ARGV: snapshot token, ttl, headers, etag, body, fresh token. Stores only if the
# snapshot still holds; a missing dependency generation starts as a fresh token (no
# entry can name a token that does not exist yet).
STORE_SCRIPT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local dep = redis.call('GET', KEYS[3])
if not dep then dep = ARGV[6]; redis.call('SET', KEYS[3], dep) end
redis.call('HSET', KEYS[1], 'd', KEYS[3], 'g', dep, 'h', ARGV[3], 'e', ARGV[4], 'b', ARGV[5])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


# Tokens: a random prefix per process and a counter, unique without a syscall per call
# (one is drawn for every lookup, in case the generation has to be created). A forked
# child (Celery's prefork pool) draws its own prefix: it must never repeat its parent's.
_token_prefix = ""
_token_counter = itertools.count()


def _new_token_prefix() -> None:
    global _token_prefix, _token_counter
    _token_prefix, _token_counter = secrets.token_hex(8), itertools.count()


_new_token_prefix()
os.register_at_fork(after_in_child=_new_token_prefix)


def new_token() -> str:
    return f"{_token_prefix}{next(_token_counter):x}"


def inm_matches(if_none_match: str, etag: str) -> bool:
    return bool(if_none_match) and (if_none_match.strip() == "*" or etag in if_none_match)


@dataclass
class Hit:
    headers: list[tuple[str, str]]
    etag: str
    body: bytes | None  # None: the client's If-None-Match matched (304)


@dataclass
class Lookup:
    """What one lookup found: the counters' ``count, ttl`` pairs, then a ``Hit``, the
    snapshot token a miss stores against, or ``None`` when a rate limit is spent."""

    counts: list[int]
    found: Hit | str | None


def pack_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    return "\n".join(f"{k}:{v}" for k, v in headers if k.lower() not in NOT_STORED).encode()


def unpack_headers(blob: bytes) -> list[tuple[str, str]]:
    if not blob:
        return []
    return [tuple(line.split(":", 1)) for line in blob.decode().split("\n")]  # type: ignore[misc]


class ReadCacheBackend(RedisCache):
    """flask-caching's ``RedisCache`` on the shared pool, with generational entries."""

    def __init__(self, client: redis.Redis, default_timeout: int = 300, **kwargs: Any) -> None:
        super().__init__(host=client, default_timeout=default_timeout, **kwargs)
        self.client = client
        self._lookup = client.register_script(LOOKUP_SCRIPT)
        self._store = client.register_script(STORE_SCRIPT)

    @classmethod
    def factory(
        cls, app: Flask, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> ReadCacheBackend:
        return cls(redis_client.client, key_prefix=config["CACHE_KEY_PREFIX"], **kwargs)

    # --- generations ------------------------------------------------------------------

    def new_generations(self, store_ids: Iterable[int]) -> None:
        """Fresh tokens for these stores' generations and for every list's."""
        pipe = self.client.pipeline(transaction=True)
        for store_id in store_ids:
            pipe.set(store_gen_key(store_id), secrets.token_hex(12))
        pipe.set(GLOBAL_GEN, secrets.token_hex(12))
        pipe.execute()

    # --- entries ----------------------------------------------------------------------

    def lookup(
        self,
        key: str,
        if_none_match: str,
        snapshot_key: str,
        counters: Sequence[tuple[str, int, int]] = (),
    ) -> Lookup:
        """Count the request against ``counters`` (``(key, amount, window seconds)``),
        then read the entry and its generation: one script, one round trip."""
        keys = [key, snapshot_key, *(c[0] for c in counters)]
        args: list[Any] = [if_none_match, new_token()]
        for _key, amount, window in counters:
            args += [amount, window]
        reply = self._run(self._lookup, keys, args)
        counts, kind = reply[0], reply[1]
        if kind == -1:
            return Lookup(counts, None)
        if kind == 0:
            return Lookup(counts, reply[2].decode())
        body = reply[4] if kind == 1 else None
        return Lookup(counts, Hit(unpack_headers(reply[2]), reply[3].decode(), body))

    def store_entry(
        self,
        key: str,
        snapshot: tuple[str, str],
        dep_key: str,
        *,
        headers: Iterable[tuple[str, str]],
        etag: str,
        body: bytes,
        ttl: int,
    ) -> bool:
        """Store a rendered read if the snapshot generation is still current."""
        snapshot_key, token = snapshot
        stored = self._store(
            keys=[key, snapshot_key, dep_key],
            args=[token, max(ttl, 0), pack_headers(headers), etag, body, new_token()],
        )
        return bool(stored)

    def _run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return self._roundtrip([("EVALSHA", script.sha, len(keys), *keys, *args)])[0]
        except redis.exceptions.NoScriptError:  # Redis restarted: scripts are gone
            return self._roundtrip([("EVAL", script.script, len(keys), *keys, *args)])[0]

    def _roundtrip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Commands sent together on a pooled connection, replies read: one round trip,
        without redis-py's per-command wrappers (a measurable share of a hit's CPU)."""
        pool = self.client.connection_pool
        for attempt in (1, 2):
            conn = pool.get_connection()
            try:
                conn.send_packed_command(conn.pack_commands(commands))
                return [conn.read_response() for _ in commands]
            except redis.ConnectionError:
                conn.disconnect()
                if attempt == 2:  # one retry: a pooled connection may predate a restart
                    raise
            except BaseException:
                conn.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                pool.release(conn)
        raise AssertionError("unreachable")
