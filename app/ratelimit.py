"""Rate-limit state on responses, and the counters the read cache's fast path increments.

Flask-Limiter enforces the limits; this module only says what a client sees of them and
lets the fast path count a request in Flask-Limiter's own budget:

- ``headers`` is the one function that writes ``RateLimit-Limit``, ``RateLimit-Remaining``
  and ``RateLimit-Reset`` (delta seconds, as in the IETF RateLimit header draft), for the
  Flask path (from Flask-Limiter's current limit) and the fast path (from its counters).
  Flask-Limiter's own header injection is off: it put the window's countdown in
  ``Retry-After`` on every response, which pollers read as "come back in a minute".
- ``plan_for`` tells the fast path which counters Flask-Limiter would increment for an
  endpoint, with the library's own objects (``RateLimitItem.key_for``, the storage's
  ``prefixed_key``), so both paths share one counter; ``None`` when the fast path could
  not count exactly what Flask-Limiter would (another strategy, decorated, meta or
  application limits, exemptions, a custom key function...).
- A request the fast path counted carries its ``Window`` in the WSGI environ; Flask-Limiter
  skips it (``request_filter``), so it is never counted twice, and a spent budget found by
  the fast path is raised here as Flask-Limiter's own ``RateLimitExceeded`` (same 429).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from flask_limiter import RequestLimit
from flask_limiter._limits import RuntimeLimit
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_qualified_name, get_remote_address
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

from app.extensions import limiter

log = logging.getLogger(__name__)
ENVIRON_COUNTED = "stores.ratelimit.counted"


@dataclass(frozen=True)
class Window:
    """The state of the limit a response reports: its size, what is left, when it resets."""

    limit: int
    remaining: int
    reset_in: int  # seconds until the window resets


@dataclass(frozen=True)
class Counted:
    """What the fast path found when it counted a request (kept in the WSGI environ)."""

    window: Window
    breached: RuntimeLimit | None  # the limit that is spent, if one is


def headers(window: Window) -> list[tuple[str, str]]:
    """The ``RateLimit-*`` headers of a response (the one place they are computed)."""
    return [
        ("RateLimit-Limit", str(window.limit)),
        ("RateLimit-Remaining", str(window.remaining)),
        ("RateLimit-Reset", str(window.reset_in)),
    ]


def retry_after(window: Window | None) -> int:
    """``Retry-After`` of a 429: the seconds until the window resets, at least 1."""
    return max(1, window.reset_in) if window is not None else 60


def window_of(current: RequestLimit) -> Window:
    """Flask-Limiter's state of a limit as a ``Window`` (one storage read)."""
    reset_at, remaining = current.window
    return Window(current.limit.amount, remaining, max(0, math.ceil(reset_at - time.time())))


def current_window() -> Window | None:
    """This request's window: counted by the fast path, else Flask-Limiter's current limit."""
    counted: Counted | None = request.environ.get(ENVIRON_COUNTED)
    if counted is not None:
        return counted.window
    current = limiter.current_limit
    if current is None:
        return None
    try:
        return window_of(current)
    except Exception as exc:  # storage gone between the check and here: no headers
        log.warning("rate limit state unavailable: %s", exc)
        return None


# --- the fast path's counters ------------------------------------------------------------

# The fast paths' counting, the start of their one-round-trip scripts: a fixed window kept
# exactly as limits' incr_expire.lua keeps it (INCR; EXPIRE on the window's first hit), so
# Flask-Limiter reads and enforces the same budget; it stops at the first spent limit, as
# Flask-Limiter's fail-on-first-breach does, answering {counts, -1}. KEYS[3..] are the
# counters, ARGV[3..] their (amount, window seconds) pairs; `counts` is {count, ttl} per
# counter evaluated. KEYS[1..2] and ARGV[1..2] are the script's own.
COUNT_LUA = """
local counts = {}
for i = 3, #KEYS do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then redis.call('EXPIRE', KEYS[i], ARGV[2 * i - 2]) end
  counts[#counts + 1] = count
  counts[#counts + 1] = redis.call('TTL', KEYS[i])
  if count > tonumber(ARGV[2 * i - 3]) then return {counts, -1} end
end
"""


