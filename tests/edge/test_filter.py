"""The edge pre-filter, reading by reading: every drop reason, crossings with hysteresis,
level jumps and steps, hazards (rule and ONNX model), heartbeats and the rate limit."""

from __future__ import annotations

import itertools
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from kernos.edge.errors import EdgeConfigError
from kernos.edge.filter import EdgeFilter, FilterParams, Forward
from kernos.edge.hazard import OnnxHazard, RuleHazard, load_hazard_classifier
from kernos.edge.sim.readings import validate_reading

H = 3600.0


def reading(b: int = 0, ts: float = 0.0, level: float = 0.3, **extra: Any) -> dict[str, Any]:
    return {"bin": b, "ts": ts, "level": level, "temp_c": 12.0, "voc_ppm": 1.0, **extra}


def feed(
    edge: EdgeFilter, levels: list[float], *, b: int = 0, start_h: float = 0.0
) -> list[Forward]:
    out = edge.process([reading(b, (start_h + i) * H, lv) for i, lv in enumerate(levels)])
    assert out.rejected == []
    return out.forwards


def test_every_drop_reason_is_counted() -> None:
    edge = EdgeFilter(FilterParams(n_bins=10))
    good = reading(1, 10 * H)
    out = edge.process(
        [
            good,
            {**good, "ts": 10 * H},  # duplicate
            {**good, "ts": 9 * H},  # out of order
            {**good, "bin": 2, "ts": 2 * H},  # stale: 8 h behind the newest reading
            {**good, "bin": 3, "level": float("nan")},
            {**good, "bin": 3, "voc_ppm": float("inf")},
            {**good, "bin": 3, "level": 3.0},
            {**good, "bin": 3, "temp_c": 400.0},
            {**good, "bin": 12},  # no such bin
            {**good, "bin": 3, "ts": -1.0},
            {**good, "bin": "three"},
            {k: v for k, v in good.items() if k != "level"},
            {**good, "colour": "red"},
            {**good, "level": "80%"},
            {**good, "bin": True},
            ["not", "a", "reading"],
        ]
    )
    stats = edge.stats
    assert stats.raw == 16
    assert dict(stats.dropped) == {
        "duplicate": 1,
        "out_of_order": 1,
        "stale": 1,
        "nan": 2,
        "out_of_range": 4,
        "malformed": 6,
    }
    assert [f.reasons for f in out.forwards] == [("first",)]
    reasons = [r.reason for r in out.rejected]
    assert len(reasons) == 6
    assert "bin must be an integer id, got str" in reasons[0]
    assert "missing field 'level'" in reasons[1]
    assert "unknown field 'colour'" in reasons[2]
    assert "level must be a number, got str" in reasons[3]
    assert "got bool" in reasons[4]
    assert "must be an object, got list" in reasons[5]


def test_a_slow_rise_declares_alert_and_must_go_once_each_and_early_not_late() -> None:
    edge = EdgeFilter()
    levels = [0.40 + 0.01 * i for i in range(60)]  # 0.40 .. 0.99, noise-free
    forwards = feed(edge, levels)
    crossings = [f for f in forwards if "crossing" in f.reasons]
    assert [f.band for f in crossings] == ["alert", "must_go"]
    p = edge.params
    for f, threshold in zip(crossings, (p.alert_level, p.must_go_level), strict=True):
        # declared within enter_margin below the threshold, never after the level passed it
        assert threshold - p.enter_margin - 0.02 <= f.raw_level <= threshold
    assert all(f.band == "must_go" for f in forwards[forwards.index(crossings[1]) :])


def test_noise_around_a_threshold_does_not_flap_the_band() -> None:
    rng = random.Random(7)
    edge = EdgeFilter()
    levels = [min(max(0.74 + rng.gauss(0, 0.07), 0.0), 1.25) for _ in range(300)]
    raw_flips = sum((a >= 0.75) != (b >= 0.75) for a, b in itertools.pairwise(levels))
    forwards = feed(edge, levels)
    bands = [f.band for f in forwards]
    flips = sum(a != b for a, b in itertools.pairwise(bands))
    assert raw_flips > 100  # the raw readings cross the threshold all the time...
    assert flips <= 2  # ...the declared band does not
    assert len(forwards) <= 0.1 * len(levels)


def test_a_fast_rise_is_forwarded_in_jumps_of_at_least_the_jump_size() -> None:
    edge = EdgeFilter(FilterParams(alert_level=0.98, must_go_level=0.99))
    forwards = feed(edge, [0.05 * i for i in range(16)])  # 0 .. 0.75
    jumps = [f for f in forwards if "jump" in f.reasons]
    assert len(jumps) >= 4
    levels = [f.level for f in forwards]
    assert all(b - a >= edge.params.jump for a, b in itertools.pairwise(levels))


def test_an_emptying_is_a_step_a_single_spike_is_ignored() -> None:
    edge = EdgeFilter()
    full = [0.8] * 10
    forwards = feed(edge, [*full, 0.02, 0.8, 0.8])  # one wild reading
    assert [f.reasons for f in forwards] == [("first",)]
    assert forwards[0].band == "alert"
    emptied = feed(edge, [0.02, 0.03, 0.03], start_h=13)
    assert len(emptied) == 1
    step = emptied[0]
    assert step.reasons == ("crossing", "step")
    assert step.band == "ok" and step.level == pytest.approx(0.025)


def test_a_hazard_is_forwarded_at_once_and_cleared_after_calm_readings() -> None:
    edge = EdgeFilter()
    forwards = edge.process(
        [reading(0, 0)]
        + [reading(0, H, voc_ppm=55.0), reading(0, 2 * H, temp_c=45.0)]
        + [reading(0, (3 + i) * H) for i in range(4)]
    ).forwards
    assert [f.reasons for f in forwards] == [("first",), ("hazard",), ("hazard_cleared",)]
    assert [f.hazard for f in forwards] == [False, True, False]
    assert forwards[2].ts == 5 * H  # three calm readings: at 3, 4 and 5 h


