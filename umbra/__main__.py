from umbra.cli.main import main

raise SystemExit(main())
