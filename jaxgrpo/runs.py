"""Run folders: train a config into a folder, resume it, evaluate it, plot it.

A run folder holds

- ``config.yaml``: the resolved config (``algo``, every field, ``seeds``, ``base_seed``);
  ``jaxgrpo train --config RUN/config.yaml`` reproduces the run;
- ``metrics.csv``: tidy, one row per (seed, iteration): ``seed, iteration, env_steps`` and every
  metric (empty cells = NaN: GRPO iterations skipped once the env-step budget is spent);
- ``summary.json``: final return (mean and 95% bootstrap CI over seeds), compile and run
  seconds, env steps per second, versions, device;
- ``curves.png``: mean episode return and its 95% CI band over seeds against env steps;
- ``checkpoints/``: orbax checkpoints (``jaxgrpo.checkpoint``) of the seed-batched TrainState
  and the metrics so far, every ``checkpoint_every`` iterations and at the end;
- ``eval.json`` after ``jaxgrpo eval``.

Seed ``s`` of a run with ``seeds=S, base_seed=b`` trains with
``jax.random.split(jax.random.key(b), S)[s]``: the run is
``jax.jit(jax.vmap(make_train(config)))(jax.random.split(jax.random.key(b), S))`` done in chunks
of ``checkpoint_every`` iterations (``train.run``), which gives the same result.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

RUN_KEYS = ("algo", "seeds", "base_seed")
RESULT_FILES = ("config.yaml", "metrics.csv", "summary.json", "curves.png", "checkpoints")
FIRST_COLUMNS = ("seed", "iteration", "env_steps")


class RunError(ValueError):
    """Bad input for a run (existing results, not a run folder, mismatched resume, ...)."""


# ----------------------------------------------------------------------------- statistics

def machine() -> str:
    """One line: CPU model, cores, JAX version and device."""
    import jax
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__}, "
            f"device {jax.devices()[0].device_kind}")


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


def versions() -> dict:
    """Versions of jaxgrpo and the libraries a result depends on."""
    from importlib import metadata
    out = {"python": platform.python_version()}
    for name in ("jaxgrpo", "jax", "jaxlib", "flax", "optax", "gymnax", "orbax-checkpoint"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device() -> str:
    """``"cpu: cpu"``, ``"gpu: NVIDIA H100 80GB HBM3"``, ... (platform and kind of device 0,
    with the device count when there are several)."""
    import jax
    d = jax.devices()
    s = d[0].platform + ("" if d[0].device_kind == d[0].platform else f": {d[0].device_kind}")
    return s + (f" x{len(d)}" if len(d) > 1 else "")


# ----------------------------------------------------------------------------- config <-> YAML

def yaml_loader():
    """A ``yaml.SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.2 style; PyYAML
    alone reads it as a string)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def parse_value(text: str):
    """A command-line value as YAML: ``3e-4`` -> 0.0003, ``true`` -> True, ``[32, 32]`` ->
    list, ``{size: 10}`` -> dict, ``symlog`` -> 'symlog', empty -> None."""
    import yaml
    try:
        return yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse {text!r}: {getattr(e, 'problem', None) or e}") from None


def load_yaml(path) -> dict:
    """Read a YAML mapping; ``ValueError`` with one line naming the file and the problem."""
    import yaml
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=yaml_loader())
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ValueError(f"{path}: not valid YAML: {what}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a YAML mapping of config fields, got "
                         f"{type(data).__name__}")
    return data


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def config_to_dict(config, seeds: int | None = None, base_seed: int | None = None) -> dict:
    """The resolved config as plain YAML/JSON values: ``algo``, every field (tuples as lists,
    ``reward_transform`` by name), then ``seeds`` and ``base_seed`` when given.
    Raises ``ValueError`` for a custom reward function (it has no name to write)."""
    from . import rewards
    d = {"algo": config.algo}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        v = getattr(config, f.name)
        if f.name == "reward_transform":
            name = rewards.name_of(v)
            try:
                rewards.from_string(name)
            except ValueError:
                raise ValueError(f"reward_transform: {name} is a custom function; only named "
                                 "transforms can be written to a run's config.yaml") from None
            v = name
        d[f.name] = _plain(v)
    if seeds is not None:
        d["seeds"] = int(seeds)
    if base_seed is not None:
        d["base_seed"] = int(base_seed)
    return d


def _int_like(annotation) -> bool:
    return str(annotation).replace(" ", "") in ("int", "int|None", "Optional[int]")


