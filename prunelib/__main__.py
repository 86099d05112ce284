from prunelib.cli import main

raise SystemExit(main())
