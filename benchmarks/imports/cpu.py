"""CPU seconds spent while a block runs (what limits a run)."""

from __future__ import annotations

import contextlib

import psutil


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` so far (0 once it is gone)."""
    with contextlib.suppress(psutil.Error):
        times = proc.cpu_times()
        return times.user + times.system
    return 0.0


def pool_cpu_seconds(main: psutil.Process) -> float:
    """CPU seconds of ``main``'s pool processes: the live ones, plus those it reaped (a
    pool process replaced after a large task counts in its parent once reaped)."""
    with contextlib.suppress(psutil.Error):
        times = main.cpu_times()
        reaped = times.children_user + times.children_system
        return reaped + sum(cpu_seconds(child) for child in main.children())
    return 0.0


class MachineCpu:
    """Busy CPU seconds of the whole machine over the block, all cores summed: the
    database server's processes included, even those that come and go (a ``psql``
    connection's backend)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "softirq", 0.0)

    def __enter__(self) -> MachineCpu:
        self._before = self._busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = self._busy() - self._before
