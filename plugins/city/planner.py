"""Choosing and routing a day's bins from the kernel's picture of the city.

The :class:`Planner` is Kernos's dynamic policy (:class:`~kernos.plugins.routing.policies.
DynamicPolicy`: a per-bin level estimate with the forecast as prior, overflow risk, must-go
above ``theta``, prize-collecting routing) fed with what the kernel knows: the latest
forwarded reading of each bin on the board. A reading counts once, at the first plan after it
arrived, and only if it is newer than the bin's last pickup; one taken yesterday before waste
stopped arriving is moved forward by the forecast's share of yesterday's fill still to come.
Bins without a fresh reading keep the forecast. It plans each day once: asked again for a day
(a step re-run after a crash), it returns the same plan.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kernos.kernel.errors import InvalidInput
from kernos.plugins.routing.policies import DynamicPolicy, Observation
from kernos.plugins.routing.tools import PlanResult

if TYPE_CHECKING:
    from kernos.plugins.routing.experiment import Setup

DAY_S = 86_400.0
MIN_VALUE = 0.3
"""Least value (share of a full bin's prize) of an optional bin offered to the solver. The
routing policy's own default is 0.05; 0.3 cut the solve time of a 180-day run by about 65 %
for 0.8 % more route km and about the same overflow (seed 1), which keeps ``kernos demo
waste`` within its time budget."""


class Planner:
    """Kernos's policy on board readings, one plan per day (see the module doc)."""

    def __init__(
        self, setup: Setup, *, theta: float, prize_m: float, min_value: float = MIN_VALUE
    ) -> None:
        """Plan for ``setup``'s city with risk threshold ``theta``, prize ``prize_m``, offering
        the solver optional bins worth at least ``min_value`` of a full one."""
        self.setup = setup
        self.theta = theta
        self.policy = DynamicPolicy(
            setup.model,
            setup.router,
            theta=theta,
            noise_sigma=setup.params.noise_sigma,
            prize_m=prize_m,
            min_value=min_value,
        )
        n = setup.city.n_bins
        # The kernel starts knowing nothing of the bins: uniform on [0, 1] until readings come.
        self.policy.mean = np.full(n, 0.5)
        self.policy.var = np.full(n, 1.0 / 12.0)
        self.n_bins = n
        self._plans: dict[int, dict[str, Any]] = {}
        self._planned_ts = -np.inf
        self._pickup_ts = np.full(n, -np.inf)
        self._fill = np.zeros(n)
        self._lock = threading.Lock()

    def picked_up(self, bins: Sequence[int], ts: Sequence[float]) -> None:
        """Tell the planner when bins were emptied (readings before that are stale)."""
        with self._lock:
            for b, t in zip(bins, ts, strict=True):
                self._pickup_ts[b] = max(self._pickup_ts[b], t)

    def observation(
        self, day: int, bins: Sequence[int], levels: Sequence[float], ts: Sequence[float]
    ) -> Observation:
        """The fresh board readings as the policy's observation at ``day``'s shift start."""
        n = self.n_bins
        level = np.full(n, np.nan)
        count = np.zeros(n, dtype=np.int64)
        router = self.setup.router
        for b, z, t in zip(bins, levels, ts, strict=True):
            if not 0 <= b < n:
                raise InvalidInput(f"bin ids must be within 0..{n - 1}, got {b}")
            if t <= self._planned_ts or t <= self._pickup_ts[b]:
                continue
            seen_day, hour = divmod(t / 3600.0, 24.0)
            if int(seen_day) < day:  # yesterday: add the fill still to come after it
                z = z + router.left_after(hour) * self._fill[b]
            level[b] = z
            count[b] = 1
        return Observation(day=day, level=level, count=count)

    def plan(
        self,
        *,
        day: int,
        bins: Sequence[int],
        levels: Sequence[float],
        ts: Sequence[float],
        must: Sequence[int] = (),
        exclude: Sequence[int] = (),
    ) -> dict[str, Any]:
        """The day's routes (a ``routing_plan`` result); the same one when asked again."""
        with self._lock:
            done = self._plans.get(day)
            if done is not None:
                return done
            if self._plans and day <= max(self._plans):
                raise InvalidInput(f"day {day} is before the last day planned")
            obs = self.observation(day, bins, levels, ts)
            policy = self.policy
            policy._update(obs)  # the Kalman step of DynamicPolicy.plan
            level, risks = policy.risks(day)
            must_go = risks[0] > self.theta
            must_go[list(must)] = True
            excluded = np.zeros(self.n_bins, dtype=bool)
            excluded[list(exclude)] = True
            must_go &= ~excluded
            value = np.maximum(risks[-1], policy.fill_value(level))
            value[excluded] = 0.0
            plan = policy.select_bins(level, value, must_go)
            # the policy's state moves to tomorrow's shift start, as if the plan ran
            self._fill = policy._today[0].copy() if policy._today is not None else self._fill
            policy.collected(obs, plan)
            self._planned_ts = day * DAY_S + self.setup.params.shift_start_h * 3600.0
            result = PlanResult.from_plan(plan, must_go).model_dump()
            self._plans[day] = result
            for old in [d for d in self._plans if d < day - 7]:
                del self._plans[old]
            return result


__all__ = ["MIN_VALUE", "Planner"]
