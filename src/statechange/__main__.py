from statechange.cli import main

raise SystemExit(main())
