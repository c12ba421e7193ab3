"""The read cache's flask-caching backend: entries and generations in Redis.

``Cache`` (``app.extensions.cache``) is configured with ``CACHE_TYPE`` naming this class,
so flask-caching builds it, owns it and hands it to ``app.caching`` as ``cache.cache``.
It is flask-caching's ``RedisCache`` on the process's one connection pool (its plain
``get``/``set``/``delete`` work as usual, under ``CACHE_KEY_PREFIX``), plus what a
never-stale read cache needs and ``get``/``set`` cannot express:

- an entry is a Redis hash (body, ETag, replayable headers, and the generation it was
  rendered at, with the name of that generation's key), not a pickled value, so a hit
  is served as the stored bytes;
- a lookup reads the entry and its generation's current token in one round trip;
- a store happens only if the generation read before the query is still current,
  atomically (``STORE_SCRIPT``).

Scripts read the generation key an entry names (not declared in ``KEYS``): fine on a
standalone Redis (Heroku's), not on Redis Cluster.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask
from flask_caching.backends.rediscache import RedisCache
from redis.commands.core import Script

from app.extensions import redis_client

GLOBAL_GEN = "rg:all"
# Headers a view sets that describe the representation and are replayed on a hit.
# Per-request ones (request id, rate limit, date) are never stored.
NOT_STORED = frozenset(
    {"content-length", "x-request-id", "etag", "cache-control", "x-cache", "date", "server"}
)
_LUA = object()  # a plain lookup could not decide: ask the Lua script

# KEYS: entry, snapshot generation. ARGV: If-None-Match ("" if none), fresh token.
# A current entry -> {headers, etag[, body]} (no body when If-None-Match matched); else
# the current token of generation KEYS[2] (created as ARGV[2] when missing), the
# snapshot a miss stores against -> {0, token}.
LOOKUP_OR_SNAPSHOT_SCRIPT = """
local function snapshot()
  local g = redis.call('GET', KEYS[2])
  if not g then g = ARGV[2]; redis.call('SET', KEYS[2], g) end
  return {0, g}
end
local e = redis.call('HMGET', KEYS[1], 'd', 'g', 'h', 'e')
if not e[1] or redis.call('GET', e[1]) ~= e[2] then return snapshot() end
local inm = ARGV[1]
if inm ~= '' and (inm == '*' or string.find(inm, e[4], 1, true)) then
  return {e[3], e[4]}
end
return {e[3], e[4], redis.call('HGET', KEYS[1], 'b')}
"""
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


def store_gen_key(store_id: int) -> str:
    return f"rg:s:{store_id}"


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
        self._lookup_or_snapshot = client.register_script(LOOKUP_OR_SNAPSHOT_SCRIPT)
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
        dep_key: str | None = None,
    ) -> Hit | str:
        """A hit; else the token of generation ``snapshot_key`` to store a miss against.

        With ``dep_key`` (the generation the entry belongs to, known from the URL) this is
        two plain commands in one round trip: the entry is a hit only if it names
        ``dep_key`` and holds the token read in the same round trip, which was current at
        that moment. Lua (about twice Redis's CPU per call) is left for the rest: an item
        whose store this process has not seen yet, a generation that must be created.
        """
        if dep_key is not None:
            found = self._plain_lookup(key, if_none_match, dep_key, snapshot_key)
            if found is not _LUA:
                return found  # type: ignore[return-value]
        found = self._run(
            self._lookup_or_snapshot, (key, snapshot_key), (if_none_match, new_token())
        )
        if found[0] == 0:
            return found[1].decode()
        body = found[2] if len(found) > 2 else None
        return Hit(unpack_headers(found[0]), found[1].decode(), body)

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

    def _plain_lookup(
        self, key: str, if_none_match: str, dep_key: str, snapshot_key: str
    ) -> Hit | str | object:
        gens = [dep_key] if snapshot_key == dep_key else [dep_key, snapshot_key]
        replies = self._roundtrip(
            [("HMGET", key, "d", "g", "h", "e", "b"), *(("GET", gen) for gen in gens)]
        )
        (named, token, headers, etag, body), current = replies[0], replies[1]
        current_entry = named is not None and named.decode() == dep_key and token == current
        if current_entry and current is not None:
            tag = etag.decode()
            matched = inm_matches(if_none_match, tag)
            return Hit(unpack_headers(headers), tag, None if matched else body)
        snapshot = replies[-1]
        return snapshot.decode() if snapshot is not None else _LUA  # Lua creates it

    def _run(self, script: Script, keys: tuple[str, ...], args: tuple[str, ...]) -> Any:
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
