"""The ``routing`` plugin: fill forecasts, OR-Tools routing and collection policies.

For the SIMULATED city of :mod:`kernos.plugins.sensors`. :mod:`.forecast` learns per-bin
fill rates from history and predicts level distributions; :mod:`.vrp` solves a day's
prize-collecting, capacitated routing with OR-Tools (bounded by solution counts, so runs
reproduce); :mod:`.policies` holds the tuned static baseline, the dynamic (Kernos) policy and
the brackets; :mod:`.experiment` compares them with common random numbers; :mod:`.plugin`
registers the governed tools ``routing_forecast`` and ``routing_plan``.

Importing this package is light: numpy and OR-Tools load in the modules that use them.
"""

from __future__ import annotations
