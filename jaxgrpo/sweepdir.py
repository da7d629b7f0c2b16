"""Sweep folders on disk: the files ``jaxgrpo sweep`` writes (``metrics.csv``, ``summary.csv``,
``curves.png``, ``sweep.yaml``, and ``sweep-checkpoints/`` while a checkpointed sweep runs) and
the guards that keep existing results from being overwritten. They read back with
``jaxgrpo.rundir.read_run`` like a run folder."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from pathlib import Path

import yaml

from .configio import config_to_dict, plain
from .errors import RunError
from .fileio import write_text
from .rundir import SWEEP_FILES, check_folder_path, folder_kind

SWEEP_CHECKPOINTS = "sweep-checkpoints"


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




def sweep_yaml(spec: dict) -> str:
    """The resolved sweep file of ``spec`` (as ``grids.load_sweep_spec`` returns it): every
    field of the base config, the seeds, the grid and the sweep arguments."""
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


def sweep_complete(out) -> bool:
    """Whether ``out`` holds a finished sweep (its sweep.yaml and summary.csv)."""
    out = Path(out)
    return (out / "sweep.yaml").is_file() and (out / "summary.csv").is_file()


def check_resume_sweep(out) -> Path:
    """``out`` as a sweep folder started and not finished: its sweep.yaml, without
    summary.csv (``RunError`` otherwise). Its ``SWEEP_CHECKPOINTS/`` (``jaxgrpo sweep
    --checkpoint-every``, or a sweep stopped by a signal) is where it continues from."""
    out = Path(out)
    if not out.exists():
        raise RunError(f"--resume {out}: no such folder")
    if sweep_complete(out):
        raise RunError(f"--resume {out}: this sweep has finished (summary.csv is there); "
                       "nothing to continue")
    if not (out / "sweep.yaml").is_file() or (out / "summary.csv").exists():
        what = ("holds a training run; continue it with jaxgrpo train --resume"
                if folder_kind(out) == "run" else
                f"is not a checkpointed sweep's folder (sweep.yaml and {SWEEP_CHECKPOINTS}/, "
                "written by jaxgrpo sweep --checkpoint-every or when a signal stopped it)")
        raise RunError(f"--resume {out}: {what}")
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
    """Hold back SIGINT (Ctrl-C) inside the block; it is delivered when the block ends. (A
    handler that only records it: masking the signal in the main thread would not do, since
    the kernel then hands a process-directed SIGINT to another thread, and JAX has some.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if caught:
            signal.raise_signal(signal.SIGINT)
