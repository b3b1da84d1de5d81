"""Prize-collecting, capacitated vehicle routing with OR-Tools, bounded by solution counts.

One day's plan for the simulated city: trucks leave the depot (node 0), empty bins and come
back; a truck may tip up to ``loads_per_day`` loads, modelled as that many vehicles per truck
whose routes run one after the other within the shift (load ``l + 1`` starts when load ``l``
is back at the depot). Each candidate bin is either **must-visit** (a disjunction with a
penalty far above any route, so the solver drops one only when capacity or time leave no
choice, and the plan says so) or **optional** with a prize: the penalty the objective pays
for leaving it out, in metres. The solver therefore picks bins and routes together
(CITY-SIM-NOTES, "A fair comparison", 5).

Reproducibility: the search stops on a number of solutions (``solution_limit``), never on
wall time, and OR-Tools' routing search is single-threaded and deterministic, so the same
input gives the same plan on any machine. Distances are integer metres, times integer
seconds, loads integer litres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kernos.kernel.errors import InvalidInput
from kernos.plugins.sensors.params import CityParams

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MUST_PENALTY = 10**9
"""Penalty for dropping a must-visit bin, metres: above any route in a 10x10 km city."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Fleet:
    """Trucks, their capacity and the working day, in the solver's integer units."""

    n_trucks: int
    """Trucks at the depot."""
    loads_per_day: int
    """Loads a truck may tip per day (trips back to the depot)."""
    capacity_l: int
    """Loose bin volume one load holds, litres."""
    work_s: int
    """Working time per truck and day (shift minus breaks), seconds."""
    service_s: int
    """Time to empty one bin, seconds."""
    speed_m_per_s: float
    """Average driving speed, metres per second."""
    shift_start_h: float
    """Hour of day the shift starts."""
    break_s: int
    """Break taken half-way through the working time, seconds (for arrival hours only)."""

    @classmethod
    def from_params(cls, params: CityParams) -> Fleet:
        """The fleet of the simulated city's parameters."""
        return cls(
            n_trucks=params.n_trucks,
            loads_per_day=params.truck_loads_per_day,
            capacity_l=int(params.truck_capacity_loose_m3 * 1000),
            work_s=round((params.shift_h * 60 - params.break_min) * 60),
            service_s=round(params.service_min_per_bin * 60),
            speed_m_per_s=params.speed_kmh / 3.6,
            shift_start_h=params.shift_start_h,
            break_s=round(params.break_min * 60),
        )

    def hour_of(self, seconds: float) -> float:
        """Clock hour of a time ``seconds`` into the working day (break at half-time)."""
        pause = self.break_s if seconds > self.work_s / 2 else 0
        return self.shift_start_h + (seconds + pause) / 3600.0


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchLimits:
    """How long the search runs, counted in solutions so that runs reproduce."""

    solution_limit: int = 2000
    """Solutions the whole search may find (the first solution and each improving move)."""
    guided_local_search: bool = False
    """Go on past the first local minimum with guided local search until ``solution_limit``
    (else greedy descent: stop at the first local minimum, or at the limit)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """One load of one truck: the bins in visiting order and when each is reached."""

    truck: int
    """Truck index."""
    load: int
    """Which of the truck's loads (0 first)."""
    bins: tuple[int, ...]
    """Bin ids in visiting order."""
    arrival_h: tuple[float, ...]
    """Clock hour each bin is reached (service starts), same order."""
    metres: int
    """Length of the route, depot to depot, metres."""
    litres: int
    """Load collected, litres (from the expected demands)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """A day's routes and what they leave out."""

    routes: tuple[Route, ...]
    """Non-empty routes only."""
    dropped: tuple[int, ...]
    """Candidate bins not visited (optional ones the solver judged not worth it)."""
    dropped_must: tuple[int, ...]
    """Must-visit bins the solver could not fit (capacity or shift); normally empty."""
    objective: int
    """Solver objective: metres driven plus penalties of dropped bins."""
    solutions: int = 0
    """Solutions the search went through."""
    visited_order: tuple[int, ...] = field(default=())
    """Every visited bin, route after route."""

    @property
    def km(self) -> float:
        """Total route length, km."""
        return sum(r.metres for r in self.routes) / 1000.0

    @property
    def visited(self) -> tuple[int, ...]:
        """Visited bins, sorted."""
        return tuple(sorted(b for r in self.routes for b in r.bins))

    def stops(self) -> tuple[IntArray, FloatArray]:
        """Visited bins and their arrival hours, in time order (what ``Simulation.empty`` takes)."""
        pairs = sorted(
            (h, b) for r in self.routes for b, h in zip(r.bins, r.arrival_h, strict=True)
        )
        bins = np.array([b for _, b in pairs], dtype=np.int64)
        hours = np.array([h for h, _ in pairs], dtype=np.float64)
        return bins, hours


def distance_matrix_m(dist_km: FloatArray) -> IntArray:
    """Integer metres from a km distance matrix (node 0 the depot)."""
    return np.rint(np.asarray(dist_km, dtype=np.float64) * 1000.0).astype(np.int64)


