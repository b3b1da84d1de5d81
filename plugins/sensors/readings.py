"""The sensor model and reading checks of :mod:`kernos.edge.sim.readings`, for the kernel.

Everything is re-exported unchanged except :func:`validate_reading`, which raises the kernel's
``InvalidInput`` (problem JSON 422, CLI exit 2) where the edge's raises ``EdgeInputError``.
"""

from __future__ import annotations

from typing import Any

from kernos.edge.errors import EdgeInputError
from kernos.edge.sim import TOPIC
from kernos.edge.sim import readings as _edge
from kernos.edge.sim.readings import (
    FIELDS,
    LEVEL_RANGE,
    OPTIONAL_FIELDS,
    STREAM_DEAD,
    STREAM_NOISE,
    TEMP_RANGE,
    VOC_RANGE,
    Reading,
    ReadingBatch,
    SensorModel,
    reading_problems,
)
from kernos.kernel.errors import InvalidInput

__all__ = [
    "FIELDS",
    "LEVEL_RANGE",
    "OPTIONAL_FIELDS",
    "STREAM_DEAD",
    "STREAM_NOISE",
    "TEMP_RANGE",
    "TOPIC",
    "VOC_RANGE",
    "Reading",
    "ReadingBatch",
    "SensorModel",
    "reading_problems",
    "validate_reading",
]


def validate_reading(obj: Any, *, n_bins: int | None = None) -> Reading:
    """``obj`` as a :class:`Reading`; ``InvalidInput`` listing every problem otherwise."""
    try:
        return _edge.validate_reading(obj, n_bins=n_bins)
    except EdgeInputError as exc:
        raise InvalidInput(str(exc)) from None
