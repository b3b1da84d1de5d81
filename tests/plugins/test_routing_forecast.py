"""The fill forecaster: fitted on simulated history, better than "same as yesterday"."""

from __future__ import annotations

import numpy as np
import pytest

from kernos.kernel.errors import InvalidInput
from kernos.plugins.routing.experiment import history_for
from kernos.plugins.routing.forecast import FillHistory, fit
from kernos.plugins.sensors.city import City
from kernos.plugins.sensors.params import CityParams

PARAMS = CityParams()
CITY = City.generate(PARAMS, 1)
HISTORY = history_for(CITY, PARAMS, 7, days=180)


def test_beats_the_naive_forecast_on_held_out_days() -> None:
    model = fit(HISTORY, train_days=135)
    error = model.evaluate(HISTORY, holdout=0.25)
    assert error.days == 45
    assert error.mae < 0.8 * error.naive_mae
    assert error.rmse < 0.8 * error.naive_rmse
    assert 0 < error.mae < 0.1  # fractions of capacity per bin and day


def test_learns_the_rates_and_weekly_profiles_it_was_trained_on() -> None:
    model = fit(HISTORY)
    assert np.corrcoef(model.rate, CITY.mean_rate)[0, 1] > 0.98
    park = CITY.class_names.index("park")
    commercial = CITY.class_names.index("commercial")
    assert model.profile[park, 5:].min() > 1.3 * model.profile[park, :5].max()
    assert model.profile[commercial, 6] < 0.7 * model.profile[commercial, :6].mean()
    assert np.all(np.abs(model.cv - PARAMS.daily_fill_cv) < 0.15)


def test_predicted_level_grows_with_the_horizon_and_so_does_its_spread() -> None:
    model = fit(HISTORY)
    levels = np.full(CITY.n_bins, 0.2)
    mean0, var0 = model.predict(levels, 40, 0)
    mean1, var1 = model.predict(levels, 40, 1)
    mean3, var3 = model.predict(levels, 40, 3)
    assert np.array_equal(mean0, levels) and not var0.any()
    assert np.all(mean1 > levels) and np.all(mean3 > mean1)
    assert np.all(var3 > var1) and np.all(var1 > 0)
    expected = levels + sum(model.mean_fill(d) for d in (40, 41, 42))
    assert np.allclose(mean3, expected)


def test_a_neighbourhood_filling_fast_lifts_its_forecast() -> None:
    model = fit(HISTORY)
    assert model.event_weight > 0
    recent = model.mean_fill(39).copy()
    near = np.hypot(*(CITY.xy_km - CITY.xy_km[0]).T) < 0.5
    recent[near] *= 2.5  # a local event yesterday
    base, _ = model.predict(np.zeros(CITY.n_bins), 40, 1, recent=model.mean_fill(39))
    lifted, _ = model.predict(np.zeros(CITY.n_bins), 40, 1, recent=recent)
    assert lifted[0] > base[0]
    far = np.hypot(*(CITY.xy_km - CITY.xy_km[0]).T) > 3
    assert np.allclose(lifted[far], base[far])


def test_bad_input_is_refused() -> None:
    model = fit(HISTORY)
    with pytest.raises(InvalidInput, match="shape"):
        model.predict(np.zeros(3), 0, 1)
    with pytest.raises(InvalidInput, match="horizon"):
        model.predict(np.zeros(CITY.n_bins), 0, -1)
    with pytest.raises(InvalidInput, match="days >= 14"):
        FillHistory(
            increments=np.zeros((5, 3)),
            bin_class=np.zeros(3, dtype=np.int64),
            xy_km=np.zeros((3, 2)),
        )
