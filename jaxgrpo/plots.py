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
    """Draw ``[(label, tidy frame with seed, iteration, x, metric)[, axis]]`` into ``path``
    (format from its suffix): mean over seeds and 95% bootstrap CI band against ``x`` (env
    steps, or any other column of the frames, e.g. ``"iteration"``). ``axis`` names what ``x``
    counts for that curve (default ``"env steps"``; e.g. ``"SFT: training examples"``,
    ``"GRPO: completion tokens"``): curves of different axes are drawn in panels side by side,
    left to right in order of appearance, each with its own labelled x axis (an SFT warm start
    and the GRPO run it started)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    default = "env steps" if x == "env_steps" else x.replace("_", " ")
    panels: dict = {}
    for c in curves:
        panels.setdefault(c[2] if len(c) > 2 else default, []).append(c[:2])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 if len(panels) == 1 else 5.2 * len(panels), 4.2),
                             sharey=True, squeeze=False)
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for ax, (axis, group) in zip(axes[0], panels.items()):
        for label, df in group:
            xs, mean, lo, hi = curve(df, metric, smooth=smooth, x=x)
            line, = ax.plot(xs, mean, label=label, lw=1.8, color=next(colors))
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
        if x == "env_steps":
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_steps_label))
        ax.set_xlabel(f"{axis} (per seed)" if x == "env_steps" else axis)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small" if len(group) > 4 else None)
    axes[0, 0].set_ylabel(metric.replace("_", " ") + " (mean, 95% CI over seeds)")
    if title:
        fig.suptitle(title) if len(panels) > 1 else axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
