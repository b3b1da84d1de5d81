"""Per-bin fill forecasting: a small model trained on simulated fill history (numpy only).

The model: the fill a bin receives on day ``d`` has mean ``rate[i] x profile[class, weekday]
x season[d] x event[i]`` and standard deviation ``cv[class]`` times that mean, where

* ``rate[i]`` is the bin's mean weekday-adjusted fill in the history, shrunk toward its class
  mean (empirical Bayes: weight ``n / (n + k)`` with ``k`` from the class's within and
  between-bin variances);
* ``profile`` is each class's weekday profile pooled over its bins, normalised to mean 1;
* ``season`` is the city's smoothed daily total over its mean, by day of the history (the
  history covers the same calendar days as the forecast: last year's data for this period);
* ``event`` (``predict(..., recent=...)``) scales the next day by the spatially pooled
  surprise of the bins' last observed fill (local events last days and cover a neighbourhood);
  its weight is a ridge regression of today's relative fill on yesterday's, fitted on history.

Levels ``horizon`` days ahead are the latest level plus the summed fills (means add, and so do
variances, days being independent given the means). :meth:`Forecaster.evaluate` reports the
next-day error on held-out days against a naive "same as yesterday" forecast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kernos.kernel.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SEASON_WINDOW = 15
"""Days of the centred moving average that smooths the city's daily total (days)."""
EVENT_RADIUS_KM = 0.7
"""Neighbourhood over which recent surprises are pooled, km."""


@dataclass(frozen=True, eq=False)
class FillHistory:
    """Daily fills of every bin over past days (what the model trains on)."""

    increments: FloatArray
    """Fill per (day, bin), fraction of capacity, shape (days, n)."""
    bin_class: IntArray
    """Class index per bin, shape (n,)."""
    xy_km: FloatArray
    """Bin positions, shape (n, 2), km (for pooling neighbours)."""
    start_weekday: int = 0
    """Weekday (0 = Monday) of history day 0, which is also simulation day 0."""

    def __post_init__(self) -> None:
        inc = self.increments
        if inc.ndim != 2 or inc.shape[0] < 14 or inc.shape[1] != self.bin_class.shape[0]:
            raise InvalidInput("history needs increments of shape (days >= 14, n_bins)")
        if self.xy_km.shape != (inc.shape[1], 2):
            raise InvalidInput("history positions must have shape (n_bins, 2)")

    @property
    def days(self) -> int:
        """Days of history."""
        return int(self.increments.shape[0])

    def weekdays(self, days: IntArray) -> IntArray:
        """Weekday of each simulation day."""
        return (self.start_weekday + days) % 7


@dataclass(frozen=True, eq=False)
class ForecastError:
    """Next-day fill error on held-out days, fraction of capacity."""

    mae: float
    """Mean absolute error of the model."""
    rmse: float
    """Root mean square error of the model."""
    naive_mae: float
    """Mean absolute error of "tomorrow fills like today"."""
    naive_rmse: float
    """Root mean square error of the naive forecast."""
    days: int
    """Held-out days evaluated."""


