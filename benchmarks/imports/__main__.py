from benchmarks.imports.run import main

raise SystemExit(main())
