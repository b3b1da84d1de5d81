"""The gateway to the trucks: a :class:`Fleet` executes a day's routes.

The demo's fleet is :class:`SimulatedFleet`: it empties the simulated city's bins at the hours
the routes reach them. Every dispatch carries the syscall's idempotency key, and a fleet must
execute a key once only: a replayed dispatch (a step run again after a crash) gets the first
receipt back and empties nothing twice.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kernos.kernel.errors import InvalidInput

if TYPE_CHECKING:
    from kernos.plugins.sensors.sim import Simulation


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteOrder:
    """One truck load's route, as planned."""

    truck: int
    load: int
    bins: tuple[int, ...]
    arrival_h: tuple[float, ...]
    """Hour of day each bin is reached, same order."""
    km: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchOrder:
    """What to execute: the day's routes, or a hazardous pickup of some bins."""

    day: int
    routes: tuple[RouteOrder, ...] = ()
    hazard: bool = False
    bins_hazardous: tuple[int, ...] = ()
    """Bins to empty by the hazardous-waste crew (``hazard`` orders only)."""
    hour: float = 7.0
    """Hour of day the order is given (hazardous pickups leave then)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchReceipt:
    """What a fleet did for one order."""

    key: str
    day: int
    hazard: bool
    emptied: tuple[int, ...]
    hours: tuple[float, ...]
    km: float
    fill: tuple[float, ...] = field(default=())
    """Level each bin held when emptied (fraction of capacity)."""
    replayed: bool = False
    """True when the key had been executed before (nothing was done this time)."""


class Fleet(ABC):
    """Executes dispatch orders, once per idempotency key."""

    @abstractmethod
    def dispatch(self, order: DispatchOrder, *, key: str) -> DispatchReceipt:
        """Execute ``order`` unless ``key`` was executed already (then return that receipt
        with ``replayed=True``). Raises ``InvalidInput`` for an order it cannot execute."""


class SimulatedFleet(Fleet):
    """Trucks of the simulated city: emptying a bin empties it in the :class:`Simulation`.

    Hazardous pickups go by a separate crew from the depot and back (its km counted), leaving
    at the order's hour. Thread-safe (tools may run on worker threads).
    """

    def __init__(self, sim: Simulation, *, speed_kmh: float) -> None:
        """Dispatch into ``sim``; ``speed_kmh`` times the hazardous crew's trips."""
        self.sim = sim
        self.speed_kmh = speed_kmh
        self.receipts: dict[str, DispatchReceipt] = {}
        """Every executed order by key, in execution order."""
        self._lock = threading.Lock()

    def dispatch(self, order: DispatchOrder, *, key: str) -> DispatchReceipt:
        """See :meth:`Fleet.dispatch`."""
        with self._lock:
            done = self.receipts.get(key)
            if done is not None:
                return DispatchReceipt(
                    key=done.key,
                    day=done.day,
                    hazard=done.hazard,
                    emptied=done.emptied,
                    hours=done.hours,
                    km=done.km,
                    fill=done.fill,
                    replayed=True,
                )
            if order.day != self.sim.day:
                raise InvalidInput(
                    f"the fleet is on day {self.sim.day}; an order for day {order.day} is too "
                    "late or too early"
                )
            receipt = self._hazardous(order, key) if order.hazard else self._routes(order, key)
            self.receipts[key] = receipt
            return receipt

    def _routes(self, order: DispatchOrder, key: str) -> DispatchReceipt:
        bins = [b for r in order.routes for b in r.bins]
        hours = [min(max(h, 0.0), 24.0) for r in order.routes for h in r.arrival_h]
        if len(set(bins)) != len(bins):
            raise InvalidInput("a bin appears twice in the day's routes")
        fill = self.sim.empty(bins, hour=hours).tolist() if bins else []
        return DispatchReceipt(
            key=key,
            day=order.day,
            hazard=False,
            emptied=tuple(bins),
            hours=tuple(hours),
            km=round(sum(r.km for r in order.routes), 3),
            fill=tuple(fill),
        )

    def _hazardous(self, order: DispatchOrder, key: str) -> DispatchReceipt:
        import numpy as np

        city = self.sim.city
        bins = list(order.bins_hazardous)
        if not bins:
            raise InvalidInput("a hazardous dispatch names the bins to empty")
        # one round trip from the depot per bin (dist_km: node 0 is the depot)
        legs = np.asarray([city.dist_km[0, b + 1] for b in bins], dtype=np.float64)
        hours = np.minimum(order.hour + legs / self.speed_kmh, 24.0)
        fill = self.sim.empty(bins, hour=hours).tolist()
        return DispatchReceipt(
            key=key,
            day=order.day,
            hazard=True,
            emptied=tuple(bins),
            hours=tuple(round(float(h), 3) for h in hours.tolist()),
            km=round(float(2.0 * legs.sum()), 3),
            fill=tuple(fill),
        )


__all__ = ["DispatchOrder", "DispatchReceipt", "Fleet", "RouteOrder", "SimulatedFleet"]
