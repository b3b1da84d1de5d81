"""Re-exports :mod:`kernos.edge.sim.params` (the simulated city's pinned parameters).

Invalid parameters raise :class:`kernos.edge.errors.EdgeConfigError` (a ``ValueError``).
"""

from __future__ import annotations

from kernos.edge.sim.params import WEEKDAYS, BinClass, CityParams

__all__ = ["WEEKDAYS", "BinClass", "CityParams"]