def test_a_quiet_bin_sends_a_heartbeat_once_a_day() -> None:
    edge = EdgeFilter()
    forwards = feed(edge, [0.3] * 50)
    assert [f.reasons for f in forwards] == [("first",), ("heartbeat",), ("heartbeat",)]
    assert [f.ts for f in forwards] == [0, 24 * H, 48 * H]


def test_the_rate_limit_defers_changes_but_never_loses_them_and_spares_hazards() -> None:
    edge = EdgeFilter(FilterParams(min_interval_s=600, step_delta=0.9))
    minute = 60.0
    rows = [reading(0, 0, 0.1)]
    rows += [reading(0, i * minute, 0.1 + 0.05 * i) for i in range(1, 8)]  # 0.15 .. 0.45
    rows += [reading(0, 8 * minute, 0.45, voc_ppm=60.0)]
    rows += [reading(0, (9 + i) * minute, 0.45) for i in range(3)]  # 9 .. 11 min
    forwards = edge.process(rows).forwards
    assert edge.stats.deferred > 0
    assert forwards[0].reasons == ("first",)
    # The rise held back by the limit goes out with the hazard, which does not wait.
    assert forwards[1].reasons == ("jump", "hazard") and forwards[1].ts == 8 * minute
    assert forwards[1].level - forwards[0].level >= edge.params.jump
    assert forwards[2].reasons == ("hazard_cleared",) and forwards[2].ts == 11 * minute
    later = edge.process([reading(0, (12 + i) * minute, 0.9) for i in range(12)]).forwards
    # A jump is due from 12 min on, held back until 10 minutes after the last forward.
    assert [f.ts for f in later] == [21 * minute]
    assert "jump" in later[0].reasons


def test_forwarded_payloads_are_valid_readings() -> None:
    edge = EdgeFilter()
    forwards = feed(edge, [0.2, 0.5, 0.8, 0.95, 1.2, 0.0, 0.0])
    assert forwards
    for f in forwards:
        payload = f.payload()
        assert validate_reading(payload, n_bins=300) == payload
        assert payload["band"] in {"ok", "alert", "must_go"}


@pytest.mark.parametrize(
    "bad",
    [
        {"alert_level": 0.9, "must_go_level": 0.8},
        {"enter_margin": 0.2, "leave_margin": 0.1},
        {"alpha": 0.0},
        {"jump": 0.0},
        {"active_from_h": 22.0, "active_to_h": 7.0},
        {"n_bins": 0},
    ],
)
def test_nonsense_parameters_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(EdgeConfigError, match="invalid filter parameters"):
        FilterParams(**bad)


# -- the ONNX slot: a tiny logistic model written as ONNX protobuf by hand (no onnx package)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, dims: list[int], values: list[float]) -> bytes:
    return (
        b"".join(_field(1, d) for d in dims)
        + _field(2, 1)  # FLOAT
        + _field(8, name)
        + _field(9, struct.pack(f"<{len(values)}f", *values))
    )


def _value_info(name: str, dims: list[int | str]) -> bytes:
    shape = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, d)) for d in dims)
    tensor_type = _field(1, 1) + _field(2, shape)
    return _field(1, name) + _field(2, _field(1, tensor_type))


def _node(op: str, inputs: list[str], outputs: list[str]) -> bytes:
    return (
        b"".join(_field(1, i) for i in inputs)
        + b"".join(_field(2, o) for o in outputs)
        + _field(4, op)
    )


def write_voc_model(path: Path) -> Path:
    """score = sigmoid(0.5 * (voc_ppm - 20)): a hazard at VOC 20 ppm and above."""
    graph = (
        _field(1, _node("MatMul", ["x", "w"], ["z"]))
        + _field(1, _node("Add", ["z", "b"], ["logit"]))
        + _field(1, _node("Sigmoid", ["logit"], ["score"]))
        + _field(2, "hazard")
        + _field(5, _tensor("w", [3, 1], [0.0, 0.0, 0.5]))
        + _field(5, _tensor("b", [1], [-10.0]))
        + _field(11, _value_info("x", ["N", 3]))
        + _field(12, _value_info("score", ["N", 1]))
    )
    model = _field(1, 8) + _field(2, "kernos-test") + _field(7, graph)
    model += _field(8, _field(1, "") + _field(2, 13))
    path.write_bytes(model)
    return path


def test_an_onnx_hazard_model_takes_the_rules_place(tmp_path: Path) -> None:
    model = load_hazard_classifier(write_voc_model(tmp_path / "hazard.onnx"))
    assert isinstance(model, OnnxHazard) and model.name == "onnx:hazard.onnx"
    assert model.suspects([0.5, 0.5, 0.5], [10.0, 80.0, 10.0], [1.0, 1.0, 30.0]) == [
        False,
        False,  # hot but no VOC: this model, unlike the rule, looks at VOC only
        True,
    ]
    assert RuleHazard().suspects([0.5], [80.0], [1.0]) == [True]
    edge = EdgeFilter(hazard=model)
    forwards = edge.process([reading(0, 0), reading(0, H, voc_ppm=40.0)]).forwards
    assert [f.hazard for f in forwards] == [False, True]
    assert isinstance(load_hazard_classifier(None), RuleHazard)


def test_a_missing_or_broken_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError, match="no hazard model"):
        OnnxHazard(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(EdgeConfigError, match="cannot load hazard model"):
        OnnxHazard(broken)
