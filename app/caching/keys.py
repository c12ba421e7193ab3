"""Cache keys: an entry's key, and the generation keys entries belong to.

An entry's key is ``rc:GET <format> <scheme>://<host><path>?<sorted query>``: the
method's meaning (HEAD is GET without a body, so both read the GET entry; only GET
stores), the negotiated representation, the host (absolute ``next``/``Link`` URLs are
built from it), the path and the query's pairs sorted. The pairs come from
``app.query.one_value_pairs``: no name appears twice, so sorting them cannot merge two
different requests (``?sort=price&sort=-price`` is a 422 before any lookup). Long keys
are hashed.

Generations. ``rg:s:<store id>`` belongs to a store (its reads, its items list, its
items); ``rg:all`` to every store (the stores list shows item counts and names).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

GLOBAL_GEN = "rg:all"
MAX_KEY = 240


def store_gen_key(store_id: int) -> str:
    return f"rg:s:{store_id}"


def snapshot_key(view_args: Mapping[str, Any]) -> str:
    """The generation a miss snapshots before its query: the store's when the URL names
    it, else every store's (an item's store is only known once the view has read it)."""
    store_id = view_args.get("store_id")
    return store_gen_key(store_id) if store_id is not None else GLOBAL_GEN


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def entry_key(environ: Mapping[str, Any], fmt: str, pairs: list[tuple[str, str]]) -> str:
    """The key of a read (one function for the fast and the Flask path)."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = urlencode(sorted(pairs))
    raw = f"GET {fmt} {environ.get('wsgi.url_scheme', 'http')}://{host}{path}?{query}"
    if len(raw) > MAX_KEY:
        raw = "h " + hashlib.blake2b(raw.encode("utf-8", "surrogateescape")).hexdigest()
    return "rc:" + raw