def solve(
    dist_m: IntArray,
    bins: Sequence[int],
    *,
    demand_l: Sequence[float],
    penalty_m: Sequence[float | None],
    fleet: Fleet,
    limits: SearchLimits | None = None,
) -> Plan:
    """Route the candidate ``bins`` (0-based bin ids; node ``b + 1`` of ``dist_m``).

    ``demand_l[i]`` is the load bin ``bins[i]`` adds (litres) and ``penalty_m[i]`` the cost
    of leaving it out in metres, ``None`` for a must-visit bin. Raises :class:`InvalidInput`
    on inconsistent input. CPU-bound: call it off the event loop.
    """
    from ortools.constraint_solver import (  # type: ignore[import-untyped]
        pywrapcp,
        routing_enums_pb2,
    )

    limits = limits or SearchLimits()
    ids = [int(b) for b in bins]
    if not len(ids) == len(demand_l) == len(penalty_m):
        raise InvalidInput("bins, demand_l and penalty_m must have the same length")
    if len(set(ids)) != len(ids):
        raise InvalidInput("a bin may appear only once among the candidates")
    if ids and (min(ids) < 0 or max(ids) + 1 >= dist_m.shape[0]):
        raise InvalidInput(f"bin ids must be within 0..{dist_m.shape[0] - 2}")
    if limits.solution_limit < 1:
        raise InvalidInput("solution_limit must be at least 1")
    if not ids:
        return Plan(routes=(), dropped=(), dropped_must=(), objective=0)

    nodes = np.array([0] + [b + 1 for b in ids], dtype=np.int64)
    sub = dist_m[np.ix_(nodes, nodes)]
    travel_s = np.rint(sub / fleet.speed_m_per_s).astype(np.int64)
    travel_s[1:, :] += fleet.service_s  # service at the node left
    demands = [0] + [math.ceil(max(d, 0.0)) for d in demand_l]
    # When one load holds every candidate, no route can need a second one: modelling one
    # vehicle per truck is then exact, and the search has half the vehicles to try.
    loads = 1 if sum(demands) <= fleet.capacity_l else fleet.loads_per_day
    n_vehicles = fleet.n_trucks * loads
    manager = pywrapcp.RoutingIndexManager(len(nodes), n_vehicles, 0)
    routing = pywrapcp.RoutingModel(manager)
    # Matrices and vectors registered in C++: no Python callback per arc evaluation.
    dist_list = sub.tolist()
    dist_cb = routing.RegisterTransitMatrix(dist_list)
    routing.SetArcCostEvaluatorOfAllVehicles(dist_cb)
    time_cb = routing.RegisterTransitMatrix(travel_s.tolist())
    # Starts are free (a second load starts when the first is back), and pushed early.
    routing.AddDimension(time_cb, 0, fleet.work_s, False, "time")
    time_dim = routing.GetDimensionOrDie("time")
    for v in range(n_vehicles):
        routing.AddVariableMinimizedByFinalizer(time_dim.CumulVar(routing.Start(v)))
    load_cb = routing.RegisterUnaryTransitVector(demands)
    routing.AddDimensionWithVehicleCapacity(
        load_cb, 0, [fleet.capacity_l] * n_vehicles, True, "load"
    )
    solver = routing.solver()
    for truck in range(fleet.n_trucks):
        for load in range(1, loads):
            v_prev = truck * loads + load - 1
            v = v_prev + 1
            solver.Add(
                time_dim.CumulVar(routing.Start(v)) >= time_dim.CumulVar(routing.End(v_prev))
            )
    for node, pen in enumerate(penalty_m, start=1):
        cost = MUST_PENALTY if pen is None else max(round(pen), 0)
        routing.AddDisjunction([manager.NodeToIndex(node)], cost)

    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = (
        routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION
    )
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
        if limits.guided_local_search
        else routing_enums_pb2.LocalSearchMetaheuristic.GREEDY_DESCENT
    )
    params.solution_limit = limits.solution_limit
    solution = routing.SolveWithParameters(params)
    if solution is None:
        # Every bin has a disjunction, so dropping all is always feasible; this is a bug.
        raise InvalidInput("the routing model has no solution")

    routes: list[Route] = []
    visited: set[int] = set()
    for v in range(n_vehicles):
        index = routing.Start(v)
        stops: list[int] = []
        hours: list[float] = []
        metres = 0
        litres = 0
        while not routing.IsEnd(index):
            nxt = solution.Value(routing.NextVar(index))
            node = manager.IndexToNode(index)
            if node:
                stops.append(ids[node - 1])
                hours.append(fleet.hour_of(solution.Value(time_dim.CumulVar(index))))
                litres += demands[node]
            metres += dist_list[node][manager.IndexToNode(nxt)]
            index = nxt
        if stops:
            visited.update(stops)
            routes.append(
                Route(
                    truck=v // loads,
                    load=v % loads,
                    bins=tuple(stops),
                    arrival_h=tuple(hours),
                    metres=metres,
                    litres=litres,
                )
            )
    dropped = tuple(b for b in ids if b not in visited)
    must = {b for b, p in zip(ids, penalty_m, strict=True) if p is None}
    return Plan(
        routes=tuple(routes),
        dropped=tuple(b for b in dropped if b not in must),
        dropped_must=tuple(b for b in dropped if b in must),
        objective=int(solution.ObjectiveValue()),
        solutions=int(routing.solver().Solutions()),
        visited_order=tuple(b for r in routes for b in r.bins),
    )
