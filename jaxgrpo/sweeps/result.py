"""The result of a sweep: metrics ``[C, S, I]`` of every combination and seed, as arrays, a tidy
frame, a per-combination summary with bootstrap CIs, and learning curves."""
from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from ..plots import grid_label, plot_curves, sweep_curves
from ..stats import bootstrap_ci, last_valid


@dataclasses.dataclass
class SweepResult:
    """Results of ``sweep``. C combinations, S seeds, I kept iterations.

    grid: ``[C]`` dicts, the grid values of each combination.
    configs: ``[C]`` configs, ``config.replace(**grid[c])``.
    metrics: ``{name: float32 [C, S, I]}``; NaN where a metric does not apply (a GRPO metric
      in a PPO combination), where GRPO skipped an iteration after its env-step budget, and in
      padding rows past a combination's own length.
    iteration: ``int [C, I]``, the (0-based) training iteration of each kept row; -1 for
      padding rows (combinations with fewer iterations than the longest one).
    states: ``[C]`` final ``TrainState``s with a leading ``[S]`` axis (None on multi-host runs,
      where they are not addressable from one process).
    placement: one dict per compilation: ``combinations`` (indices), ``runs`` (R),
      ``padded_runs`` (R rounded up to the device count), ``rows_per_device``
      (``{device id: rows of the run axis it computed}``, every device of every process) and
      ``vmap_size`` (runs vmapped at once per device; None: all).
    vmap_size: the ``vmap_size`` argument (``"auto"`` by default; the value it resolved to is
      in ``placement``).
    seeds, base_seed: seed ``s`` used ``jax.random.split(jax.random.key(base_seed), seeds)[s]``.
    log_every: one row per ``log_every`` iterations (and the last) was kept, holding each
      metric's last non-NaN value over those iterations.
    """

    grid: list
    configs: list
    metrics: dict
    iteration: np.ndarray
    seeds: int
    base_seed: int = 0
    log_every: int = 1
    states: list | None = None
    placement: list = dataclasses.field(default_factory=list)
    vmap_size: int | str | None = "auto"

    @property
    def num_combinations(self) -> int:
        return len(self.grid)

    def keys(self) -> jax.Array:
        """The ``[S]`` seed keys."""
        return jax.random.split(jax.random.key(self.base_seed), self.seeds)

    def _grid_fields(self) -> list:
        names = []
        for g in self.grid:
            names += [k for k in g if k not in names]
        return names

    def to_dataframe(self):
        """Tidy ``pandas.DataFrame``: one row per combination x seed x kept iteration, with
        columns ``combination``, the grid fields, ``seed``, ``iteration`` and one column per
        metric. Padding rows are dropped; GRPO's skipped iterations stay (NaN metrics)."""
        import pandas as pd

        C, S, I = self.num_combinations, self.seeds, self.iteration.shape[1]
        c_idx, s_idx, i_idx = np.meshgrid(np.arange(C), np.arange(S), np.arange(I), indexing="ij")
        keep = (self.iteration[c_idx, i_idx] >= 0).ravel()
        cols = {"combination": c_idx.ravel()[keep]}
        for name in self._grid_fields():
            vals = [g.get(name) for g in self.grid]
            vals = [str(tuple(v)) if isinstance(v, (list, tuple)) else v for v in vals]
            col = np.empty(C, dtype=object)
            col[:] = vals
            cols[name] = col[c_idx.ravel()[keep]]
        cols["seed"] = s_idx.ravel()[keep]
        cols["iteration"] = self.iteration[c_idx, i_idx].ravel()[keep]
        for name, v in self.metrics.items():
            cols[name] = v.ravel()[keep]
        df = pd.DataFrame(cols)
        for name in self._grid_fields():   # object columns of numbers -> numeric dtype
            try:
                df[name] = pd.to_numeric(df[name])
            except (TypeError, ValueError):
                pass
        return df

    def to_csv(self, path) -> None:
        """Write ``to_dataframe()`` to ``path`` (parent folders are created)."""
        path = os.fspath(path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self.to_dataframe().to_csv(path, index=False)

    def final_return(self, metric: str = "episode_return") -> np.ndarray:
        """``[C, S]``: each seed's last non-NaN value of ``metric`` (NaN if it has none)."""
        return last_valid(self.metrics[metric])

    def summary(self, metric: str = "episode_return", n_boot: int = 10_000, ci: float = 0.95,
                seed: int = 0):
        """``pandas.DataFrame``, one row per combination (the index, ``combination``): the
        grid fields, ``seeds`` (how many have a final value), ``mean`` of each seed's final
        ``metric`` (``final_return``) over the seeds, and its percentile-bootstrap
        ``ci_low``/``ci_high`` (``n_boot`` resamples of the seeds, level ``ci``). Short
        column names, so that ``print(res.summary())`` fits 80 columns for a few grid fields.
        """
        import pandas as pd

        final = self.final_return(metric)
        rows = []
        for c, g in enumerate(self.grid):
            x = final[c][~np.isnan(final[c])]
            mean, lo, hi = bootstrap_ci(x, num=n_boot, seed=seed + c, level=ci)
            rows.append({**{k: (str(tuple(v)) if isinstance(v, (list, tuple)) else v)
                            for k, v in g.items()},
                         "seeds": len(x), "mean": mean, "ci_low": lo, "ci_high": hi})
        df = pd.DataFrame(rows)
        df.index.name = "combination"
        df.attrs["metric"] = f"final {metric}"
        return df

    def label(self, c: int) -> str:
        """``"lr=0.001, beta=0"``: combination ``c``'s grid values."""
        return grid_label(self.grid[c])

    def plot(self, path, metric: str = "episode_return", x: str = "env_steps",
             title: str | None = None):
        """Learning curves, one per combination, exactly as ``jaxgrpo plot`` draws a sweep
        folder (``plots.sweep_curves``): the mean over seeds of ``metric`` against ``x`` with a
        95% bootstrap CI band. Saved to ``path``; parent folders are created."""
        path = os.fspath(path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        plot_curves(sweep_curves(self.to_dataframe()), path, metric, x=x,
                    title=title or self.configs[0].env)