@dataclass(frozen=True, eq=False)
class Forecaster:
    """A fitted fill model (see the module docstring); build it with :func:`fit`."""

    rate: FloatArray
    """Shrunk mean weekday-adjusted fill per bin, shape (n,)."""
    profile: FloatArray
    """Weekday profile per class, shape (classes, 7), mean 1."""
    cv: FloatArray
    """Coefficient of variation of one day's fill per class, shape (classes,)."""
    season: FloatArray
    """City-wide multiplier per day of history, shape (days,)."""
    bin_class: IntArray
    """Class per bin."""
    neighbours: FloatArray
    """Row-normalised weights of bins within ``EVENT_RADIUS_KM``, shape (n, n)."""
    event_weight: float
    """How much of yesterday's pooled surprise carries into tomorrow (0..1)."""
    start_weekday: int = 0
    """Weekday of day 0."""

    @property
    def n_bins(self) -> int:
        """Bins the model covers."""
        return int(self.rate.shape[0])

    def mean_fill(self, day: int) -> FloatArray:
        """Expected fill of every bin on ``day`` (no event adjustment)."""
        weekday = (self.start_weekday + day) % 7
        season = self.season[min(max(day, 0), self.season.shape[0] - 1)]
        return self.rate * self.profile[self.bin_class, weekday] * season

    def surprise(self, day: int, observed: FloatArray) -> FloatArray:
        """Pooled relative surprise of ``observed`` fills on ``day`` (NaN: not observed)."""
        expected = self.mean_fill(day)
        ratio = np.where(np.isfinite(observed), observed / np.maximum(expected, 1e-9) - 1.0, 0.0)
        seen = np.isfinite(observed).astype(np.float64)
        num = self.neighbours @ (np.clip(ratio, -1.0, 4.0) * seen)
        den = self.neighbours @ seen
        pooled: FloatArray = np.where(den > 0, num / np.maximum(den, 1e-9), 0.0)
        return pooled

    def predict(
        self,
        levels: FloatArray,
        day: int,
        horizon: int = 1,
        *,
        recent: FloatArray | None = None,
        level_var: FloatArray | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """Mean and variance of every bin's level after ``horizon`` days of fill from ``day``.

        ``levels`` is the latest level (at the start of ``day``); ``level_var`` its
        uncertainty (default 0); ``recent`` the fills observed on ``day - 1`` (NaN where not
        observed), which lifts the forecast where a neighbourhood fills unusually fast.
        """
        if horizon < 0:
            raise InvalidInput("horizon must be >= 0")
        levels = np.asarray(levels, dtype=np.float64)
        if levels.shape != self.rate.shape:
            raise InvalidInput(f"levels must have shape ({self.n_bins},)")
        mean = levels.copy()
        var = np.zeros_like(mean) if level_var is None else np.asarray(level_var, dtype=float)
        boost = np.zeros_like(mean)
        if recent is not None:
            boost = np.maximum(self.event_weight * self.surprise(day - 1, recent), 0.0)
        for k in range(horizon):
            m = self.mean_fill(day + k) * (1.0 + (boost if k == 0 else 0.0))
            mean = mean + m
            var = var + (self.cv[self.bin_class] * m) ** 2
        return mean, var

    def evaluate(self, history: FillHistory, *, holdout: float = 0.25) -> ForecastError:
        """Next-day fill error on the last ``holdout`` share of ``history``'s days."""
        inc = history.increments
        first = max(1, int(history.days * (1.0 - holdout)))
        errors: list[FloatArray] = []
        naive: list[FloatArray] = []
        for day in range(first, history.days):
            predicted, _ = self.predict(np.zeros(self.n_bins), day, 1, recent=inc[day - 1])
            errors.append(predicted - inc[day])
            naive.append(inc[day - 1] - inc[day])
        e = np.concatenate(errors)
        z = np.concatenate(naive)
        return ForecastError(
            mae=float(np.abs(e).mean()),
            rmse=float(np.sqrt((e**2).mean())),
            naive_mae=float(np.abs(z).mean()),
            naive_rmse=float(np.sqrt((z**2).mean())),
            days=history.days - first,
        )


def fit(history: FillHistory, *, train_days: int | None = None, ridge: float = 1.0) -> Forecaster:
    """Fit the model on the first ``train_days`` days of ``history`` (default: all)."""
    inc = history.increments[: train_days or history.days]
    days = inc.shape[0]
    if days < 14:
        raise InvalidInput("fitting needs at least 14 days of history")
    classes = int(history.bin_class.max()) + 1
    day_index = np.arange(days, dtype=np.int64)
    weekday = history.weekdays(day_index)

    total = inc.sum(axis=1)
    kernel = np.ones(SEASON_WINDOW) / SEASON_WINDOW
    padded = np.pad(total, SEASON_WINDOW // 2, mode="edge")
    smooth = np.convolve(padded, kernel, mode="valid")[:days]
    season = smooth / smooth.mean()
    full_season = np.ones(history.days)
    full_season[:days] = season
    if history.days > days:
        full_season[days:] = season[-1]

    deseason = inc / season[:, None]
    profile = np.ones((classes, 7))
    for c in range(classes):
        cols = history.bin_class == c
        if not cols.any():
            continue
        by_day = deseason[:, cols] / np.maximum(deseason[:, cols].mean(axis=0), 1e-12)
        for w in range(7):
            rows = weekday == w
            if rows.any():
                profile[c, w] = by_day[rows].mean()
        profile[c] /= profile[c].mean()

    adjusted = deseason / profile[history.bin_class][:, weekday].T
    raw_rate = adjusted.mean(axis=0)
    rate = raw_rate.copy()
    cv = np.ones(classes)
    for c in range(classes):
        cols = history.bin_class == c
        if not cols.any():
            continue
        within = float((adjusted[:, cols].var(axis=0, ddof=1)).mean())
        between = (
            max(float(raw_rate[cols].var(ddof=1)) - within / days, 1e-12)
            if cols.sum() > 1
            else 1e-12
        )
        k = within / between
        w = days / (days + k)
        rate[cols] = w * raw_rate[cols] + (1 - w) * raw_rate[cols].mean()
        cv[c] = math.sqrt(float((adjusted[:, cols] / raw_rate[cols] - 1.0).var()))

    diff = history.xy_km[:, None, :] - history.xy_km[None, :, :]
    near = (np.sqrt((diff**2).sum(axis=-1)) <= EVENT_RADIUS_KM).astype(np.float64)
    neighbours = near / near.sum(axis=1, keepdims=True)

    model = Forecaster(
        rate=rate,
        profile=profile,
        cv=cv,
        season=full_season,
        bin_class=history.bin_class,
        neighbours=neighbours,
        event_weight=0.0,
        start_weekday=history.start_weekday,
    )
    # Ridge regression through the origin: today's pooled surprise on yesterday's.
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    for day in range(1, days):
        xs.append(model.surprise(day - 1, inc[day - 1]))
        ys.append(model.surprise(day, inc[day]))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    weight = float((x * y).sum() / ((x * x).sum() + ridge))
    return Forecaster(
        rate=rate,
        profile=profile,
        cv=cv,
        season=full_season,
        bin_class=history.bin_class,
        neighbours=neighbours,
        event_weight=min(max(weight, 0.0), 1.0),
        start_weekday=history.start_weekday,
    )
