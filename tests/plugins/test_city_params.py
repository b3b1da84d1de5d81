"""The simulated city's pinned parameters: the table in docs/demo.md equals ``CityParams()``
field by field, the parameters refuse nonsense, and the city layout is deterministic per seed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kernos.edge.errors import EdgeConfigError as ConfigError
from kernos.plugins.sensors.city import City, class_counts
from kernos.plugins.sensors.params import BinClass, CityParams

DEMO_DOC = Path(__file__).resolve().parents[2] / "docs" / "demo.md"
SECTION = "## Simulation parameters (pinned)"


def doc_table() -> list[tuple[str, str]]:
    """(parameter, value) rows of the pinned table, in document order."""
    text = DEMO_DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"{DEMO_DOC} has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|([^|]*)\|", line)
        if match:
            rows.append((match.group(1), match.group(2).strip()))
    return rows


def code_table(params: CityParams) -> list[tuple[str, Any]]:
    """(parameter, value) of every field, classes flattened to ``classes.<name>.<field>``."""
    rows: list[tuple[str, Any]] = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name == "classes":
            for c in value:
                rows.extend(
                    (f"classes.{c.name}.{g.name}", getattr(c, g.name))
                    for g in dataclasses.fields(c)
                    if g.name != "name"
                )
        else:
            rows.append((f.name, value))
    return rows


def parse(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(","))


def as_numbers(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value) if isinstance(value, tuple) else (float(value),)


def test_the_doc_table_equals_the_code_defaults() -> None:
    documented = doc_table()
    names = [name for name, _ in documented]
    assert len(names) == len(set(names)), "a parameter is listed twice"
    coded = dict(code_table(CityParams()))
    assert set(names) == set(coded), (
        f"only in docs/demo.md: {sorted(set(names) - set(coded))}; "
        f"only in CityParams: {sorted(set(coded) - set(names))}"
    )
    for name, text in documented:
        assert parse(text) == as_numbers(coded[name]), f"{name}: doc {text!r}, code {coded[name]!r}"
        if isinstance(coded[name], int) and not isinstance(coded[name], bool):
            assert "." not in text, f"{name} is an integer; the doc says {text!r}"


def test_the_comparison_sees_a_changed_default() -> None:
    changed = dict(code_table(CityParams(noise_sigma=0.08)))
    documented = dict(doc_table())
    assert parse(documented["noise_sigma"]) != as_numbers(changed["noise_sigma"])


def test_every_field_has_a_docstring_with_its_meaning() -> None:
    for cls in (CityParams, BinClass):
        source = Path(__import__(cls.__module__, fromlist=["x"]).__file__ or "").read_text()
        body = source.split(f"class {cls.__name__}", 1)[1]
        for f in dataclasses.fields(cls):
            pattern = rf"\n    {f.name}: [^\n]+\n    \"\"\""
            assert re.search(pattern, body), f"{cls.__name__}.{f.name} has no docstring"


def test_the_pinned_values_lie_in_the_notes_ranges() -> None:
    p = CityParams()
    assert p.n_bins == 300 and p.n_trucks == 6
    assert (p.area_width_km, p.area_height_km) == (10.0, 10.0)
    assert p.daily_fill_cv >= 0.3
    assert 0.05 <= p.noise_sigma <= 0.10 and 0.01 <= p.missing_rate <= 0.05
    assert 0.01 <= p.dead_sensor_fraction <= 0.02
    assert 0.70 <= p.alert_level <= 0.80 and p.must_go_level == 0.90
    assert 10 <= p.truck_body_m3 <= 27 and 9 <= p.truck_payload_t <= 14
    assert 2 <= p.service_min_per_bin <= 5 and 30 <= p.speed_kmh <= 40 and 6.5 <= p.shift_h <= 8
    park = p.class_named("park").weekday_factors
    assert 1.3 <= park[5] / park[0] <= 2 and 1.3 <= park[6] / park[0] <= 2
    commercial = p.class_named("commercial").weekday_factors
    assert commercial[6] / commercial[0] == 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alert_level": 0.95}, "alert_level"),
        ({"reporting_interval_h": 7.0}, "reporting_interval_h"),
        ({"missing_rate": 1.5}, "missing_rate"),
        ({"classes": (CityParams().classes[0],)}, "sum to 1"),
        ({"fill_start_h": 23.0}, "fill_start_h"),
    ],
)
def test_nonsense_parameters_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CityParams(**change)


def test_class_counts_follow_the_shares() -> None:
    p = CityParams()
    assert class_counts(p) == [150, 60, 45, 45]
    assert sum(class_counts(CityParams(n_bins=301))) == 301


def test_a_city_is_deterministic_per_seed() -> None:
    p = CityParams()
    a, b, other = City.generate(p, 7), City.generate(p, 7), City.generate(p, 8)
    for field in ("xy_km", "bin_class", "volume_l", "mean_rate", "dist_km"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert not np.array_equal(a.xy_km, other.xy_km)


def test_the_city_layout() -> None:
    p = CityParams()
    city = City.generate(p, 1)
    assert city.n_bins == 300 and city.xy_km.shape == (300, 2)
    assert (city.xy_km >= 0).all() and (city.xy_km <= 10).all()
    assert city.dist_km.shape == (301, 301)
    assert np.allclose(city.dist_km, city.dist_km.T) and np.allclose(np.diag(city.dist_km), 0)
    straight = np.hypot(*(city.xy_km[0] - city.depot_km))
    assert city.dist_km[0, 1] == pytest.approx(straight * p.road_detour)
    for c in p.classes:
        ids = city.bins_of(c.name)
        assert len(ids) == round(c.share * 300)
        assert (city.volume_l[ids] == c.volume_l).all()
        rates = city.mean_rate[ids]
        assert rates.mean() == pytest.approx(c.mean_fill_rate)
        assert 0.2 < rates.std() / rates.mean() < 0.5  # heterogeneous, around bin_rate_cv
        # clustered by land use: a class's bins sit closer together than uniform points would
        # (5.2 km apart on average in a 10 km square); parks and shops are compact
        xy = city.xy_km[ids]
        spread = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)).mean()
        assert spread < (4.0 if c.clusters <= 4 and c.cluster_sigma_km <= 0.6 else 5.2), c.name
