"""`python -m adapters.simulate`: run a simulator scenario."""

from adapters.simulate.cli import main

raise SystemExit(main())