@dataclass(frozen=True)
class Plan:
    """The counters Flask-Limiter increments for one endpoint, in the order it does."""

    endpoint: str
    limits: tuple[RuntimeLimit, ...]

    def counters(self, environ: dict[str, Any]) -> list[tuple[str, int, int]] | None:
        """``(storage key, amount, window seconds)`` per limit for this request, or
        ``None`` when Flask-Limiter would not use Redis now (its in-memory fallback)."""
        if not self.limits:
            return []
        if limiter._storage_dead or not isinstance(limiter._storage, RedisStorage):
            return None
        # get_remote_address reads request.remote_addr: REMOTE_ADDR after ProxyFix.
        address = environ.get("REMOTE_ADDR") or "127.0.0.1"
        prefix = limiter._key_prefix
        args = [prefix, address, self.endpoint] if prefix else [address, self.endpoint]
        storage = limiter._storage
        return [
            (
                storage.prefixed_key(lim.limit.key_for(*args)),
                lim.limit.amount,
                lim.limit.get_expiry(),
            )
            for lim in self.limits
        ]

    def counted(self, replies: list[int]) -> Counted | None:
        """The state to report from the script's ``count, ttl`` pairs (as many pairs as
        limits evaluated: it stops at the first spent one, as Flask-Limiter does)."""
        if not self.limits:
            return None
        pairs = list(zip(replies[::2], replies[1::2], strict=True))
        index = len(pairs) - 1
        count, ttl = pairs[index]
        lim = self.limits[index]
        breached = lim if count > lim.limit.amount else None
        if breached is None:  # Flask-Limiter reports the smallest window when none is spent
            index, (count, ttl) = 0, pairs[0]
            lim = self.limits[0]
        window = Window(lim.limit.amount, max(0, lim.limit.amount - count), max(0, ttl))
        return Counted(window, breached)


def plan_for(app: Flask, endpoint: str) -> Plan | None:
    """The fast path's plan for an endpoint, or ``None``: leave the request to Flask.

    Reads Flask-Limiter's configuration (4.1, pinned): it has no public way to say which
    limits a request would be counted against, and guessing would split the budget.
    """
    if not limiter.enabled:
        return Plan(endpoint, ())
    if not (
        limiter.initialized
        and isinstance(limiter._limiter, FixedWindowRateLimiter)
        and isinstance(limiter._storage, RedisStorage)
        and limiter._fail_on_first_breach
        and not limiter._meta_limits
        and not limiter.limit_manager.application_limits
        and all(f is _counted_by_fast_path for f in limiter._request_filters)
    ):
        return None
    view = app.view_functions.get(endpoint)
    if view is None:
        return None
    name = get_qualified_name(view)
    if name in limiter._marked_for_limiting or limiter.limit_manager.has_hints(endpoint):
        return None
    blueprint = endpoint.rpartition(".")[0] or None
    defaults, decorated = limiter.limit_manager.resolve_limits(
        app, endpoint, blueprint, name, True, False
    )
    if decorated or not all(_plain(lim) for lim in defaults):
        return None
    return Plan(endpoint, tuple(sorted(defaults, key=lambda lim: lim.limit)))


def _plain(lim: RuntimeLimit) -> bool:
    """A limit the fast path counts exactly: per client address, per endpoint, cost 1."""
    return (
        lim.key_func is get_remote_address
        and lim.scope is None
        and not lim.per_method
        and lim.methods is None
        and lim.exempt_when is None
        and lim.deduct_when is None
        and lim.on_breach is None
        and lim.cost == 1
        and not lim.shared
        and not lim.meta_limits
    )


# --- wiring ------------------------------------------------------------------------------


@limiter.request_filter
def _counted_by_fast_path() -> bool:
    # Registered once, on the process's one Limiter: a request the fast path counted is
    # not counted again by Flask-Limiter's before_request.
    return ENVIRON_COUNTED in request.environ


def _refuse_spent() -> None:
    counted: Counted | None = request.environ.get(ENVIRON_COUNTED)
    if counted is not None and counted.breached is not None:
        raise RateLimitExceeded(counted.breached)


def _add_headers(response: Response) -> Response:
    window = current_window()
    if window is not None:
        response.headers.extend(headers(window))
    return response


def init_app(app: Flask) -> None:
    """``RateLimit-*`` on every rate-limited response; 429 for budgets the fast path spent."""
    app.before_request(_refuse_spent)
    app.after_request(_add_headers)