def config_from_dict(d: Mapping):
    """``(config, seeds, base_seed)`` from a dict like ``config_to_dict``'s (any subset; missing
    fields take the defaults, ``algo`` defaults to grpo, ``seeds`` to 1, ``base_seed`` to 0).

    Raises ``ValueError`` whose message starts with the offending field."""
    from .config import config_class
    d = dict(d)
    algo = d.pop("algo", "grpo")
    seeds = d.pop("seeds", 1)
    base_seed = d.pop("base_seed", 0)
    for name, v, low in (("seeds", seeds, 1), ("base_seed", base_seed, 0)):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name}: must be an int >= {low}, got {v!r}")
    seeds, base_seed = int(seeds), int(base_seed)
    cls = config_class(algo)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in d:
        if k not in fields:
            raise ValueError(f"{k}: unknown field of {cls.__name__} (algo {algo!r})")
    for k, v in list(d.items()):
        if _int_like(fields[k].type) and isinstance(v, float) and v.is_integer():
            d[k] = int(v)
    if "hidden_sizes" in d and not isinstance(d["hidden_sizes"], (list, tuple)):
        raise ValueError(f"hidden_sizes: must be a list of ints, got {d['hidden_sizes']!r}")
    try:
        config = cls(**d)
    except TypeError as e:
        raise ValueError(f"config: {e}") from None
    return config, seeds, base_seed


def apply_override(d: dict, text: str) -> dict:
    """``d`` with ``key=value`` applied (value parsed as YAML). ``a.b=value`` sets key ``b``
    of the dict field ``a`` (e.g. ``env_params.max_steps_in_episode=200``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set: expected key=value, got {text!r}")
    v = parse_value(value)
    parts = key.split(".")
    d = dict(d)
    node = d
    for i, p in enumerate(parts[:-1]):
        child = node.get(p, {})
        if child is None:
            child = {}
        if not isinstance(child, Mapping):
            raise ValueError(f"{'.'.join(parts[:i + 1])}: is not a dict field, cannot set {key}")
        node[p] = dict(child)
        node = node[p]
    node[parts[-1]] = v
    return d


def save_config(path, config, seeds: int, base_seed: int) -> None:
    import yaml
    with open(path, "w") as f:
        f.write("# jaxgrpo run config: `jaxgrpo train --config THIS_FILE` reproduces the run\n")
        yaml.safe_dump(config_to_dict(config, seeds, base_seed), f, sort_keys=False)


def load_config(path):
    """``(config, seeds, base_seed)`` from a YAML file (a run's config.yaml or a hand-written
    one); ``ValueError`` naming the file and the field otherwise."""
    d = load_yaml(path)
    try:
        return config_from_dict(d)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------- metrics, summary

def metrics_frame(metrics: Mapping[str, np.ndarray]):
    """``{name: [S, I]}`` -> tidy ``pandas.DataFrame``: one row per (seed, iteration), columns
    ``seed, iteration, env_steps`` then the other metrics in name order."""
    import pandas as pd
    m = {k: np.asarray(v) for k, v in metrics.items()}
    S, I = m["env_steps"].shape
    cols = {"seed": np.repeat(np.arange(S), I), "iteration": np.tile(np.arange(I), S)}
    for k in ["env_steps"] + sorted(k for k in m if k != "env_steps"):
        cols[k] = m[k].reshape(S * I)
    return pd.DataFrame(cols)


def frame_to_metrics(df) -> dict:
    """Inverse of ``metrics_frame``: ``{name: [S, I]}`` (float64)."""
    df = df.sort_values(["seed", "iteration"])
    S, I = df["seed"].nunique(), df["iteration"].nunique()
    return {k: df[k].to_numpy(np.float64).reshape(S, I) for k in df.columns
            if k not in ("seed", "iteration")}


def summarize(config, metrics, *, seeds, base_seed, iterations_done, compile_seconds,
              run_seconds) -> dict:
    """The summary.json dict. final_return: per seed, ``episode_return`` of the last iteration
    that ran (NaN-aware); mean and 95% percentile-bootstrap CI over seeds."""
    ret = np.asarray(metrics["episode_return"], np.float64)
    steps = np.asarray(metrics["env_steps"], np.float64)
    per_seed = last_valid(ret) if ret.shape[-1] else np.full(ret.shape[0], np.nan)
    mean, lo, hi = bootstrap_ci(per_seed)
    final_steps = steps[:, -1] if steps.shape[-1] else np.zeros(steps.shape[0])
    nan_none = lambda x: None if x is None or not np.isfinite(x) else float(x)
    return {
        "algo": config.algo, "env": config.env, "seeds": seeds, "base_seed": base_seed,
        "iterations": config.iterations, "iterations_done": int(iterations_done),
        "complete": int(iterations_done) == config.iterations,
        "final_return": {"mean": nan_none(mean), "ci95": [nan_none(lo), nan_none(hi)],
                         "per_seed": [nan_none(x) for x in per_seed],
                         "definition": "episode_return of each seed's last iteration that ran; "
                                       "mean and 95% percentile bootstrap CI over seeds"},
        "env_steps_per_seed": float(np.mean(final_steps)),
        "env_steps_total": float(np.sum(final_steps)),
        "compile_seconds": round(float(compile_seconds), 3),
        "run_seconds": round(float(run_seconds), 3),
        "steps_per_second": (float(np.sum(final_steps)) / run_seconds if run_seconds > 0
                             else None),
        "versions": versions(), "device": device(), "machine": machine(),
    }


def write_results(out, config, metrics, summary, plot=True) -> None:
    out = Path(out)
    metrics_frame(metrics).to_csv(out / "metrics.csv", index=False)
    with open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    if plot:
        plot_runs([out], out / "curves.png", title=f"{config.algo.upper()} on {config.env}")


# ----------------------------------------------------------------------------- plots

def curve(df, metric: str = "episode_return", points: int = 200, smooth: int = 1,
          num_boot: int = 1000, seed: int = 0):
    """Mean and 95% bootstrap CI band over seeds of ``metric`` against env steps.

    Each seed's valid (non-NaN) points are smoothed with a running mean over ``smooth``
    iterations and interpolated on a common grid of ``points`` env-step values (a seed counts
    only inside the env-step range it covers). Returns ``(x, mean, low, high)``, each
    ``[points]``.
    """
    rows = []
    for _, g in df.sort_values(["seed", "iteration"]).groupby("seed"):
        x = g["env_steps"].to_numpy(np.float64)
        y = g[metric].to_numpy(np.float64)
        ok = ~np.isnan(y) & ~np.isnan(x)
        x, y = x[ok], y[ok]
        if smooth > 1 and y.size:     # running mean over the last `smooth` valid points
            c = np.concatenate([[0.0], np.cumsum(y)])
            j = np.arange(y.size)
            start = np.maximum(0, j + 1 - smooth)
            y = (c[j + 1] - c[start]) / (j + 1 - start)
        rows.append((x, y))
    xmax = max((x.max() for x, _ in rows if x.size), default=1.0)
    grid = np.linspace(0.0, xmax, points)
    Y = np.full((len(rows), points), np.nan)
    for i, (x, y) in enumerate(rows):
        if x.size:
            inside = (grid >= x[0]) & (grid <= x[-1])
            Y[i, inside] = np.interp(grid[inside], x, y)
    with np.errstate(all="ignore"), _no_warnings():
        mean = np.nanmean(Y, 0)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(rows), size=(num_boot, len(rows)))
        boot = np.nanmean(Y[idx], 1)                                   # [B, points]
        lo, hi = np.nanquantile(boot, 0.025, 0), np.nanquantile(boot, 0.975, 0)
    return grid, mean, lo, hi


class _no_warnings:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        self._w.__exit__(*a)


def _steps_label(x, _pos=None) -> str:
    """Tick labels: 0, 250k, 1.5M."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    return f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"


