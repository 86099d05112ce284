from prunelib.cli.main import main

raise SystemExit(main())
