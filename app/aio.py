"""Run ``async def`` views on long-lived event loops, under threads and under gevent.

Flask's stock ``async_to_sync`` (asgiref) starts a new event loop in a new thread for
every call: about a third of a ``def`` view's throughput. Here a call borrows an idle
loop from a small per-process pool and runs the coroutine on it in the calling thread
(or greenlet), then gives the loop back: loops are created once and reused.

gevent's trap: asyncio keeps "the running loop" per OS thread, and every greenlet of a
gevent worker shares one OS thread. A view whose coroutine blocks on patched I/O (a
database or Redis call) switches to another greenlet while its loop is marked running
there, and that greenlet's own ``run_until_complete`` then fails with "Cannot run the
event loop while another loop is running" (or ``asyncio.run()`` "cannot be called from
a running event loop"). So under gevent a greenlet switch tracer keeps the marker per
greenlet: on every switch it installs the loop the target greenlet is running (or none).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from asyncio import events
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import Any, TypeVar

T = TypeVar("T")

_idle: list[asyncio.AbstractEventLoop] = []
_idle_lock = threading.Lock()
# greenlet -> the loop it is running, while it runs one (only used under gevent).
_running: dict[Any, asyncio.AbstractEventLoop] = {}
_tracing = False


def gevent_patched() -> bool:
    """True in a process whose ``threading`` gevent has monkey-patched (gunicorn -k gevent)."""
    try:
        from gevent import monkey  # type: ignore[import-untyped]  # no stubs published
    except ImportError:
        return False
    return bool(monkey.is_module_patched("threading"))


def _borrow() -> asyncio.AbstractEventLoop:
    with _idle_lock:
        while _idle:
            loop = _idle.pop()
            if not loop.is_closed():
                return loop
    return asyncio.new_event_loop()


def _give_back(loop: asyncio.AbstractEventLoop) -> None:
    with _idle_lock:
        _idle.append(loop)


def _install_tracer() -> None:
    """Make asyncio's running-loop marker follow greenlet switches (once per process)."""
    global _tracing
    if _tracing:
        return
    import greenlet  # type: ignore[import-untyped]  # no stubs published

    previous = greenlet.settrace(None)

    def trace(event: str, args: Any) -> None:
        if event in ("switch", "throw"):
            events._set_running_loop(_running.get(args[1]))
        if previous is not None:
            previous(event, args)

    greenlet.settrace(trace)
    _tracing = True


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def to_sync(func: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """A plain callable that runs ``func`` to completion on a borrowed loop.

    Exceptions raised by the coroutine propagate unchanged, so the error handlers turn
    them into problem documents exactly as for ``def`` views. The caller's context
    (Flask's request and app contexts are context variables) is the coroutine's.
    """

    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> T:
        if _in_running_loop():
            # Sync code called from a coroutine, calling async code again: this loop is
            # busy, so the inner coroutine runs on a thread of its own (asgiref refuses).
            context = contextvars.copy_context()
            with ThreadPoolExecutor(max_workers=1) as pool:
                return pool.submit(context.run, asyncio.run, func(*args, **kwargs)).result()
        gevent = gevent_patched()
        if gevent:
            _install_tracer()
        loop = _borrow()
        me = _current_greenlet() if gevent else None
        if me is not None:
            _running[me] = loop
        try:
            # A bare run_until_complete: asyncio.Runner.run costs several times more per
            # call (signal handling and checks meant for a whole program).
            task = loop.create_task(func(*args, **kwargs), context=contextvars.copy_context())
            return loop.run_until_complete(task)
        finally:
            if me is not None:
                _running.pop(me, None)
            _give_back(loop)

    return run


def _current_greenlet() -> Any:
    import greenlet  # type: ignore[import-untyped]  # no stubs published

    return greenlet.getcurrent()


def offload(func: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound C code (password hashing) where it does not stall other requests.

    Under gevent every request of the process shares one OS thread: a 0.1-1 s Argon2 hash
    would freeze all of them. The hub's pool of native threads runs it instead (Argon2
    releases the GIL); elsewhere it is a plain call.
    """
    if not gevent_patched():
        return func(*args)
    from gevent import get_hub  # type: ignore[import-untyped]

    return get_hub().threadpool.apply(func, args)


def cooperate() -> None:
    """Between the batches of a long response: let the other requests of the process run.

    A gevent greenlet only yields when it would block; one streaming a large CSV to a fast
    client never does. ``time.sleep(0)`` is gevent's yield when patched, and nearly free
    otherwise.
    """
    time.sleep(0)
