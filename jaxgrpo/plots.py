"""Learning-curve figures from metric frames: curves overlaid, each the mean over seeds and a
95% bootstrap CI band against env steps. Reading run and sweep folders into such frames is
``jaxgrpo.rundir``'s (``rundir.plot_runs``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .stats import curve


def _steps_label(x, _pos=None) -> str:
    """Tick labels: 0, 250k, 1.5M."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    return f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"


def grid_label(values) -> str:
    """``{"lr": 0.001, "beta": 0.0}`` -> ``"lr=0.001, beta=0"`` (a combination's label)."""
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in values.items()) or "base config"


def seeds_label(df) -> str:
    n = df["seed"].nunique()
    return f"({n} seed{'s' if n > 1 else ''})"


def sweep_curves(df) -> list:
    """``[(label, frame)]``, one per combination of a sweep's tidy metrics (``SweepResult.
    to_dataframe``: a ``combination`` column, then the grid fields, then ``seed``), labelled by
    its grid values and seed count: ``"lr=0.001, beta=0 (4 seeds)"``."""
    cols = list(df.columns)
    grid = cols[cols.index("combination") + 1:cols.index("seed")]
    out = []
    for _, g in df.groupby("combination", sort=True):
        first = g.iloc[0]
        values = {k: first[k].item() if hasattr(first[k], "item") else first[k] for k in grid}
        out.append((f"{grid_label(values)} {seeds_label(g)}", g))
    return out


def plot_curves(curves: Sequence, path, metric: str = "episode_return",
                title: str | None = None, smooth: int = 1, x: str = "env_steps") -> None:
    """Draw ``[(label, tidy frame with seed, iteration, x, metric)]`` into ``path`` (format
    from its suffix): mean over seeds and 95% bootstrap CI band against ``x`` (env steps, or
    any other column of the frames, e.g. ``"iteration"``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, df in curves:
        xs, mean, lo, hi = curve(df, metric, smooth=smooth, x=x)
        line, = ax.plot(xs, mean, label=label, lw=1.8)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    if x == "env_steps":
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_steps_label))
    ax.set_xlabel("env steps (per seed)" if x == "env_steps" else x.replace("_", " "))
    ax.set_ylabel(metric.replace("_", " ") + " (mean, 95% CI over seeds)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small" if len(curves) > 4 else None)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
