"""Whether this process has been told to stop (gunicorn's SIGTERM), for long waits.

Event streams and long polls can last many seconds; on a redeploy they answer at once
instead of holding the worker until its graceful timeout, and clients reconnect to the
new process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_stopping = threading.Event()
_on_stop: list[Callable[[], None]] = []


def watch(alive: Callable[[], bool], interval: float = 0.5) -> None:
    """Stop once ``alive()`` turns false (gunicorn.conf.py passes its worker's state)."""

    def run() -> None:
        while alive():
            time.sleep(interval)
        stop()

    threading.Thread(target=run, name="lifecycle", daemon=True).start()


def on_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the process is told to stop (wakes every waiter)."""
    _on_stop.append(callback)


def stop() -> None:
    _stopping.set()
    for callback in list(_on_stop):
        callback()


def stopping() -> bool:
    return _stopping.is_set()
