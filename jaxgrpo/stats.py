"""Statistics over seeds: NaN-aware final values, percentile-bootstrap CIs of the mean, and
learning curves with a CI band on a common env-step grid. NumPy only."""
from __future__ import annotations

import warnings

import numpy as np


def last_valid(x: np.ndarray, k: int = 1) -> np.ndarray:
    """Mean of the last ``k`` non-NaN entries along the last axis: [..., I] -> [...]."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(-1, x.shape[-1])
    out = np.array([row[~np.isnan(row)][-k:].mean() if (~np.isnan(row)).any() else np.nan
                    for row in flat])
    return out.reshape(x.shape[:-1])


def bootstrap_ci(values, num: int = 10_000, seed: int = 0, level: float = 0.95):
    """Mean and percentile-bootstrap CI of the mean: (mean, low, high). NaNs are dropped."""
    v = np.asarray(values, np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(v, size=(num, v.size), replace=True).mean(1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))



class no_warnings(warnings.catch_warnings):
    """Silence NumPy's RuntimeWarnings (means of all-NaN slices) inside the block."""

    def __enter__(self):
        super().__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)


def curve(df, metric: str = "episode_return", points: int = 200, smooth: int = 1,
          num_boot: int = 1000, seed: int = 0, x: str = "env_steps"):
    """Mean and 95% bootstrap CI band over seeds of ``metric`` against ``x`` (env steps).

    Each seed's valid (non-NaN) points are smoothed with a running mean over ``smooth``
    iterations and interpolated on a common grid of ``points`` env-step values that spans the
    range every seed covers (from the latest first point to the earliest last point): the mean
    is always over the same seeds, and never goes past the shortest seed (GRPO seeds collecting
    on-policy end at different env steps). Returns ``(x, mean, low, high)``, each ``[points]``.
    """
    rows = []
    for _, g in df.sort_values(["seed", "iteration"]).groupby("seed"):
        xs = g[x].to_numpy(np.float64)
        y = g[metric].to_numpy(np.float64)
        ok = ~np.isnan(y) & ~np.isnan(xs)
        xs, y = xs[ok], y[ok]
        if smooth > 1 and y.size:     # running mean over the last `smooth` valid points
            c = np.concatenate([[0.0], np.cumsum(y)])
            j = np.arange(y.size)
            start = np.maximum(0, j + 1 - smooth)
            y = (c[j + 1] - c[start]) / (j + 1 - start)
        rows.append((xs, y))
    rows = [(xs, y) for xs, y in rows if xs.size] or [(np.zeros(1), np.full(1, np.nan))]
    lo_x = max(xs[0] for xs, _ in rows)
    grid = np.linspace(lo_x, max(lo_x, min(xs[-1] for xs, _ in rows)), points)
    Y = np.full((len(rows), points), np.nan)
    for i, (xs, y) in enumerate(rows):
        inside = (grid >= xs[0]) & (grid <= xs[-1])
        Y[i, inside] = np.interp(grid[inside], xs, y)
    with np.errstate(all="ignore"), no_warnings():
        mean = np.nanmean(Y, 0)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(rows), size=(num_boot, len(rows)))
        boot = np.nanmean(Y[idx], 1)                                   # [B, points]
        lo, hi = np.nanquantile(boot, 0.025, 0), np.nanquantile(boot, 0.975, 0)
    return grid, mean, lo, hi
