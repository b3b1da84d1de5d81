"""The SENSOR SIDE of the simulated city of waste bins: no real bin is measured here.

:mod:`.params` pins every parameter of the simulated city (the table in ``docs/demo.md``),
:mod:`.city` lays out the bins and the depot, :mod:`.sim` runs the true fill process with
common random numbers, and :mod:`.readings` turns true levels into noisy, sometimes missing
sensor readings on the :data:`TOPIC` topic. It lives in ``kernos-edge`` so that the edge
agent's ``--source sim`` runs on a device without the kernel; the kernel side re-exports it
as ``kernos.plugins.sensors``.

Importing this package is light: numpy is imported by the simulator modules, not here.
"""

from __future__ import annotations

TOPIC = "sensor.bin.fill"
"""The event topic a bin's fill reading is published on."""

__all__ = ["TOPIC"]
