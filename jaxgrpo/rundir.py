"""Run folders on disk: what files a run writes, how they are read back, and the guards that
keep existing results from being overwritten.

A run folder holds

- ``config.yaml``: the resolved config (``algo``, every field, ``seeds``, ``base_seed``);
  ``jaxgrpo train --config RUN/config.yaml`` reproduces the run;
- ``metrics.csv``: tidy, one row per (seed, iteration): ``seed, iteration, env_steps`` and every
  metric, up to the last iteration any seed trained (``trim_idle``; empty cells = NaN: a
  seed's on-policy GRPO iterations after its env-step budget was used);
- ``summary.json``: final return (mean and 95% bootstrap CI over seeds), compile and run
  seconds, env steps per second, versions, device;
- ``curves.png``: mean episode return and its 95% CI band over seeds against env steps;
- ``checkpoints/``: orbax checkpoints (``jaxgrpo.checkpoint``) of the seed-batched TrainState
  and the metrics so far;
- ``options.json``: the options of the invocation that are not config fields
  (``checkpoint_every``, ``log_every``, ``tensorboard``, ``wandb``, ``wandb_project``,
  ``compiler_options``), which ``--resume`` keeps unless they are given again;
- ``eval.json`` after ``jaxgrpo eval``.

Run and sweep folders are read back here (``read_run``, ``run_curves``, ``plot_runs``); a sweep's
folder is written by ``jaxgrpo.sweepdir``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .configio import load_yaml
from .errors import RunError
from .fileio import atomic_path, write_json
from .plots import plot_curves, seeds_label, sweep_curves
from .provenance import device, machine, versions
from .stats import bootstrap_ci, last_valid

RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "curves.png", "checkpoints",
             "eval.json", "options.json")
OPTIONS_FILE = "options.json"
SWEEP_FILES = ("metrics.csv", "summary.csv", "curves.png", "sweep.yaml")
FIRST_COLUMNS = ("seed", "iteration", "env_steps")
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")

# Metrics renamed since run folders were first written: old column -> new name (TRL's). Run
# folders and sweep folders written before are read back under the new names (read_run).
RENAMED_METRICS = {"clip_frac": "clip_ratio/region_mean",
                   "frac_zero_std_groups": "frac_reward_zero_std"}


# ----------------------------------------------------------------------------- guards

def folder_kind(path) -> str | None:
    """What ``path`` holds: ``"run"`` (a training run: config.yaml or checkpoints/),
    ``"sweep"`` (sweep.yaml or summary.csv), ``"results"`` (other jaxgrpo result files),
    or None (absent, or no result files)."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "config.yaml").exists() or (path / "checkpoints").exists():
        return "run"
    if (path / "sweep.yaml").exists() or (path / "summary.csv").exists():
        return "sweep"
    if any((path / f).exists() for f in RUN_FILES + SWEEP_FILES):
        return "results"
    return None


def holds_results(out) -> bool:
    return folder_kind(out) is not None


