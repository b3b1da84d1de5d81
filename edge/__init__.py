"""Kernos edge agent: runs next to the sensors, pre-filters their events and forwards them.

The edge agent is its own small distribution (``kernos-edge``) so that it can run on small
devices: it depends on click, numpy and onnxruntime, never on the kernel's stack. The
simulated city's sensors (:mod:`kernos.edge.sim`) feed the pre-filter (:mod:`kernos.edge.filter`,
hazards by :mod:`kernos.edge.hazard`); what it forwards is kept in a durable store-and-forward
buffer (:mod:`kernos.edge.buffer`) until the kernel acknowledges it
(:mod:`kernos.edge.forwarder`); :mod:`kernos.edge.runner` ties them together. Readings can also
come from an MQTT broker (:mod:`kernos.edge.mqtt`, the ``mqtt`` extra: paho-mqtt).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__: str = version("kernos-edge")
except PackageNotFoundError:
    # Running from a source tree that was never installed: say so rather than guess a number.
    __version__ = "0.0.0+unknown"
