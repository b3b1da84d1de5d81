"""The ``sensors`` plugin: a SIMULATED city of waste bins with fill-level sensors.

Nothing here measures a real bin. The simulator itself lives in the edge distribution
(:mod:`kernos.edge.sim`, so that ``kernos-edge --source sim`` runs without the kernel); the
modules of this package re-export it for the kernel side under their old names —
:mod:`.params`, :mod:`.city`, :mod:`.sim`, :mod:`.readings` — and :mod:`.readings` turns the
edge's own input errors into the kernel's ``InvalidInput``.

Importing this package is light: numpy is imported by the simulator modules, not here.
"""

from __future__ import annotations

from kernos.edge.sim import TOPIC

__all__ = ["TOPIC"]
