"""OR-Tools routing of the simulated city: capacity, shift, determinism, prizes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kernos.kernel.errors import InvalidInput
from kernos.plugins.routing.vrp import Fleet, SearchLimits, distance_matrix_m, solve
from kernos.plugins.sensors.city import City
from kernos.plugins.sensors.params import CityParams

PARAMS = CityParams()
CITY = City.generate(PARAMS, 1)
DIST = distance_matrix_m(CITY.dist_km)
FLEET = Fleet.from_params(PARAMS)


def small_fleet(**changes: int) -> Fleet:
    base = {
        "n_trucks": 2,
        "loads_per_day": 2,
        "capacity_l": 3_000,
        "work_s": 3 * 3600,
        "service_s": 180,
    }
    base.update(changes)
    return Fleet(
        speed_m_per_s=FLEET.speed_m_per_s,
        shift_start_h=FLEET.shift_start_h,
        break_s=FLEET.break_s,
        **base,
    )


def test_fleet_from_the_pinned_parameters() -> None:
    assert FLEET.n_trucks == 6 and FLEET.loads_per_day == 2
    assert FLEET.capacity_l == int(PARAMS.truck_capacity_loose_m3 * 1000) == 77_777
    assert FLEET.work_s == (7.5 * 60 - 45) * 60
    assert FLEET.service_s == 180


def test_routes_respect_capacity_loads_and_shift() -> None:
    fleet = small_fleet()
    bins = list(range(0, 40))
    demand = [700.0] * len(bins)  # 28,000 L against 2 trucks x 2 loads x 3,000 L: must drop
    plan = solve(DIST, bins, demand_l=demand, penalty_m=[50_000.0] * len(bins), fleet=fleet)
    assert plan.routes
    for route in plan.routes:
        assert route.litres <= fleet.capacity_l
        assert len(route.bins) * 700 <= fleet.capacity_l
        assert all(h >= fleet.shift_start_h for h in route.arrival_h)
        assert list(route.arrival_h) == sorted(route.arrival_h)
    end_h = fleet.hour_of(fleet.work_s)
    assert max(h for r in plan.routes for h in r.arrival_h) <= end_h
    # a truck's second load starts after its first is back
    for truck in range(fleet.n_trucks):
        loads = sorted((r for r in plan.routes if r.truck == truck), key=lambda r: r.load)
        for first, second in itertools.pairwise(loads):
            assert second.arrival_h[0] > first.arrival_h[-1]
    assert len(plan.visited) <= fleet.n_trucks * fleet.loads_per_day * 4
    assert len(plan.dropped) == len(bins) - len(plan.visited) > 0
    assert set(plan.visited) | set(plan.dropped) == set(bins)


def test_same_input_same_routes() -> None:
    rng = np.random.default_rng(3)
    bins = rng.choice(CITY.n_bins, 60, replace=False).tolist()
    demand = (CITY.volume_l[bins] * 0.8).tolist()
    penalty: list[float | None] = [None if i % 3 else 2_000.0 for i in range(len(bins))]
    first = solve(DIST, bins, demand_l=demand, penalty_m=penalty, fleet=FLEET)
    second = solve(DIST, bins, demand_l=demand, penalty_m=penalty, fleet=FLEET)
    assert first == second
    assert first.km > 0


def test_must_visit_bins_are_visited_and_worthless_optional_ones_dropped() -> None:
    rng = np.random.default_rng(4)
    bins = rng.choice(CITY.n_bins, 50, replace=False).tolist()
    must, optional = bins[:25], bins[25:]
    demand = [100.0] * len(bins)
    penalty: list[float | None] = [None] * 25 + [1.0] * 25
    plan = solve(DIST, bins, demand_l=demand, penalty_m=penalty, fleet=FLEET)
    assert set(must) <= set(plan.visited)
    assert not plan.dropped_must
    # a 1 m prize pays for no detour: only bins (nearly) on the way stay in
    assert len(set(optional) & set(plan.visited)) <= 5
    # with a prize worth any detour they are all taken
    rich: list[float | None] = [None] * 25 + [100_000.0] * 25
    plan = solve(DIST, bins, demand_l=demand, penalty_m=rich, fleet=FLEET)
    assert set(plan.visited) == set(bins)


def test_prize_collecting_trades_km_for_bins() -> None:
    rng = np.random.default_rng(5)
    bins = rng.choice(CITY.n_bins, 80, replace=False).tolist()
    demand = [100.0] * len(bins)
    cheap = solve(DIST, bins, demand_l=demand, penalty_m=[300.0] * 80, fleet=FLEET)
    dear = solve(DIST, bins, demand_l=demand, penalty_m=[3_000.0] * 80, fleet=FLEET)
    assert len(cheap.visited) < len(dear.visited)
    assert cheap.km < dear.km


def test_a_must_visit_that_cannot_fit_is_reported() -> None:
    fleet = small_fleet(n_trucks=1, loads_per_day=1, work_s=600)  # ten minutes
    bins = list(range(10))
    plan = solve(DIST, bins, demand_l=[10.0] * 10, penalty_m=[None] * 10, fleet=fleet)
    assert plan.dropped_must
    assert set(plan.dropped_must) | set(plan.visited) == set(bins)


def test_stops_are_in_time_order_for_the_simulation() -> None:
    bins = list(range(30))
    plan = solve(DIST, bins, demand_l=[100.0] * 30, penalty_m=[None] * 30, fleet=FLEET)
    order, hours = plan.stops()
    assert sorted(order.tolist()) == bins
    assert np.all(np.diff(hours) >= 0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match="same length"):
        solve(DIST, [1, 2], demand_l=[1.0], penalty_m=[None, None], fleet=FLEET)
    with pytest.raises(InvalidInput, match="only once"):
        solve(DIST, [1, 1], demand_l=[1.0, 1.0], penalty_m=[None, None], fleet=FLEET)
    with pytest.raises(InvalidInput, match="within"):
        solve(DIST, [CITY.n_bins], demand_l=[1.0], penalty_m=[None], fleet=FLEET)
    with pytest.raises(InvalidInput, match="solution_limit"):
        solve(
            DIST,
            [1],
            demand_l=[1.0],
            penalty_m=[None],
            fleet=FLEET,
            limits=SearchLimits(solution_limit=0),
        )
    assert solve(DIST, [], demand_l=[], penalty_m=[], fleet=FLEET).km == 0.0