def read_run(run_dir) -> tuple[dict, Any]:
    """``(config dict, metrics DataFrame)`` of a run folder (no JAX needed)."""
    import pandas as pd
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.csv").is_file():
        raise RunError(f"{run_dir}: no metrics.csv; not a finished or checkpointed run folder")
    cfg = load_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else {}
    try:
        df = pd.read_csv(run_dir / "metrics.csv")
    except Exception as e:  # noqa: BLE001 - any parse failure is the file's
        raise RunError(f"{run_dir}/metrics.csv: unreadable ({type(e).__name__}: {e})") from None
    missing = {"seed", "iteration", "env_steps"} - set(df.columns)
    if missing:
        raise RunError(f"{run_dir}/metrics.csv: missing column {sorted(missing)[0]!r}")
    return cfg, df


def plot_runs(run_dirs: Sequence, path, metric: str = "episode_return",
              labels: Sequence[str] | None = None, title: str | None = None,
              smooth: int = 1) -> None:
    """One figure: for each run folder, the mean of ``metric`` over seeds against env steps
    and its 95% bootstrap CI band (see ``curve``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs = [read_run(d) for d in run_dirs]
    for d, (_, df) in zip(run_dirs, runs):
        if metric not in df.columns:
            raise RunError(f"{d}/metrics.csv: no metric {metric!r}; it has "
                           f"{[c for c in df.columns if c not in ('seed', 'iteration')]}")
    if labels is not None and len(labels) != len(runs):
        raise RunError(f"--labels: {len(labels)} labels for {len(runs)} runs")
    envs = {cfg.get("env") for cfg, _ in runs}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (d, (cfg, df)) in enumerate(zip(run_dirs, runs)):
        x, mean, lo, hi = curve(df, metric, smooth=smooth)
        n = df["seed"].nunique()
        if labels is not None:
            label = labels[i]
        else:
            label = f"{str(cfg.get('algo', Path(d).name)).upper()}"
            if len(envs) > 1:
                label += f" {cfg.get('env')}"
            label += f" ({n} seed{'s' if n > 1 else ''})"
            if sum(1 for c, _ in runs if c.get("algo") == cfg.get("algo")) > 1:
                label += f" [{Path(d).name}]"
        line, = ax.plot(x, mean, label=label, lw=1.8)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_steps_label))
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel(metric.replace("_", " ") + " (mean, 95% CI over seeds)")
    if title is None and len(envs) == 1:
        title = next(iter(envs))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- live progress

class _Sink:
    """Where the compiled loop's callbacks go (one module-level dispatcher, so a compiled
    program can be reused by later runs of the same config)."""

    def __init__(self):
        self.target = None

    def __call__(self, i, metrics):
        t = self.target
        if t is not None:
            t(i, metrics)


_SINK = _Sink()


class Reporter:
    """Aggregates the per-seed callbacks of the compiled loop (``callback(i, metrics)`` is called
    once per seed) into one update per reported iteration: a progress bar (rich) with env steps,
    the mean return over seeds and env steps per second, and the loggers (TensorBoard,
    W&B), which get the seed means of every metric.

    ``offset``: the global index of the current chunk's first iteration (the callback's ``i``
    counts from 0 in every ``train.run`` call).
    """

    def __init__(self, num_seeds: int, total_steps: int, iterations: int, *, bar: bool,
                 loggers: Sequence = (), description: str = "training"):
        self.num_seeds, self.total_steps, self.iterations = num_seeds, total_steps, iterations
        self.loggers = list(loggers)
        self.offset = 0
        self._pending: dict[int, list] = collections.defaultdict(list)
        self._lock = threading.Lock()
        self._last_return = float("nan")
        self._t0 = None
        self._steps0 = 0.0
        self._bar = None
        if bar:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(bar_width=24),
                TextColumn("{task.fields[steps]} steps"),
                TextColumn("return {task.fields[ret]}"),
                TextColumn("{task.fields[sps]} steps/s"),
                TextColumn("it {task.fields[it]}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False)
            self._description = description

    def start(self, env_steps_per_seed: float = 0.0):
        """Call when the compiled loop starts running (after compilation)."""
        self._t0 = time.perf_counter()
        self._steps0 = env_steps_per_seed * self.num_seeds
        if self._bar is not None:
            self._task = self._bar.add_task(
                self._description, total=self.total_steps, completed=env_steps_per_seed,
                steps=f"{env_steps_per_seed:,.0f}", ret="-", sps="-", it=f"-/{self.iterations}")
            self._bar.start()

    def __call__(self, i, metrics):
        it = self.offset + int(i)
        row = {k: float(np.asarray(v)) for k, v in metrics.items()}
        with self._lock:
            self._pending[it].append(row)
            if len(self._pending[it]) < self.num_seeds:
                return
            rows = self._pending.pop(it)
        with _no_warnings():
            means = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
        self.update(it, means)

    def update(self, it: int, means: dict):
        if np.isfinite(means.get("episode_return", np.nan)):
            self._last_return = means["episode_return"]
        steps = means.get("env_steps", 0.0)
        dt = time.perf_counter() - (self._t0 or time.perf_counter())
        sps = (steps * self.num_seeds - self._steps0) / dt if dt > 0 else float("nan")
        if self._bar is not None and self._t0 is not None:
            self._bar.update(self._task, completed=steps, steps=f"{steps:,.0f}",
                             ret=f"{self._last_return:.1f}",
                             sps=f"{sps:,.0f}" if np.isfinite(sps) else "-",
                             it=f"{it + 1}/{self.iterations}")
        for lg in self.loggers:
            lg.log(it, means)

    def close(self, final_steps: float | None = None):
        if self._bar is not None and self._t0 is not None:
            if final_steps is not None:
                self._bar.update(self._task, completed=final_steps, steps=f"{final_steps:,.0f}")
            self._bar.stop()
            self._bar = None
        for lg in self.loggers:
            lg.close()


def require(module: str, flag: str, extra: str):
    """Import an optional dependency or raise ``RunError`` saying how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RunError(f"{flag} needs {module}: pip install 'jaxgrpo[{extra}]'") from None


