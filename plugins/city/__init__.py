"""The ``city`` plugin: the city-ops scenario on the simulated city, through the real kernel.

:mod:`.board` keeps the kernel's picture of the bins (the latest forwarded reading per bin, read
from the ``sensor.bin.fill`` events); :mod:`.fleet` is the gateway to the trucks (the
simulation's, for the demo); :mod:`.planner` chooses and routes the day's bins;
:mod:`.tools` makes them governed tools (``city_board``, ``city_plan``, ``dispatch_trucks``);
:mod:`.agent` is the dispatcher agent; :mod:`.scenario` installs all of it on a kernel (roles,
the hazard approval rule, the classifier) with a simulated inspector; :mod:`.demo` is
``kernos demo waste``. Importing this package is light: numpy, OR-Tools and LangGraph load in
the modules that use them.
"""

from __future__ import annotations

AGENT = "waste-dispatcher"
"""The dispatcher agent's name."""
DAY_TOPIC = "city.day"
"""Published once per day at shift start (data ``{"day": N}``); triggers the dispatcher."""
HAZARD_RULE = "a, {tenant}, tool:dispatch_trucks, call, hazard == true, inspector, 15m, admin"
"""The approval rule the scenario installs (``{tenant}`` filled in): a hazardous pickup waits
for an inspector, escalating to an admin after 15 minutes."""
DISPATCHER = "dispatcher"
"""The service principal the dispatcher runs as (role ``dispatcher``)."""
INSPECTOR = "inspector"
"""The simulated inspector's principal (role ``inspector``)."""

__all__ = ["AGENT", "DAY_TOPIC", "DISPATCHER", "HAZARD_RULE", "INSPECTOR"]
