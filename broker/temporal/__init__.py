"""The temporal side of the broker: history rows, temporal queries, their rendering, retention."""
