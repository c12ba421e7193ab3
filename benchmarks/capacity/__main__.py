"""``python -m benchmarks.capacity [--quick]``: see ``benchmarks/capacity/run.py``."""

from benchmarks.capacity.run import main

raise SystemExit(main())
