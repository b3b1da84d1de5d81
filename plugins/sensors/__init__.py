"""The ``sensors`` plugin: a SIMULATED city of waste bins with fill-level sensors.

Nothing here measures a real bin. :mod:`.params` pins every parameter of the simulated city
(the table in ``docs/demo.md``), :mod:`.city` lays out the bins and the depot, :mod:`.sim`
runs the true fill process with common random numbers, and :mod:`.readings` turns true levels
into noisy, sometimes missing sensor readings on the ``sensor.bin.fill`` topic.

Importing this package is light: numpy is imported by the simulator modules, not here.
"""

from __future__ import annotations

TOPIC = "sensor.bin.fill"
"""The event topic a bin's fill reading is published on."""

__all__ = ["TOPIC"]
