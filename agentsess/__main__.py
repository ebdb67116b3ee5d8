from agentsess.cli.entry import main

raise SystemExit(main())
