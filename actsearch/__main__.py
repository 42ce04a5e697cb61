from actsearch.cli import main

raise SystemExit(main())
