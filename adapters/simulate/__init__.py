"""Device simulators: realistic gauge, snowplow and watch-tag streams over the real protocols.

`python -m adapters.simulate <flood|plows|tags> [options]`; see adapters.simulate.cli.
"""

from adapters.simulate.cli import main, simulate

__all__ = ["main", "simulate"]
