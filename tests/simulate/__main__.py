"""`python -m tests.simulate`: run a simulator scenario."""

from tests.simulate.cli import main

raise SystemExit(main())