class TensorBoardLogger:
    """Seed means of every metric to TensorBoard event files in ``logdir`` (tensorboardX, from
    the ``tensorboard`` extra), x axis = iteration."""

    def __init__(self, logdir):
        SummaryWriter = require("tensorboardX", "--tensorboard", "tensorboard").SummaryWriter
        self.writer = SummaryWriter(str(logdir))

    def log(self, it, means):
        for k, v in means.items():
            if np.isfinite(v):
                self.writer.add_scalar(f"train/{k}", v, global_step=it + 1)
        self.writer.flush()

    def close(self):
        self.writer.close()


class WandbLogger:
    """Seed means of every metric to Weights & Biases (``wandb`` extra). The run id is kept in
    ``RUN/wandb_id.txt`` so that ``--resume`` continues the same W&B run."""

    def __init__(self, out, config_dict, project="jaxgrpo"):
        wandb = require("wandb", "--wandb", "wandb")
        id_file = Path(out) / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        id_file.write_text(run_id + "\n")
        self.wandb = wandb
        self.run = wandb.init(project=project, id=run_id, resume="allow", dir=str(out),
                              name=Path(out).name, config=config_dict)

    def log(self, it, means):
        self.run.log({f"train/{k}": v for k, v in means.items() if np.isfinite(v)},
                     step=it + 1)

    def close(self):
        self.run.finish()


