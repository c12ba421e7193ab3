"""Signals the services send after a commit; the cache and the job-state store listen.

Flask's own signal library (blinker): a write announces itself once, and every part that
must follow it subscribes, instead of the services calling the cache.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent with ``store_id=`` after a committed change to a store or its items.
store_changed = _signals.signal("store-changed")

#: Sent with ``job_ids=`` (a tuple) after every commit that changes (or deletes) jobs.
job_changed = _signals.signal("job-changed")
