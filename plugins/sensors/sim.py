"""Re-exports :mod:`kernos.edge.sim.sim` (the true fill process, common random numbers).

Bad arguments raise :class:`kernos.edge.errors.EdgeInputError` (a ``ValueError``).
"""

from __future__ import annotations

from kernos.edge.sim.sim import (
    DEFAULT_DAYS,
    STREAM_EVENTS,
    STREAM_FILL,
    STREAM_HAZARD,
    BoolArray,
    DayRecord,
    FillProcess,
    FloatArray,
    IntArray,
    Simulation,
    season_factor,
    weekday_of,
)

__all__ = [
    "DEFAULT_DAYS",
    "STREAM_EVENTS",
    "STREAM_FILL",
    "STREAM_HAZARD",
    "BoolArray",
    "DayRecord",
    "FillProcess",
    "FloatArray",
    "IntArray",
    "Simulation",
    "season_factor",
    "weekday_of",
]