# ----------------------------------------------------------------------------- compiled pieces

_CACHE: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()
_CACHE_SIZE = 8


def _config_key(config) -> str:
    return json.dumps(config_to_dict(config), sort_keys=True)


def _cached(key, build):
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key], 0.0
    t = time.perf_counter()
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value, time.perf_counter() - t


def _opts_key(compiler_options):
    return json.dumps(compiler_options or {}, sort_keys=True)


def _make_train(config, log_every):
    from .train import make_train
    return _cached(("train", _config_key(config), log_every),
                   lambda: make_train(config, callback=_SINK, callback_every=log_every))[0]


def _compiled_init(config, seeds, log_every, compiler_options=None):
    """Compiled ``keys [S] -> TrainState`` (leading seed axis) and its compile seconds."""
    import jax
    train = _make_train(config, log_every)
    keys = jax.ShapeDtypeStruct((seeds,), jax.random.key(0).dtype)
    return _cached(("init", _config_key(config), seeds, _opts_key(compiler_options)),
                   lambda: jax.jit(jax.vmap(lambda k: train.init(k))).lower(keys)
                   .compile(compiler_options=compiler_options))


def _compiled_run(config, seeds, n, log_every, state_shape, compiler_options=None):
    """Compiled ``state [S, ...] -> (state, metrics {name: [S, n]})``: ``n`` iterations of
    every seed (one ``train.run`` scan, vmapped), and its compile seconds."""
    import jax
    train = _make_train(config, log_every)
    return _cached(_run_key(config, seeds, n, log_every, compiler_options),
                   lambda: jax.jit(jax.vmap(lambda s: train.run(s, None, n)))
                   .lower(state_shape).compile(compiler_options=compiler_options))


def _run_key(config, seeds, n, log_every, compiler_options=None):
    return ("run", _config_key(config), seeds, n, log_every, _opts_key(compiler_options))


def default_log_every(iterations: int) -> int:
    """About 200 progress updates per run."""
    return max(1, math.ceil(iterations / 200))


def state_template(config, seeds: int, log_every: int = 1):
    """``jax.eval_shape`` of the seed-batched initial TrainState."""
    import jax
    train = _make_train(config, log_every)
    keys = jax.ShapeDtypeStruct((seeds,), jax.random.key(0).dtype)
    return jax.eval_shape(jax.vmap(lambda k: train.init(k)), keys)


def holds_results(out) -> bool:
    out = Path(out)
    return out.is_dir() and any((out / f).exists() for f in RESULT_FILES)


# ----------------------------------------------------------------------------- training

