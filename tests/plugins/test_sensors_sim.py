"""The true fill process: deterministic per seed, common random numbers across policies, fill
statistics that match the pinned parameters, overflow accounting and hazardous incidents."""

from __future__ import annotations

import numpy as np
import pytest

from kernos.edge.errors import EdgeInputError
from kernos.plugins.sensors.city import City
from kernos.plugins.sensors.params import CityParams
from kernos.plugins.sensors.sim import Simulation, season_factor

P = CityParams()
DAYS = 180


@pytest.fixture(scope="module")
def city() -> City:
    return City.generate(P, 11)


def run_policy(city: City, seed: int, threshold: float, *, days: int = DAYS) -> Simulation:
    """Empty every bin above ``threshold`` of its true level at 10:00 (a stand-in policy)."""
    sim = Simulation(city, P, seed, days=days)
    for _ in range(days):
        sim.empty(np.flatnonzero(sim.level_at(10.0) > threshold), hour=10.0)
        sim.step_day()
    return sim


def test_the_same_seed_gives_the_same_run(city: City) -> None:
    a, b = run_policy(city, 3, 0.7, days=60), run_policy(city, 3, 0.7, days=60)
    for ra, rb in zip(a.history, b.history, strict=True):
        assert np.array_equal(ra.end_level, rb.end_level)
        assert np.array_equal(ra.empty_bins, rb.empty_bins)
    c = run_policy(city, 4, 0.7, days=60)
    assert not np.array_equal(a.history[-1].increment, c.history[-1].increment)


def test_common_random_numbers_across_policies(city: City) -> None:
    lazy, eager = run_policy(city, 5, 0.95), run_policy(city, 5, 0.4)
    assert lazy.summary()["collections"] < eager.summary()["collections"]
    levels_differ = False
    for a, b in zip(lazy.history, eager.history, strict=True):
        assert np.array_equal(a.increment, b.increment)  # the same waste arrives
        assert np.array_equal(a.hazard_started, b.hazard_started)
        levels_differ |= not np.array_equal(a.end_level, b.end_level)
    assert levels_differ  # only the level depends on the policy
    assert lazy.fill.events == eager.fill.events


def test_a_shorter_horizon_is_a_prefix_of_a_longer_one(city: City) -> None:
    short, long = Simulation(city, P, 9, days=50), Simulation(city, P, 9, days=DAYS)
    assert np.array_equal(short.fill.increments, long.fill.increments[:50])
    assert np.array_equal(short.fill.hazard_start_h, long.fill.hazard_start_h[:50], equal_nan=True)


def test_fill_statistics_match_the_parameters(city: City) -> None:
    fill = Simulation(city, P, 2, days=DAYS).fill
    days = np.arange(DAYS)
    season = season_factor(P, days)
    no_event = fill.boost == 0
    for index, c in enumerate(P.classes):
        ids = np.flatnonzero(city.bin_class == index)
        normalised = (fill.increments / season[:, None])[:, ids][no_event[:, ids]]
        assert normalised.mean() == pytest.approx(c.mean_fill_rate, rel=0.05), c.name
        # day-to-day variability of one bin, weekday and season divided out
        per_bin = fill.increments[:, ids] / fill.expected[:, ids]
        cv = per_bin.std(axis=0) / per_bin.mean(axis=0)
        assert np.median(cv) >= 0.3, c.name
        assert np.median(cv) == pytest.approx(P.daily_fill_cv, abs=0.08), c.name
    weekday = days % 7
    park = city.bins_of("park")
    park_fill = fill.expected[:, park].mean(axis=1) / season
    assert park_fill[weekday >= 5].mean() > 1.3 * park_fill[weekday < 5].mean()
    shop = city.bins_of("commercial")
    shop_fill = fill.expected[:, shop].mean(axis=1) / season
    assert shop_fill[weekday == 6].mean() == pytest.approx(0.5 * shop_fill[weekday == 0].mean())
    home = city.bins_of("residential")
    assert np.ptp(fill.expected[:, home].mean(axis=1) / season) < 1e-9


