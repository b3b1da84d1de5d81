"""The sensor model: noise, missing readings and dead sensors at the pinned rates, the same
faults under any policy, the hazardous-waste signature, and the reading events' validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kernos.edge.errors import EdgeInputError
from kernos.kernel.errors import InvalidInput
from kernos.plugins.sensors import TOPIC
from kernos.plugins.sensors.city import City
from kernos.plugins.sensors.params import CityParams
from kernos.plugins.sensors.readings import (
    ReadingBatch,
    SensorModel,
    reading_problems,
    validate_reading,
)
from kernos.plugins.sensors.sim import DayRecord, Simulation

P = CityParams()
DAYS = 180


def run(city: City, seed: int, threshold: float) -> tuple[list[DayRecord], list[ReadingBatch]]:
    sim = Simulation(city, P, seed, days=DAYS)
    sensors = SensorModel(city, P, seed, days=DAYS)
    batches = []
    for _ in range(DAYS):
        sim.empty(np.flatnonzero(sim.level_at(10.0) > threshold), hour=10.0)
        batches.append(sensors.readings(sim.step_day()))
    return sim.history, batches


@pytest.fixture(scope="module")
def city() -> City:
    return City.generate(P, 21)


@pytest.fixture(scope="module")
def runs(city: City) -> dict[float, tuple[list[DayRecord], list[ReadingBatch]]]:
    return {threshold: run(city, 4, threshold) for threshold in (0.5, 0.9)}


def test_fault_rates_match_the_parameters(
    runs: dict[float, tuple[list[DayRecord], list[ReadingBatch]]],
) -> None:
    _, batches = runs[0.9]
    dead = np.array([b.dead for b in batches])  # (days, bins)
    assert dead.mean() == pytest.approx(P.dead_sensor_fraction, rel=0.35)
    alive = ~dead[:, None, :] & np.ones((1, P.readings_per_day, 1), dtype=bool)
    present = np.array([b.present for b in batches])
    assert 1 - present[alive].mean() == pytest.approx(P.missing_rate, rel=0.1)
    assert not present[~alive].any()  # a dead sensor sends nothing
    # a dead sensor stays silent for dead_sensor_days (longer when deaths overlap)
    lengths = []
    for column in dead.T.astype(int):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], column, [0]])))
        lengths += [int(e - s) for s, e in zip(edges[::2], edges[1::2], strict=True) if e < DAYS]
    assert len(lengths) > 50
    assert min(lengths) >= P.dead_sensor_days
    assert np.median(lengths) == P.dead_sensor_days


def test_level_noise_matches_sigma(
    runs: dict[float, tuple[list[DayRecord], list[ReadingBatch]]],
) -> None:
    records, batches = runs[0.9]
    errors = []
    for record, batch in zip(records, batches, strict=True):
        true = record.level_at(batch.hours)
        unclipped = batch.present & (true > 0.35) & (true < 0.9)
        errors.append((batch.level - true)[unclipped])
    error = np.concatenate(errors)
    assert error.size > 10_000
    assert error.mean() == pytest.approx(0.0, abs=0.005)
    assert error.std() == pytest.approx(P.noise_sigma, rel=0.05)


def test_two_policies_see_the_same_faults_and_noise(
    runs: dict[float, tuple[list[DayRecord], list[ReadingBatch]]],
) -> None:
    (eager_records, eager), (lazy_records, lazy) = runs[0.5], runs[0.9]
    levels_differ = False
    for re_, be, rl, bl in zip(eager_records, eager, lazy_records, lazy, strict=True):
        assert np.array_equal(be.present, bl.present) and np.array_equal(be.dead, bl.dead)
        te, tl = re_.level_at(be.hours), rl.level_at(bl.hours)
        both = be.present & (te > 0.3) & (te < 1.0) & (tl > 0.3) & (tl < 1.0)
        assert np.allclose((be.level - te)[both], (bl.level - tl)[both])
        levels_differ |= not np.allclose(te, tl)
    assert levels_differ


def test_the_same_seed_gives_the_same_readings(city: City) -> None:
    a, b = run(city, 8, 0.8), run(city, 8, 0.8)
    for ba, bb in zip(a[1][:30], b[1][:30], strict=True):
        assert ba.events() == bb.events()


def test_hazardous_incidents_show_in_temperature_and_voc(
    runs: dict[float, tuple[list[DayRecord], list[ReadingBatch]]],
) -> None:
    records, batches = runs[0.9]
    hazard = np.array([r.hazard_at(b.hours) for r, b in zip(records, batches, strict=True)])
    present = np.array([b.present for b in batches])
    voc = np.array([b.voc_ppm for b in batches])
    temp = np.array([b.temp_c for b in batches])
    incidents = sum(int(r.hazard_started.sum()) for r in records)
    assert 1 <= incidents <= 20  # rare: 1e-4 per bin-day, 5.4 expected
    assert (hazard & present).sum() >= 10
    assert hazard.mean() < 0.002
    assert voc[hazard & present].min() > 40 and voc[~hazard & present].max() < 10
    normal = temp[~hazard & present]
    assert temp[hazard & present].mean() > normal.mean() + 15
    assert normal.min() > -10 and normal.max() < 30


def test_readings_become_valid_events(city: City) -> None:
    records, batches = run(city, 2, 0.8)
    batch = batches[40]
    events = batch.events()
    assert len(events) == int(batch.present.sum())
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert events[0]["ts"] >= 40 * 86_400 and events[-1]["ts"] < 41 * 86_400
    for event in events:
        assert validate_reading(event, n_bins=city.n_bins) == event
    assert set(events[0]) == {"bin", "level", "temp_c", "voc_ppm", "ts"}
    assert TOPIC == "sensor.bin.fill"
    assert max(e["level"] for e in events) <= P.reading_max_level
    with pytest.raises(EdgeInputError, match="outside the sensor horizon"):
        SensorModel(city, P, 2, days=10).readings(records[40])


GOOD = {"bin": 3, "level": 0.5, "temp_c": 12.0, "voc_ppm": 1.0, "ts": 3600.0}


@pytest.mark.parametrize(
    ("reading", "problem"),
    [
        ([1, 2], "must be an object, got list"),
        ({k: v for k, v in GOOD.items() if k != "level"}, "missing field 'level'"),
        ({**GOOD, "colour": "red"}, "unknown field 'colour'"),
        ({**GOOD, "bin": "b3"}, "bin must be an integer id, got str"),
        ({**GOOD, "bin": True}, "bin must be an integer id, got bool"),
        ({**GOOD, "bin": -1}, "bin must be a non-negative id"),
        ({**GOOD, "bin": 300}, "below 300"),
        ({**GOOD, "level": "80%"}, "level must be a number, got str"),
        ({**GOOD, "level": float("nan")}, "level must be finite"),
        ({**GOOD, "level": 3.0}, "level must be within 0.0..1.5"),
        ({**GOOD, "temp_c": 400}, "temp_c must be within"),
        ({**GOOD, "voc_ppm": -1}, "voc_ppm must be within"),
        ({**GOOD, "ts": -5}, "ts must be within"),
    ],
)
def test_a_malformed_reading_is_explained(reading: Any, problem: str) -> None:
    assert any(problem in p for p in reading_problems(reading, n_bins=300))
    with pytest.raises(InvalidInput, match="malformed sensor.bin.fill reading") as info:
        validate_reading(reading, n_bins=300)
    assert problem in str(info.value)


def test_every_problem_is_listed_at_once() -> None:
    problems = reading_problems({"bin": -2, "level": None, "extra": 1})
    assert len(problems) == 6, problems  # 3 missing, 1 unknown, bin, level
    assert reading_problems(GOOD) == []
    assert validate_reading({**GOOD, "bin": 3, "level": 1}) == {**GOOD, "level": 1.0}
