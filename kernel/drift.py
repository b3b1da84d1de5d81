"""Input drift of deployed models: each feature of a model's inputs against a reference window.

``DriftMonitor.observe(model, features)`` collects numeric features per model. The first
``reference_size`` observations of a model are its reference (or set one with
``set_reference``); after that, every ``window_size`` observations form a window that is scored
against the reference, feature by feature, with

- **PSI** (population stability index) over ``bins`` bins cut at the reference's quantiles
  (rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large), and
- the **two-sample Kolmogorov-Smirnov** statistic with its asymptotic p-value.

A feature drifts when its PSI reaches ``psi_threshold`` or its KS p-value falls below
``ks_alpha``. A window with a drifted feature is published as a ``model.drift`` event on the
kernel's event bus (``DRIFT_TOPIC``), so a trigger can route it to an agent or an operator;
every scored window is returned as a ``DriftReport``. Numpy only (no SciPy).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernos.kernel.errors import InvalidInput

DRIFT_TOPIC = "model.drift"
"""The topic of drift events: ``data`` holds ``model``, ``window``, ``observations`` and
``features`` (each with ``psi``, ``ks``, ``p_value``, ``drifted``)."""

_EPSILON = 1e-4  # share given to an empty bin, so PSI stays finite


def psi(reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any], *, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``, over bins cut at the
    reference's quantiles (values outside the reference's range fall in the end bins)."""
    if reference.size == 0 or current.size == 0:
        raise InvalidInput("PSI needs observations in both the reference and the window")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    ref_share = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1
    )
    cur_share = np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.size + 1)
    expected = np.maximum(ref_share / reference.size, _EPSILON)
    actual = np.maximum(cur_share / current.size, _EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks_two_sample(
    reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any]
) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value (Stephens'
    small-sample correction; accurate enough for windows of a few dozen and up)."""
    if reference.size == 0 or current.size == 0:
        raise InvalidInput("KS needs observations in both the reference and the window")
    a, b = np.sort(reference), np.sort(current)
    values = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, values, side="right") / a.size
    cdf_b = np.searchsorted(b, values, side="right") / b.size
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    effective = math.sqrt(a.size * b.size / (a.size + b.size))
    return statistic, _kolmogorov_q((effective + 0.12 + 0.11 / effective) * statistic)


def _kolmogorov_q(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution."""
    if x < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        total += (1.0 if k % 2 else -1.0) * math.exp(-2.0 * k * k * x * x)
    return min(1.0, max(0.0, 2.0 * total))


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureDrift:
    """One feature's scores in one window."""

    psi: float
    ks: float
    p_value: float
    drifted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftReport:
    """One scored window of one model."""

    model: str
    tenant: str
    window: int
    """Window number, from 1."""
    observations: int
    features: dict[str, FeatureDrift]

    @property
    def drifted(self) -> bool:
        """Whether any feature drifted."""
        return any(f.drifted for f in self.features.values())

    def as_event_data(self) -> dict[str, Any]:
        """JSON-ready ``data`` of the ``model.drift`` event."""
        return {
            "model": self.model,
            "window": self.window,
            "observations": self.observations,
            "drifted": sorted(name for name, f in self.features.items() if f.drifted),
            "features": {
                name: {
                    "psi": round(f.psi, 6),
                    "ks": round(f.ks, 6),
                    "p_value": f.p_value,
                    "drifted": f.drifted,
                }
                for name, f in self.features.items()
            },
        }


@dataclass(slots=True)
class _ModelWindow:
    reference: dict[str, np.ndarray[Any, Any]] | None = None
    pending: list[Mapping[str, float]] = field(default_factory=list)
    windows: int = 0


Publish = Callable[[DriftReport], Awaitable[None]]


class DriftMonitor:
    """Per-model input statistics against a reference window; drift goes to ``publish``
    (``bus_publisher(kernel.events)`` puts it on the event bus as ``model.drift``)."""

    def __init__(
        self,
        publish: Publish | None = None,
        *,
        reference_size: int = 500,
        window_size: int = 500,
        bins: int = 10,
        psi_threshold: float = 0.2,
        ks_alpha: float = 0.001,
    ) -> None:
        if reference_size < bins or window_size < bins:
            raise InvalidInput(f"drift windows need at least as many observations as bins ({bins})")
        self._publish = publish
        self.reference_size = reference_size
        self.window_size = window_size
        self.bins = bins
        self.psi_threshold = psi_threshold
        self.ks_alpha = ks_alpha
        self._models: dict[tuple[str, str], _ModelWindow] = {}

    def set_reference(
        self, model: str, samples: Sequence[Mapping[str, float]], *, tenant: str = "default"
    ) -> None:
        """Use ``samples`` as ``model``'s reference (say, its training data's inputs)."""
        if len(samples) < self.bins:
            raise InvalidInput(f"a reference needs at least {self.bins} observations")
        state = self._models.setdefault((tenant, model), _ModelWindow())
        state.reference = _columns(samples)

    async def observe(
        self, model: str, features: Mapping[str, float], *, tenant: str = "default"
    ) -> DriftReport | None:
        """Add one input of ``model``; returns the report when this completed a window (and
        publishes it when a feature drifted), else ``None``."""
        state = self._models.setdefault((tenant, model), _ModelWindow())
        state.pending.append(_checked(features))
        if state.reference is None:
            if len(state.pending) >= self.reference_size:
                state.reference, state.pending = _columns(state.pending), []
            return None
        if len(state.pending) < self.window_size:
            return None
        window, state.pending = _columns(state.pending), []
        state.windows += 1
        report = DriftReport(
            model=model,
            tenant=tenant,
            window=state.windows,
            observations=self.window_size,
            features={
                name: self._score(reference, window[name])
                for name, reference in state.reference.items()
                if name in window
            },
        )
        if report.drifted and self._publish is not None:
            await self._publish(report)
        return report

    def _score(
        self, reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any]
    ) -> FeatureDrift:
        index = psi(reference, current, bins=self.bins)
        statistic, p_value = ks_two_sample(reference, current)
        return FeatureDrift(
            psi=index,
            ks=statistic,
            p_value=p_value,
            drifted=index >= self.psi_threshold or p_value < self.ks_alpha,
        )


def _checked(features: Mapping[str, float]) -> Mapping[str, float]:
    for name, value in features.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            raise InvalidInput(f"drift feature {name!r} must be a number, got {value!r}")
    return features


def _columns(samples: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray[Any, Any]]:
    names = {name for sample in samples for name in sample}
    return {
        name: np.array([s[name] for s in samples if name in s], dtype=float)
        for name in sorted(names)
    }


def bus_publisher(events: Any, *, source: str = "kernos.drift") -> Publish:
    """A ``publish`` for ``DriftMonitor`` that puts each drifted window on ``events`` (the
    kernel's ``EventBus``) as a ``model.drift`` event (a fresh id each: window numbers
    start again after a restart)."""
    from kernos.kernel.events import Event

    async def publish(report: DriftReport) -> None:
        await events.publish(
            Event(
                topic=DRIFT_TOPIC,
                tenant=report.tenant,
                source=source,
                data=report.as_event_data(),
                id=f"model.drift:{uuid.uuid4().hex}:{report.window}:{report.model}"[:64],
            )
        )

    return publish
