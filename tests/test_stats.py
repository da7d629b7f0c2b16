"""jaxgrpo.stats against plain NumPy: final values, bootstrap CIs, learning-curve bands."""
import numpy as np
import pandas as pd
import pytest

from jaxgrpo.stats import bootstrap_ci, curve, last_valid

nan = np.nan


def test_last_valid_is_the_mean_of_the_last_k_real_values():
    x = np.array([[1.0, 2.0, nan, 4.0, nan], [nan, nan, nan, nan, nan], [5.0, nan, 7.0, 8.0, 9.0]])
    np.testing.assert_array_equal(last_valid(x), [4.0, nan, 9.0])
    np.testing.assert_array_equal(last_valid(x, k=2), [3.0, nan, 8.5])
    np.testing.assert_array_equal(last_valid(x[None]), [[4.0, nan, 9.0]])      # any leading axes


def test_bootstrap_ci_matches_a_plain_resampling():
    v = np.array([3.0, 1.0, nan, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    mean, lo, hi = bootstrap_ci(v, num=2000, seed=7)
    x = v[~np.isnan(v)]
    rng = np.random.default_rng(7)
    means = rng.choice(x, size=(2000, x.size), replace=True).mean(1)
    assert mean == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx((np.quantile(means, 0.025), np.quantile(means, 0.975)))
    assert lo < mean < hi
    assert bootstrap_ci([5.0, 5.0])[1:] == (5.0, 5.0)                # no spread, no width
    assert all(np.isnan(bootstrap_ci([nan, nan])))


def test_curve_averages_every_seed_on_one_grid_never_past_the_shortest_seed():
    # seed 0 covers 0..100 env steps, seed 1 10..50 (GRPO seeds on-policy end at different env
    # steps); NaN rows (skipped iterations) drop out. The grid spans 10..50, where both are:
    # the mean never jumps where one seed's curve ends (it did, with a grid to 100).
    df = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "iteration": [0, 1, 2, 0, 1, 2],
                       "env_steps": [0.0, 50.0, 100.0, 10.0, 50.0, 50.0],
                       "episode_return": [0.0, 10.0, 20.0, 2.0, 4.0, nan]})
    x, mean, lo, hi = curve(df, points=5, num_boot=200)
    np.testing.assert_allclose(x, [10, 20, 30, 40, 50])
    s0 = np.interp(x, [0, 50, 100], [0, 10, 20])
    s1 = np.interp(x, [10, 50], [2, 4])
    np.testing.assert_allclose(mean, (s0 + s1) / 2)
    assert (lo <= mean + 1e-12).all() and (mean <= hi + 1e-12).all()
    assert hi[-1] - lo[-1] > 5                             # both seeds (10 and 4) at the end


def test_curve_smoothing_is_a_running_mean_over_real_points():
    df = pd.DataFrame({"seed": 0, "iteration": range(4), "env_steps": [0.0, 1.0, 2.0, 3.0],
                       "episode_return": [0.0, 4.0, 8.0, 2.0]})
    _, mean, _, _ = curve(df, points=4, smooth=2)
    np.testing.assert_allclose(mean, [0.0, 2.0, 6.0, 5.0])