def check_folder_path(out, flag: str = "--out") -> Path:
    """``out`` as a Path; ``RunError`` if it exists and is not a folder, or if one of its
    parents is a file (nothing is created)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{flag} {out}: exists and is not a folder; choose another {flag}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunError(f"{flag} {out}: {parent} is a file, not a folder")
            break
    return out


def check_new_file(path, flag: str = "--out", overwrite: bool = False,
                   suffixes: tuple | None = None) -> Path:
    """``path`` as a Path for a file a command is about to write. ``RunError`` if its folder
    does not exist, if it is a folder, if it has none of ``suffixes``, or if it exists and
    ``overwrite`` is False (say ``--overwrite`` to replace it)."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise RunError(f"{flag} {path}: must end in {', '.join(suffixes)}")
    if path.is_dir():
        raise RunError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise RunError(f"{flag} {path}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise RunError(f"{flag} {path}: the folder {parent} does not exist")
    if path.exists() and not overwrite:
        raise RunError(f"{flag} {path}: exists; choose another name or pass --overwrite "
                       "to replace it")
    return path


# ----------------------------------------------------------------------------- run files

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


def trim_idle(metrics: Mapping[str, np.ndarray]) -> dict:
    """``metrics`` (``{name: [S, I]}``) without the trailing iterations at which no seed
    trained: an on-policy GRPO run's scan is as long as its budget could take, and the
    iterations after the budget is spent leave ``env_steps`` as it was (their other metrics
    NaN). An iteration trained when its ``env_steps`` grew (the first always counts)."""
    steps = np.asarray(metrics["env_steps"], np.float64)
    if steps.shape[-1] == 0:
        return dict(metrics)
    grew = np.diff(steps, axis=-1, prepend=-np.inf) > 0                  # [S, I]
    n = int(np.flatnonzero(grew.any(0))[-1]) + 1
    return {k: np.asarray(v)[..., :n] for k, v in metrics.items()}


def frame_to_metrics(df) -> dict:
    """Inverse of ``metrics_frame``: ``{name: [S, I]}`` (float64)."""
    df = df.sort_values(["seed", "iteration"])
    S, I = df["seed"].nunique(), df["iteration"].nunique()
    return {k: df[k].to_numpy(np.float64).reshape(S, I) for k in df.columns
            if k not in ("seed", "iteration")}


def summarize(config, metrics, *, seeds, base_seed, iterations_done, compile_seconds,
              run_seconds, preset: str | None = None, seed_devices: int = 1) -> dict:
    """The summary.json dict. final_return: per seed, ``episode_return`` of the last iteration
    that ran (NaN-aware); mean and 95% percentile-bootstrap CI over seeds. seed_devices: the
    devices the seeds were spread over (``runs.seed_devices``)."""
    ret = np.asarray(metrics["episode_return"], np.float64)
    steps = np.asarray(metrics["env_steps"], np.float64)
    per_seed = last_valid(ret) if ret.shape[-1] else np.full(ret.shape[0], np.nan)
    mean, lo, hi = bootstrap_ci(per_seed)
    final_steps = steps[:, -1] if steps.shape[-1] else np.zeros(steps.shape[0])
    nan_none = lambda x: None if x is None or not np.isfinite(x) else float(x)
    return {
        "algo": config.algo, "env": config.env, "seeds": seeds, "base_seed": base_seed,
        "total_timesteps": config.total_timesteps, "iterations": config.iterations,
        "num_iterations": getattr(config, "num_iterations", None), "iterations_done": int(iterations_done),
        "complete": int(iterations_done) == config.iterations,
        "final_return": {"mean": nan_none(mean), "ci95": [nan_none(lo), nan_none(hi)],
                         "per_seed": [nan_none(x) for x in per_seed],
                         "definition": "episode_return of each seed's last iteration that ran; "
                                       "mean and 95% percentile bootstrap CI over seeds"},
        "env_steps_per_seed": float(np.mean(final_steps)),
        "env_steps_by_seed": [float(x) for x in final_steps],
        "env_steps_total": float(np.sum(final_steps)),
        "compile_seconds": round(float(compile_seconds), 3),
        "run_seconds": round(float(run_seconds), 3),
        "steps_per_second": (float(np.sum(final_steps)) / run_seconds if run_seconds > 0
                             else None),
        "preset": preset, "versions": versions(), "device": device(), "machine": machine(),
        "seed_devices": seed_devices,
    }


def write_results(out, config, metrics, summary, plot=True) -> None:
    """metrics.csv, summary.json and (``plot``) curves.png of a run folder, each written
    atomically."""
    out = Path(out)
    with atomic_path(out / "metrics.csv") as tmp:
        metrics_frame(trim_idle(metrics)).to_csv(tmp, index=False)
    write_json(out / "summary.json", summary)
    if plot:
        with atomic_path(out / "curves.png") as tmp:
            plot_runs([out], tmp, title=f"{config.algo.upper()} on {config.env}")


def read_run(run_dir) -> tuple[dict, Any]:
    """``(config dict, metrics DataFrame)`` of a run or sweep folder (no JAX needed). For a
    sweep folder the dict is its sweep.yaml and the frame has a ``combination`` column.
    Columns of renamed metrics (``RENAMED_METRICS``) come back under their new names."""
    import pandas as pd
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if not (run_dir / "metrics.csv").is_file():
        raise RunError(f"{run_dir}: no metrics.csv; not a finished or checkpointed run folder")
    spec = next((run_dir / f for f in ("config.yaml", "sweep.yaml") if (run_dir / f).is_file()),
                None)
    cfg = load_yaml(spec) if spec is not None else {}
    try:
        df = pd.read_csv(run_dir / "metrics.csv")
    except Exception as e:  # noqa: BLE001 - any parse failure is the file's
        raise RunError(f"{run_dir}/metrics.csv: unreadable ({type(e).__name__}: {e})") from None
    df = df.rename(columns=RENAMED_METRICS)
    missing = {"seed", "iteration", "env_steps"} - set(df.columns)
    if missing:
        raise RunError(f"{run_dir}/metrics.csv: missing column {sorted(missing)[0]!r}")
    return cfg, df


def run_curves(run_dirs: Sequence, metric: str = "episode_return") -> list:
    """``[(label, frame, config dict)]`` for run and sweep folders: one curve per run folder,
    one per combination of a sweep folder. Labels name the algorithm (and the env when the
    folders differ in it), the seed count, and the folder when two would read the same. A
    metric's name before a rename (``RENAMED_METRICS``) reads its new column."""
    metric = RENAMED_METRICS.get(metric, metric)
    read = [(Path(d), *read_run(d)) for d in run_dirs]
    for d, _, df in read:
        if metric not in df.columns:
            raise RunError(f"{d}/metrics.csv: no metric {metric!r}; it has "
                           f"{[c for c in df.columns if c not in ('seed', 'iteration')]}")
    envs = {cfg.get("env") for _, cfg, _ in read}
    algos = [cfg.get("algo") for _, cfg, df in read if "combination" not in df.columns]
    curves = []
    for d, cfg, df in read:
        seeds = seeds_label(df)
        head = str(cfg.get("algo", "grpo")).upper()
        if len(envs) > 1:
            head += f" {cfg.get('env')}"
        if "combination" in df.columns:
            prefix = f"{d.name}: " if len(read) > 1 else ""
            curves += [(f"{prefix}{label}", g, cfg) for label, g in sweep_curves(df)]
        else:
            label = f"{head} {seeds}"
            if algos.count(cfg.get("algo")) > 1:
                label += f" [{d.name}]"
            curves.append((label, df, cfg))
    return curves


def x_axis(cfg: Mapping) -> str:
    """What a run's ``env_steps`` count, from its config dict: ``"env steps"`` (gymnax),
    ``"GRPO: completion tokens"`` (text), ``"SFT: training examples"`` (SFT)."""
    algo = str(cfg.get("algo", "grpo"))
    if algo == "sft":
        return "SFT: training examples"
    if str(cfg.get("env", "")).startswith("text:"):
        return f"{algo.upper()}: completion tokens"
    return "env steps"


def warm_starts(curves: Sequence, metric: str, shown: Sequence = ()) -> list:
    """``[(label, frame, config dict)]`` of the run folders the curves' runs started from
    (``init_from``; an SFT warm start), each once and none of the folders ``shown``, where
    that folder still holds a metrics.csv with ``metric``: the first phase of a two-phase
    run."""
    out, seen = [], {Path(d).resolve() for d in shown}
    for _, _, cfg in curves:
        src = cfg.get("init_from")
        if not src or Path(src).resolve() in seen:
            continue
        seen.add(Path(src).resolve())
        try:
            src_cfg, df = read_run(src)
        except RunError:
            continue
        if metric in df.columns:
            out.append((f"{str(src_cfg.get('algo', 'sft')).upper()} warm start "
                        f"{seeds_label(df)} [{Path(src).name}]", df, src_cfg))
    return out


def plot_runs(run_dirs: Sequence, path, metric: str = "episode_return",
              labels: Sequence[str] | None = None, title: str | None = None,
              smooth: int = 1) -> None:
    """One figure of run and sweep folders: per run folder (per combination of a sweep
    folder), the mean of ``metric`` over seeds against env steps and its 95% bootstrap CI
    band (``stats.curve``). ``labels``: one legend entry per curve. A run started from another
    (``init_from``: an SFT warm start) shows that run's curve too, as the first phase: runs
    whose env steps count different things (``x_axis``: env steps, completion tokens, SFT
    training examples) are drawn in panels side by side, each x axis labelled."""
    metric = RENAMED_METRICS.get(metric, metric)
    curves = run_curves(run_dirs, metric)
    if labels is not None:
        if len(labels) != len(curves):
            raise RunError(f"--labels: {len(labels)} labels for {len(curves)} curves")
        curves = [(lab, df, cfg) for lab, (_, df, cfg) in zip(labels, curves)]
    curves = warm_starts(curves, metric, shown=run_dirs) + curves
    envs = {cfg.get("env") for _, _, cfg in curves}
    if title is None and len(envs) == 1:
        title = next(iter(envs))
    plot_curves([(lab, df, x_axis(cfg)) for lab, df, cfg in curves], path, metric,
                title=title, smooth=smooth)


def read_evaluations(run_dir) -> list:
    """The evaluations recorded in ``RUN/eval.json`` (``[]`` if there is none); ``RunError``
    if the file is not one jaxgrpo wrote (so that nothing replaces it)."""
    path = Path(run_dir) / "eval.json"
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        raise RunError(f"{path}: not an evaluation record jaxgrpo wrote; move it away to record "
                       "a new evaluation")
    entries = old.get("evaluations", [old])          # a single one: jaxgrpo before 0.1.1
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise RunError(f"{path}: its evaluations are not a list of records; move it away to "
                       "record a new evaluation")
    return entries


def add_evaluation(run_dir, result: dict) -> dict:
    """Add ``result`` (``runs.evaluate_run``'s dict) to ``RUN/eval.json``, which keeps every
    evaluation: ``{"evaluations": [...]}``, oldest first. An evaluation of the same
    checkpoint, episode count and seed replaces its earlier entry (the same numbers)."""
    path = Path(run_dir) / "eval.json"
    entries = read_evaluations(run_dir)
    same = lambda e: all(e.get(k) == result.get(k)
                         for k in ("checkpoint", "episodes_per_seed", "seed"))
    entries = [e for e in entries if not same(e)] + [result]
    doc = {"evaluations": entries}
    write_json(path, doc)
    return doc
