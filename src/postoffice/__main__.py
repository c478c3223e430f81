"""`python -m postoffice` is the `postoffice` command."""

from postoffice.cli.main import main

raise SystemExit(main())
