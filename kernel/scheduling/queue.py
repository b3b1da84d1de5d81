"""The wait queue of one backend: priority bands with aging, then fair share.

The order, applied each time a slot frees:

1. **Band.** A waiter's effective priority is ``priority + aging_per_second * seconds waited``
   (on the kernel clock, counted from when its call first asked for a slot). The next waiter
   comes from the highest *band* — the effective priority rounded down — that any waiter
   reaches. A low-priority waiter therefore climbs one band every ``1 / aging_per_second``
   seconds until it reaches the band that high-priority traffic is served in: nothing starves.
2. **Tenant.** Among the tenants with a waiter in that band, the one with the least virtual
   time goes first. A tenant's virtual time counts the requests dispatched to it on this
   backend; a tenant that starts waiting joins at the virtual time of the last tenant served,
   so idling earns no credit and a flooding tenant cannot crowd out a quiet one.
3. **Process.** Within that tenant, the same rule across its processes (``pid``).
4. **Waiter.** Within that process, the waiter with the highest effective priority.

Ties at every level go to whoever has waited longest (arrival order). Because aging is linear
and the same for everyone, effective priorities keep their order over time, so each waiter's
static key ``priority - aging_per_second * since`` ranks it without recomputation.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from dataclasses import dataclass, field

_EPSILON = 1e-9


@dataclass(eq=False, slots=True, kw_only=True)
class Waiter:
    """One caller waiting for a slot; its future resolves when a slot is handed to it."""

    priority: int
    tenant: str
    pid: int | None
    since: float
    """Clock time its call first asked for a slot (aging counts from here)."""
    future: asyncio.Future[None]
    key: float = 0.0
    seq: int = 0


@dataclass(slots=True)
class _Process:
    vtime: float
    heap: list[tuple[float, int, Waiter]] = field(default_factory=list)


@dataclass(slots=True)
class _Tenant:
    vtime: float
    last_served: float = 0.0
    processes: dict[int | None, _Process] = field(default_factory=dict)
    size: int = 0


class FairQueue:
    """Waiters of one backend in the order documented in this module."""

    def __init__(self, *, aging_per_second: float) -> None:
        if aging_per_second < 0:
            raise ValueError("aging_per_second must not be negative")
        self._aging = aging_per_second
        self._tenants: dict[str, _Tenant] = {}
        self._last_served = 0.0  # virtual time of the tenant served last
        self._size = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return self._size

    def push(self, waiter: Waiter) -> None:
        """Add a waiter."""
        waiter.key = waiter.priority - self._aging * waiter.since
        waiter.seq = next(self._seq)
        tenant = self._tenants.get(waiter.tenant)
        if tenant is None:
            tenant = self._tenants[waiter.tenant] = _Tenant(vtime=self._last_served)
        process = tenant.processes.get(waiter.pid)
        if process is None:
            process = tenant.processes[waiter.pid] = _Process(vtime=tenant.last_served)
        heapq.heappush(process.heap, (-waiter.key, waiter.seq, waiter))
        tenant.size += 1
        self._size += 1

    def remove(self, waiter: Waiter) -> bool:
        """Take a waiter out (its caller gave up); False if it is no longer queued."""
        tenant = self._tenants.get(waiter.tenant)
        process = tenant.processes.get(waiter.pid) if tenant is not None else None
        if tenant is None or process is None:
            return False
        for index, entry in enumerate(process.heap):
            if entry[2] is waiter:
                process.heap[index] = process.heap[-1]
                process.heap.pop()
                heapq.heapify(process.heap)
                self._shrink(waiter, tenant, process)
                return True
        return False

    def _shrink(self, waiter: Waiter, tenant: _Tenant, process: _Process) -> None:
        tenant.size -= 1
        self._size -= 1
        if not process.heap:
            del tenant.processes[waiter.pid]
        if tenant.size == 0:
            del self._tenants[waiter.tenant]

    def pop(self, now: float) -> Waiter | None:
        """Remove and return the next waiter at clock time ``now``, or ``None`` if empty."""
        if not self._size:
            return None
        shift = self._aging * now
        # The top band is the best effective priority any process's head waiter reaches.
        top = max(
            -process.heap[0][0]
            for tenant in self._tenants.values()
            for process in tenant.processes.values()
        )
        band = math.floor(top + shift + _EPSILON)
        floor_key = band - shift - _EPSILON  # a waiter is in the band when its key ≥ this

        best: tuple[float, int, _Tenant, _Process] | None = None
        for tenant in self._tenants.values():
            chosen: tuple[float, int, _Process] | None = None
            for process in tenant.processes.values():
                neg_key, seq, _ = process.heap[0]
                if -neg_key < floor_key:
                    continue
                candidate = (process.vtime, seq, process)
                if chosen is None or candidate[:2] < chosen[:2]:
                    chosen = candidate
            if chosen is None:
                continue
            ranked = (tenant.vtime, chosen[1], tenant, chosen[2])
            if best is None or ranked[:2] < best[:2]:
                best = ranked
        assert best is not None  # the top waiter is always in its own band
        _, _, tenant, process = best
        _, _, waiter = heapq.heappop(process.heap)
        self._last_served = tenant.vtime
        tenant.vtime += 1
        tenant.last_served = process.vtime
        process.vtime += 1
        self._shrink(waiter, tenant, process)
        return waiter

    def drain(self) -> list[Waiter]:
        """Remove and return every waiter (the scheduler is closing)."""
        waiters = [
            entry[2]
            for tenant in self._tenants.values()
            for process in tenant.processes.values()
            for entry in process.heap
        ]
        self._tenants.clear()
        self._size = 0
        return waiters
