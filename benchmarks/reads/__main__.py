"""``python -m benchmarks.reads [--quick]``: see ``benchmarks/reads/run.py``."""

from benchmarks.reads.run import main

raise SystemExit(main())