def run_training(config, out, *, seeds: int = 1, base_seed: int = 0,
                 checkpoint_every: int | None = None, stop_after: int | None = None,
                 resume: bool = False, progress: bool = False, log_every: int | None = None,
                 tensorboard: bool = False, wandb: bool = False, wandb_project: str = "jaxgrpo",
                 max_to_keep: int | None = 3, compiler_options: dict | None = None,
                 echo=None) -> dict:
    """Train ``config`` with ``seeds`` vmapped seeds into the run folder ``out``; returns the
    summary dict (also written to ``out/summary.json``).

    The compiled loop runs in chunks of ``checkpoint_every`` iterations (all of them when None);
    a checkpoint is written after every chunk and at the end. ``stop_after``: stop (with a
    checkpoint) once that many iterations are done. ``resume``: continue ``out`` from its
    latest checkpoint (the config must be the folder's); without it, a folder that already holds
    results is refused (``RunError``). A resumed run ends with the same parameters and metrics,
    bitwise, as the run done in one go.

    progress: show a progress bar on stderr; log_every: report every k iterations to the bar and
    the loggers (default: about 200 reports per run). compiler_options: XLA options for the
    compiled loop (e.g. ``{"xla_backend_optimization_level": 0}`` compiles about twice as fast
    on CPU; results may then differ in the last bits from a default build). echo: a
    ``print``-like function for the few status lines (None: silent).
    """
    from .checkpoint import Checkpointer

    with Checkpointer(Path(out) / "checkpoints", max_to_keep=max_to_keep) as ckpt:
        return _run_training(ckpt, config, out, seeds=seeds, base_seed=base_seed,
                             checkpoint_every=checkpoint_every, stop_after=stop_after,
                             resume=resume, progress=progress, log_every=log_every,
                             tensorboard=tensorboard, wandb=wandb, wandb_project=wandb_project,
                             compiler_options=compiler_options, echo=echo)


