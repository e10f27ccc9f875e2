"""Device simulators: realistic gauge, snowplow and watch-tag streams over the real protocols.

`python -m tests.simulate <flood|plows|tags> [options]`; see tests.simulate.cli.
"""

from tests.simulate.cli import main, simulate

__all__ = ["main", "simulate"]
