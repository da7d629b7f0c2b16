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
from .fileio import atomic_path, write_json, write_text
from .provenance import device, machine, versions
from .stats import bootstrap_ci, last_valid

RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "curves.png", "checkpoints",
             "eval.json")
SWEEP_FILES = ("metrics.csv", "summary.csv", "curves.png", "sweep.yaml")
FIRST_COLUMNS = ("seed", "iteration", "env_steps")
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


class RunError(ValueError):
    """Bad input for a run (existing results, not a run folder, mismatched resume, ...)."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt or belongs to another run/config (defined
    here, without JAX, so that the command line can catch it cheaply)."""


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


# ----------------------------------------------------------------------------- sweep folders

SWEEP_CHECKPOINTS = "sweep-checkpoints"


def sweep_yaml(spec: dict) -> str:
    """The resolved sweep file of ``spec`` (as ``configio.load_sweep_spec`` returns it): every
    field of the base config, the seeds, the grid and the sweep arguments."""
    import yaml

    from .configio import config_to_dict, plain
    resolved = {**config_to_dict(spec["config"], spec["seeds"], spec["base_seed"]),
                "grid": {k: list(v) for k, v in (spec["grid"] or {}).items()},
                "log_every": spec.get("log_every", 1), "vmap_size": spec.get("vmap_size"),
                "compiler_options": spec.get("compiler_options"),
                "checkpoint_every": spec.get("checkpoint_every")}
    resolved = {k: v for k, v in resolved.items() if v is not None}
    if spec.get("vmap_size", "auto") is None:
        resolved["vmap_size"] = None          # explicit: vmap all (the default is "auto")
    return ("# jaxgrpo sweep: `jaxgrpo sweep THIS_FILE --out DIR` runs it again\n"
            + yaml.safe_dump(plain(resolved), sort_keys=False))


def start_sweep(out, spec: dict) -> Path:
    """Create the folder of a checkpointed sweep (``jaxgrpo sweep --checkpoint-every``) with its
    ``sweep.yaml``; ``OUT/sweep-checkpoints/`` then fills as it runs, and ``write_sweep(...,
    in_progress=True)`` adds the results. ``out`` must be new or empty (``check_sweep_out``)."""
    out = check_sweep_out(out)
    if folder_kind(out) is not None:
        raise RunError(f"--out {out}: already holds results; a checkpointed sweep starts in a "
                       "new folder (continue one with jaxgrpo sweep --resume DIR)")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "sweep.yaml", sweep_yaml(spec), exclusive=True)
    return out


def check_resume_sweep(out) -> Path:
    """``out`` as a checkpointed sweep that has not finished (``RunError`` otherwise)."""
    out = Path(out)
    if not out.exists():
        raise RunError(f"--resume {out}: no such folder")
    if not (out / "sweep.yaml").is_file() or not (out / SWEEP_CHECKPOINTS).is_dir():
        what = ("holds a training run; continue it with jaxgrpo train --resume"
                if folder_kind(out) == "run" else
                f"is not a checkpointed sweep's folder (sweep.yaml and {SWEEP_CHECKPOINTS}/, "
                "written by jaxgrpo sweep --checkpoint-every)")
        raise RunError(f"--resume {out}: {what}")
    if (out / "summary.csv").exists():
        raise RunError(f"--resume {out}: this sweep has finished (summary.csv is there); "
                       "nothing to continue")
    return out


def write_sweep(out, result, spec: dict, overwrite: bool = False, in_progress: bool = False):
    """Write a sweep's folder: ``metrics.csv`` (tidy, one row per combination x seed x kept
    iteration), ``summary.csv`` (``result.summary()``), ``curves.png`` and ``sweep.yaml`` (the
    resolved sweep: every field of the base config, the grid and the sweep arguments;
    ``jaxgrpo sweep OUT/sweep.yaml --out OTHER`` runs it again). Returns the summary table.

    The files are written to a staging folder beside ``out`` first. A new ``out`` is then
    created by renaming that folder (one step: if another command took ``out`` meanwhile,
    ``RunError`` says where the results are, and nothing of theirs is touched); with
    ``overwrite``, ``out`` is checked again and the four files are renamed into it; with
    ``in_progress``, ``out`` is this sweep's own folder (``start_sweep``) and the files are
    renamed into it unchecked."""
    import shutil

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.staging-{os.getpid()}"
    stage.mkdir()
    try:
        table = result.summary()
        result.to_csv(stage / "metrics.csv")
        table.to_csv(stage / "summary.csv")
        result.plot(stage / "curves.png")
        (stage / "sweep.yaml").write_text(sweep_yaml(
            {**spec, "seeds": result.seeds, "base_seed": result.base_seed,
             "log_every": result.log_every}))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        if not in_progress and (not out.exists() or (out.is_dir() and not any(out.iterdir()))):
            os.rename(stage, out)               # fails if out became a non-empty folder
            return table
    except OSError:
        pass
    try:
        if not in_progress:
            check_sweep_out(out, overwrite=overwrite)
    except RunError as e:
        raise RunError(f"{e}; it changed while the sweep ran: the results are in {stage}")
    with _no_interrupt():                      # the four renames happen all or none
        for name in SWEEP_FILES:
            os.replace(stage / name, out / name)
    shutil.rmtree(stage)
    return table


@contextlib.contextmanager
def _no_interrupt():
    """Hold back SIGINT (Ctrl-C) inside the block; it is delivered when the block ends."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

