"""Re-exports :mod:`kernos.edge.sim.city` (the simulated city's layout)."""

from __future__ import annotations

from kernos.edge.sim.city import STREAM_CITY, City, class_counts

__all__ = ["STREAM_CITY", "City", "class_counts"]
