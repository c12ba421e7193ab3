"""Run ``async def`` views on a long-lived event loop per thread.

Flask's stock ``async_to_sync`` (asgiref) starts a new event loop in a new thread for
every call: about a third of a ``def`` view's throughput under gunicorn gthread. A
gthread worker's threads live as long as the worker, so each keeps one event loop and
reuses it for every request it serves.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, created on first use and kept for the thread's lifetime."""
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


def to_sync(func: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """A plain callable that runs ``func`` to completion on this thread's loop.

    Exceptions raised by the coroutine propagate unchanged, so the error handlers turn
    them into problem documents exactly as for ``def`` views.
    """

    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> T:
        if asyncio._get_running_loop() is not None:
            # Called from inside a coroutine on this thread (sync code, called by an async
            # view, calling async code again): this loop is busy, so run it on another
            # thread's loop (stock asgiref refuses this case outright).
            context = contextvars.copy_context()
            with ThreadPoolExecutor(max_workers=1) as pool:
                return pool.submit(context.run, asyncio.run, func(*args, **kwargs)).result()
        # The caller's context (Flask's request and app contexts are context variables) is
        # the one the coroutine sees. A bare run_until_complete: asyncio.Runner.run costs
        # several times more per call (signal handling and checks meant for a whole program).
        loop = thread_loop()
        task = loop.create_task(func(*args, **kwargs), context=contextvars.copy_context())
        return loop.run_until_complete(task)

    return run