def test_local_events_raise_the_fill_nearby(city: City) -> None:
    fill = Simulation(city, P, 2, days=DAYS).fill
    assert 10 <= len(fill.events) <= 50  # 0.15 a day for 180 days: 27 expected
    ratio = fill.increments / fill.expected
    boosted = fill.boost > 0
    assert boosted.sum() >= 20
    assert ratio[boosted].mean() == pytest.approx(1 + P.event_boost, rel=0.15)
    assert ratio[~boosted].mean() == pytest.approx(1.0, rel=0.02)
    covered = np.zeros_like(boosted)
    for day, x, y in fill.events:
        near = np.hypot(*(city.xy_km - np.array([x, y])).T) <= P.event_radius_km
        covered[day : day + P.event_days, near] = True
        assert (fill.boost[day, near] >= P.event_boost).all()
    assert np.array_equal(covered, boosted)  # nothing else is boosted


def test_levels_overflow_and_emptying(city: City) -> None:
    sim = Simulation(city, P, 1, days=10)
    record = sim.step_day()
    assert np.array_equal(record.end_level, record.increment)  # bins start empty
    assert np.allclose(record.level_at(np.array([0.0, 7.0])), 0.0)
    assert np.allclose(record.level_at(np.array([22.0, 23.0])), record.increment)
    held = sim.level_at(12.0)
    collected = sim.empty([0, 1], hour=12.0)
    assert collected == pytest.approx(held[[0, 1]])
    assert sim.level_at(12.0)[[0, 1]] == pytest.approx([0.0, 0.0])
    second = sim.step_day()
    assert np.array_equal(second.empty_bins, [0, 1])
    arrived_after_noon = second.increment[[0, 1]] * (22.0 - 12.0) / 15.0
    assert second.end_level[[0, 1]] == pytest.approx(arrived_after_noon)
    before, after = second.level_at(np.array([11.0, 12.0]))
    assert after[[0, 1]] == pytest.approx(0.0) and (before[[0, 1]] > 0).all()
    # never emptied, a bin overflows; the peak of an emptied bin is what it held
    nothing = Simulation(city, P, 1, days=40)
    records = nothing.run(40)
    assert records[-1].overflow.sum() > 0
    assert records[-1].overflow.sum() == int((records[-1].end_level > 1.0).sum())
    assert nothing.summary(from_day=0)["overflow_bin_days"] == sum(
        int(r.overflow.sum()) for r in records
    )


def test_emptying_refuses_bad_input_and_the_horizon_ends(city: City) -> None:
    sim = Simulation(city, P, 1, days=1)
    with pytest.raises(EdgeInputError, match="bin ids"):
        sim.empty([300])
    with pytest.raises(EdgeInputError, match="within the day"):
        sim.empty([0], hour=25.0)
    sim.empty([0], hour=14.0)
    with pytest.raises(EdgeInputError, match="later hour"):
        sim.empty([0], hour=9.0)
    sim.step_day()
    with pytest.raises(EdgeInputError, match="horizon"):
        sim.step_day()


def test_hazardous_incidents_are_rare_but_present(city: City) -> None:
    lazy = run_policy(city, 6, 2.0)  # never empties: incidents run their full course
    started = sum(int(r.hazard_started.sum()) for r in lazy.history)
    assert 1 <= started <= 20  # 1e-4 per bin-day: 5.4 expected over 180 days
    assert sum(int(np.isfinite(r.hazard_from_h).sum()) for r in lazy.history) <= (
        started * P.hazard_max_days
    )
    # emptying a bin that holds hazardous waste removes it
    sim = Simulation(city, P, 6, days=DAYS)
    while not sim.hazard.any():
        sim.step_day()
    bins = np.flatnonzero(sim.hazard)
    start = sim.fill.hazard_start_h[sim.day, bins]
    hour = float(np.nanmax(np.append(start, 0.0))) + 0.5
    sim.empty(bins, hour=min(hour, 24.0))
    record = sim.step_day()
    assert not sim.hazard[bins].any()
    assert (record.hazard_to_h[bins] <= 24.0).all()
