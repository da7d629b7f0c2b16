"""Run folders on disk: what files a run writes, how they are read back, and the guards that
keep existing results from being overwritten.

A run folder holds

- ``config.yaml``: the resolved config (``algo``, every field, ``seeds``, ``base_seed``);
  ``jaxgrpo train --config RUN/config.yaml`` reproduces the run;
- ``metrics.csv``: tidy, one row per (seed, iteration): ``seed, iteration, env_steps`` and every
  metric (empty cells = NaN: GRPO iterations not run once the env-step budget was used);
- ``summary.json``: final return (mean and 95% bootstrap CI over seeds), compile and run
  seconds, env steps per second, versions, device;
- ``curves.png``: mean episode return and its 95% CI band over seeds against env steps;
- ``checkpoints/``: orbax checkpoints (``jaxgrpo.checkpoint``) of the seed-batched TrainState
  and the metrics so far;
- ``eval.json`` after ``jaxgrpo eval``.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .configio import load_yaml
from .provenance import device, machine, versions
from .stats import bootstrap_ci, last_valid

RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "curves.png", "checkpoints",
             "eval.json")
SWEEP_FILES = ("sweep.yaml", "metrics.csv", "summary.csv", "curves.png")
FIRST_COLUMNS = ("seed", "iteration", "env_steps")
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


class RunError(ValueError):
    """Bad input for a run (existing results, not a run folder, mismatched resume, ...)."""


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
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise RunError(f"{flag} {path}: the folder {parent} {what}")
    if path.exists() and not overwrite:
        raise RunError(f"{flag} {path}: exists; choose another name or pass --overwrite "
                       "to replace it")
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same suffix) to write to; on success it is
    renamed onto ``path`` in one step, on any error (or interruption) it is removed and
    ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def check_sweep_out(out, overwrite: bool = False) -> Path:
    """The checks before a sweep writes to ``out`` (nothing is created): not a file, not a
    training run's folder, and no earlier results unless ``overwrite``."""
    out = check_folder_path(out)
    kind = folder_kind(out)
    if kind == "run":
        raise RunError(f"--out {out}: holds a training run (config.yaml, checkpoints/); a sweep "
                       "never writes into one: choose another --out")
    if kind is not None and not overwrite:
        raise RunError(f"--out {out}: already holds {'sweep ' if kind == 'sweep' else ''}"
                       "results; choose another --out, or pass --overwrite to replace them "
                       "(only once the new sweep has finished)")
    return out


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


def frame_to_metrics(df) -> dict:
    """Inverse of ``metrics_frame``: ``{name: [S, I]}`` (float64)."""
    df = df.sort_values(["seed", "iteration"])
    S, I = df["seed"].nunique(), df["iteration"].nunique()
    return {k: df[k].to_numpy(np.float64).reshape(S, I) for k in df.columns
            if k not in ("seed", "iteration")}


def summarize(config, metrics, *, seeds, base_seed, iterations_done, compile_seconds,
              run_seconds, preset: str | None = None) -> dict:
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
        "total_timesteps": config.total_timesteps, "iterations": config.iterations, "iterations_done": int(iterations_done),
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
    }


def write_results(out, config, metrics, summary, plot=True) -> None:
    """metrics.csv, summary.json and (``plot``) curves.png of a run folder, each written
    atomically."""
    out = Path(out)
    with atomic_path(out / "metrics.csv") as tmp:
        metrics_frame(metrics).to_csv(tmp, index=False)
    write_json(out / "summary.json", summary)
    if plot:
        from .plots import plot_runs
        with atomic_path(out / "curves.png") as tmp:
            plot_runs([out], tmp, title=f"{config.algo.upper()} on {config.env}")



def read_run(run_dir) -> tuple[dict, Any]:
    """``(config dict, metrics DataFrame)`` of a run or sweep folder (no JAX needed). For a
    sweep folder the dict is its sweep.yaml and the frame has a ``combination`` column."""
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
    missing = {"seed", "iteration", "env_steps"} - set(df.columns)
    if missing:
        raise RunError(f"{run_dir}/metrics.csv: missing column {sorted(missing)[0]!r}")
    return cfg, df



def add_evaluation(run_dir, result: dict) -> dict:
    """Add ``result`` (``runs.evaluate_run``'s dict) to ``RUN/eval.json``, which keeps every
    evaluation: ``{"evaluations": [...]}``, oldest first. An evaluation of the same
    checkpoint, episode count and seed replaces its earlier entry (the same numbers)."""
    path = Path(run_dir) / "eval.json"
    entries = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            raise RunError(f"{path}: not valid JSON; move it away to record a new "
                           "evaluation") from None
        entries = old.get("evaluations", [old]) if isinstance(old, dict) else []
    same = lambda e: all(e.get(k) == result.get(k)
                         for k in ("checkpoint", "episodes_per_seed", "seed"))
    entries = [e for e in entries if not same(e)] + [result]
    doc = {"evaluations": entries}
    write_json(path, doc)
    return doc


# ----------------------------------------------------------------------------- sweep folders

def write_sweep(out, result, spec: dict):
    """Write a sweep's folder: ``metrics.csv`` (tidy, one row per combination x seed x kept
    iteration), ``summary.csv`` (``result.summary()``), ``curves.png`` and ``sweep.yaml`` (the
    resolved sweep: every field of the base config, the grid and the sweep arguments;
    ``jaxgrpo sweep OUT/sweep.yaml --out OTHER`` runs it again). Each file is written
    atomically. Returns the summary table."""
    import yaml

    from .configio import config_to_dict, plain
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = result.summary()
    with atomic_path(out / "metrics.csv") as tmp:
        result.to_csv(tmp)
    with atomic_path(out / "summary.csv") as tmp:
        table.to_csv(tmp)
    with atomic_path(out / "curves.png") as tmp:
        result.plot(tmp)
    resolved = {**config_to_dict(spec["config"], result.seeds, result.base_seed),
                "grid": {k: list(v) for k, v in (spec["grid"] or {}).items()},
                "log_every": result.log_every, "vmap_size": spec.get("vmap_size"),
                "compiler_options": spec.get("compiler_options")}
    resolved = {k: v for k, v in resolved.items() if v is not None}
    write_text(out / "sweep.yaml",
               "# jaxgrpo sweep: `jaxgrpo sweep THIS_FILE --out DIR` runs it again\n"
               + yaml.safe_dump(plain(resolved), sort_keys=False))
    return table

