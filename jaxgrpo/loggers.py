"""Live progress of the compiled loop: its host callbacks, a progress bar, and the TensorBoard
and Weights & Biases loggers."""
from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import RunError
from .stats import no_warnings


class Sink:
    """Where the compiled loop's callbacks go (one module-level dispatcher, ``SINK``, so a
    compiled program can be reused by later runs of the same config: a run points
    ``SINK.target`` at its ``Reporter`` while it runs)."""

    def __init__(self):
        self.target = None

    def __call__(self, i, metrics):
        t = self.target
        if t is not None:
            t(i, metrics)


SINK = Sink()


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
                TextColumn("it {task.fields[it]}"),
                TextColumn("chunk {task.fields[chunk]}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False)
            self._description = description

    def start(self, env_steps_per_seed: float = 0.0):
        """Call when the compiled loop starts running (after compilation)."""
        self._t0 = time.perf_counter()
        self._steps0 = env_steps_per_seed * self.num_seeds
        if self._bar is not None:
            self._task = self._bar.add_task(
                self._description, total=self.total_steps, completed=env_steps_per_seed,
                steps=f"{env_steps_per_seed:,.0f}", ret="-", sps="-", it=f"-/{self.iterations}",
                chunk="-")
            self._bar.start()

    def __call__(self, i, metrics):
        it = self.offset + int(i)
        row = {k: float(np.asarray(v)) for k, v in metrics.items()}
        with self._lock:
            self._pending[it].append(row)
            if len(self._pending[it]) < self.num_seeds:
                return
            rows = self._pending.pop(it)
        with no_warnings():
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

    def chunk_done(self, seconds: float):
        """Show how long the last compiled chunk took: the grace period a signal needs
        (``jaxgrpo.preemption``)."""
        if self._bar is not None and self._t0 is not None:
            self._bar.update(self._task, chunk=f"{seconds:.2g}s")

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