def _run_training(ckpt, config, out, *, seeds, base_seed, checkpoint_every, stop_after, resume,
                  progress, log_every, tensorboard, wandb, wandb_project, compiler_options,
                  echo) -> dict:
    import jax

    say = echo or (lambda *a, **k: None)
    out = Path(out)
    run_dict = config_to_dict(config, seeds, base_seed)
    for name, v in (("checkpoint_every", checkpoint_every), ("stop_after", stop_after)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise RunError(f"{name}: must be an int >= 1, got {v!r}")
    I = config.iterations
    log_every = log_every or default_log_every(I)

    latest = None
    if resume:
        if not (out / "config.yaml").is_file():
            raise RunError(f"--resume {out}: no config.yaml there; not a run folder")
        saved, saved_seeds, saved_base = load_config(out / "config.yaml")
        from .checkpoint import config_diff
        diff = config_diff(config_to_dict(saved, saved_seeds, saved_base), run_dict)
        if diff:
            raise RunError(f"--resume {out}: the config differs from the run's config.yaml: "
                           f"{diff}")
        latest = ckpt.latest_step()
    elif holds_results(out):
        raise RunError(f"{out} already holds a run (config.yaml, metrics or checkpoints); "
                       "choose another --out, delete it, or continue it with --resume")

    if tensorboard:
        require("tensorboardX", "--tensorboard", "tensorboard")
    if wandb:
        require("wandb", "--wandb", "wandb")

    keys = jax.random.split(jax.random.key(base_seed), seeds)
    compile_s = run_s = 0.0
    chunks: list[dict] = []
    if latest is not None:                     # a bad checkpoint fails here, before any write
        template = state_template(config, seeds, log_every)
        state, metrics0, meta = ckpt.restore(latest, template, expected_config=run_dict)
        done = int(meta["iteration"])
        if done != latest or any(v.shape != (seeds, done) for v in metrics0.values()):
            from .checkpoint import CheckpointError
            raise CheckpointError(f"checkpoint {ckpt.directory}/{latest}: holds "
                                  f"{done} iterations of metrics, expected {latest}")
        compile_s, run_s = float(meta.get("compile_seconds", 0)), float(meta.get("run_seconds", 0))
        chunks.append(metrics0)
        say(f"resuming {out} at iteration {done}/{I}")
    else:
        if resume:
            say(f"{out}: no checkpoint yet, starting at iteration 0")
        state, done = None, 0

    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_config(out / "config.yaml", config, seeds, base_seed)
    loggers = []
    if tensorboard:
        loggers.append(TensorBoardLogger(out / "tensorboard"))
    if wandb:
        loggers.append(WandbLogger(out, run_dict, wandb_project))
    announced = False
    if state is None:
        say(f"compiling {config.algo.upper()} {config.env}: {seeds} seed(s) ...")
        announced = True
        init, dt = _compiled_init(config, seeds, log_every, compiler_options)
        compile_s += dt
        state = jax.block_until_ready(init(keys))

    stop = I if stop_after is None else min(I, stop_after)
    reporter = Reporter(seeds, config.total_timesteps, I, bar=progress, loggers=loggers,
                        description=f"{config.algo.upper()} {config.env}")
    state_shape = jax.eval_shape(lambda s: s, state)
    _SINK.target = reporter
    try:
        started = False
        while done < stop:
            n = min(stop, (done // checkpoint_every + 1) * checkpoint_every
                    if checkpoint_every else stop) - done
            if _run_key(config, seeds, n, log_every, compiler_options) not in _CACHE \
                    and not (announced and not started):
                say(f"compiling {config.algo.upper()} {config.env}: {seeds} seed(s), "
                    f"{n} iterations per call ...")
            fn, dt = _compiled_run(config, seeds, n, log_every, state_shape, compiler_options)
            compile_s += dt
            if not started:
                reporter.start(float(np.mean(np.asarray(state.env_steps))))
                started = True
            reporter.offset = done
            t = time.perf_counter()
            # Wait with block_until_ready (it releases the GIL, which the loop's progress
            # callback needs) before any host conversion (which may wait holding it).
            state, m = jax.block_until_ready(fn(state))
            run_s += time.perf_counter() - t
            jax.effects_barrier()
            m = jax.device_get(m)
            chunks.append({k: np.asarray(v) for k, v in m.items()})
            done += n
            metrics = _concat(chunks)
            chunks = [metrics]
            ckpt.save(done, state, metrics, {
                "iteration": done, "num_iterations": I, "config": run_dict,
                "compile_seconds": compile_s, "run_seconds": run_s,
                "saved_at": datetime.datetime.now().isoformat(timespec="seconds"),
                "versions": versions()})
            if done < stop:
                summary = summarize(config, metrics, seeds=seeds, base_seed=base_seed,
                                    iterations_done=done, compile_seconds=compile_s,
                                    run_seconds=run_s)
                write_results(out, config, metrics, summary, plot=False)
    finally:
        _SINK.target = None
        reporter.close(None)
    metrics = _concat(chunks)
    summary = summarize(config, metrics, seeds=seeds, base_seed=base_seed, iterations_done=done,
                        compile_seconds=compile_s, run_seconds=run_s)
    write_results(out, config, metrics, summary)
    return summary


def _concat(chunks: list[dict]) -> dict:
    if len(chunks) == 1:
        return chunks[0]
    return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}


# ----------------------------------------------------------------------------- loading, eval

class Run(NamedTuple):
    """A run folder loaded: ``state`` is the seed-batched TrainState of checkpoint ``step``
    (leading axis ``[seeds]``), ``metrics`` ``{name: [seeds, step]}``."""

    path: Path
    config: Any
    seeds: int
    base_seed: int
    state: Any
    metrics: dict
    step: int
    meta: dict


def load_run(run_dir, step: int | None = None) -> Run:
    """Load a run folder's config and its latest (or ``step``) checkpoint."""
    from .checkpoint import Checkpointer, CheckpointError
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if not (run_dir / "config.yaml").is_file():
        raise RunError(f"{run_dir}: no config.yaml; not a run folder")
    config, seeds, base_seed = load_config(run_dir / "config.yaml")
    with Checkpointer(run_dir / "checkpoints") as ckpt:
        steps = ckpt.steps()
        if not steps:
            raise CheckpointError(f"{run_dir}: no checkpoint yet")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(f"{run_dir}: no checkpoint {step}; there are {steps}")
        state, metrics, meta = ckpt.restore(
            step, state_template(config, seeds),
            expected_config=config_to_dict(config, seeds, base_seed))
    return Run(run_dir, config, seeds, base_seed, state, metrics, step, meta)


def episode_returns(config, params, key, num_episodes: int,
                    modes: Sequence[str] = ("greedy", "sampled")) -> dict:
    """Undiscounted returns of ``num_episodes`` episodes per seed and mode, in one compiled
    call: ``params`` with a leading seed axis ``[S, ...]``, ``key`` a single key ->
    ``{mode: [S, num_episodes]}`` (``"greedy"``: the mode of the action distribution,
    ``"sampled"``: sampled actions). Seeds run one after another (``lax.map``) to bound
    memory."""
    import jax
    import jax.numpy as jnp
    from .envs import make_env
    from .rollout import collect_episodes
    from .train import make_policy

    env, env_params = make_env(config)
    policy = make_policy(config)

    def one(args):
        p, k = args
        out = {}
        for mode, km in zip(modes, jax.random.split(k, len(modes))):
            buf, _ = collect_episodes(policy, env, env_params, p, km, num_episodes, 1,
                                      greedy=mode == "greedy")
            out[mode] = jnp.sum(jnp.where(buf.mask, buf.reward, 0.0), axis=0)   # [N]
        return out

    S = jax.tree.leaves(params)[0].shape[0]
    keys = jax.random.split(key, S)
    r = jax.block_until_ready(jax.jit(lambda p, k: jax.lax.map(one, (p, k)))(params, keys))
    return {m: np.asarray(v) for m, v in r.items()}


def evaluate_run(run: Run, episodes: int = 100, seed: int = 0) -> dict:
    """Greedy and sampled evaluation of every seed's policy: ``{mode: {"per_seed": [{mean, std}],
    "mean", "std", "ci95"}}`` where the overall mean/std pool all episodes and ci95 is the
    bootstrap CI of the mean over seeds."""
    import jax
    out = {"episodes_per_seed": episodes, "seed": seed, "checkpoint": run.step,
           "iterations": run.config.iterations}
    returns = episode_returns(run.config, run.state.params, jax.random.key(seed), episodes)
    for mode, r in returns.items():
        per_seed = r.mean(1)
        m, lo, hi = bootstrap_ci(per_seed)
        out[mode] = {"per_seed": [{"mean": float(a), "std": float(b)}
                                  for a, b in zip(per_seed, r.std(1))],
                     "mean": float(r.mean()), "std": float(r.std()), "ci95": [lo, hi]}
    return out


GIF_ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0",
            "MountainCarContinuous-v0", "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar",
            "Seaquest-MinAtar", "SpaceInvaders-MinAtar", "Catch-bsuite", "Pong-misc",
            "PointRobot-misc", "MetaMaze-misc", "FourRooms-misc")
