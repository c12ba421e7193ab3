"""Run ``async def`` views on a long-lived event loop per thread.

Flask's stock ``async_to_sync`` (asgiref) starts a new event loop in a new thread for
every call: about a third of a ``def`` view's throughput under gunicorn gthread. A
gthread worker's threads live as long as the worker, so each keeps one loop (an
``asyncio.Runner``) and reuses it for every request it serves.
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


def thread_runner() -> asyncio.Runner:
    """This thread's runner, created on first use and kept for the thread's lifetime."""
    runner = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner()
    return runner


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
        # The caller's context (Flask's request and app contexts are context variables)
        # must be the one the coroutine sees; Runner would otherwise reuse its first one.
        return thread_runner().run(func(*args, **kwargs), context=contextvars.copy_context())

    return run