_PYGAME_ENVS = GIF_ENVS[:5]


def check_gif(config) -> None:
    """Raise ``RunError`` if ``render_gif`` cannot render this env here (no visualizer in
    gymnax, or classic control without pygame)."""
    import importlib.util
    if config.env not in GIF_ENVS:
        raise RunError(f"--gif: gymnax has no visualizer for {config.env}; it has "
                       f"{', '.join(GIF_ENVS)}")
    if config.env in _PYGAME_ENVS and importlib.util.find_spec("pygame") is None:
        raise RunError(f"--gif: rendering {config.env} needs pygame: "
                       "pip install 'jaxgrpo[render]'")


def render_gif(config, params, path, key, *, greedy: bool = True, max_steps: int | None = None,
               stride: int = 1) -> dict:
    """Render one episode of the policy ``params`` (one seed, no seed axis) to ``path`` with
    gymnax's ``Visualizer``. A host-side loop of jitted policy and ``env.step`` calls; the
    episode ends at termination, the time limit or ``max_steps``; every ``stride``-th state is
    drawn. Returns ``{"return", "steps", "frames"}``."""
    import jax
    from gymnax.visualize import Visualizer
    from .envs import env_action, make_env
    from .train import make_policy

    check_gif(config)
    for k, v in (("PYGAME_HIDE_SUPPORT_PROMPT", "1"), ("SDL_AUDIODRIVER", "dummy"),
                 ("SDL_VIDEODRIVER", "dummy")):   # headless pygame: no audio/display warnings
        os.environ.setdefault(k, v)
    import matplotlib
    matplotlib.use("Agg")
    env, env_params = make_env(config)
    policy = make_policy(config)
    act = jax.jit(lambda p, o, k: policy.act(p, o[None], k, greedy)[0][0])
    step = jax.jit(lambda k, s, a: env.step(k, s, env_action(policy.spec, a), env_params))
    key, k_reset = jax.random.split(key)
    obs, state = jax.jit(env.reset)(k_reset, env_params)
    limit = int(env_params.max_steps_in_episode) if max_steps is None else max_steps
    states, returns, total, steps = [state], [0.0], 0.0, 0
    for _ in range(limit):
        key, k_act, k_step = jax.random.split(key, 3)
        action = act(params, obs, k_act)
        obs, next_state, reward, terminated, truncated, _ = step(k_step, state, action)
        total += float(reward)
        steps += 1
        if bool(terminated) or bool(truncated):
            break
        state = next_state
        states.append(state)
        returns.append(total)
    keep = list(range(0, len(states), stride))
    if keep[-1] != len(states) - 1:
        keep.append(len(states) - 1)
    class _Visualizer(Visualizer):
        def update(self, frame):          # title with the env step, not the frame index
            super().update(frame)
            self.ax.set_title(f"{self.env.name}: step {keep[frame]:4d} - return "
                              f"{returns[keep[frame]]:7.2f}", fontsize=15)

    vis = _Visualizer(env, env_params, [states[i] for i in keep],
                      np.array([returns[i] for i in keep]))
    vis.animate(str(path))
    return {"return": total, "steps": steps, "frames": len(keep)}
