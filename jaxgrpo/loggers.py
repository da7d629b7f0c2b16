"""Live progress of the compiled loop: its host callbacks, a progress bar, and the TensorBoard
and Weights & Biases loggers."""
from __future__ import annotations

import collections
import sys
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
    ``SINK.target`` at its ``Reporter`` while it runs). A target that raises (a logger that
    lost its connection, say) is dropped with one line on stderr: training goes on."""

    def __init__(self):
        self.target = None

    def __call__(self, i, metrics):
        t = self.target
        if t is not None:
            try:
                t(i, metrics)
            except Exception as e:  # noqa: BLE001 - an error here would end the compiled run
                self.target = None
                print(f"jaxgrpo: progress and logging stopped ({type(e).__name__}: {e}); "
                      "training goes on", file=sys.stderr, flush=True)


SINK = Sink()


class SeedMeans:
    """Rows of several seeds -> their means, once every seed's row of a key has come in
    (thread-safe: the compiled loop may call back from several threads)."""

    def __init__(self, num_seeds: int):
        self.num_seeds = num_seeds
        self._pending: dict = collections.defaultdict(list)
        self._lock = threading.Lock()

    def add(self, key, metrics) -> dict | None:
        """Add one seed's ``metrics`` (scalars) under ``key``; -> the NaN-aware means over
        seeds of every metric when this was the last seed's row of ``key``, else None."""
        row = {k: float(np.asarray(v)) for k, v in metrics.items()}
        with self._lock:
            self._pending[key].append(row)
            if len(self._pending[key]) < self.num_seeds:
                return None
            rows = self._pending.pop(key)
        with no_warnings():
            return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


class Bar:
    """The progress line on stderr (rich): description, bar, env steps, return, env steps per
    second, where (e.g. ``it 12/100``) and the time elapsed."""

    def __init__(self, description: str, total: float, completed: float = 0.0,
                 where: str = "-"):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=24),
            TextColumn("{task.fields[steps]} steps"),
            TextColumn("return {task.fields[ret]}"),
            TextColumn("{task.fields[sps]} steps/s"),
            TextColumn("{task.fields[where]}"), TextColumn("chunk {task.fields[chunk]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True), transient=False)
        self._task = self._bar.add_task(description, total=total, completed=completed,
                                        steps=f"{completed:,.0f}", ret="-", sps="-",
                                        where=where, chunk="-")
        self._bar.start()

    def update(self, steps: float, ret: float, sps: float, where: str | None = None):
        fields = {} if where is None else {"where": where}
        self._bar.update(self._task, completed=steps, steps=f"{steps:,.0f}",
                         ret=f"{ret:.1f}" if np.isfinite(ret) else "-",
                         sps=f"{sps:,.0f}" if np.isfinite(sps) else "-", **fields)

    def chunk(self, seconds: float):
        """Show how long the last compiled call took (the grace period a signal needs)."""
        self._bar.update(self._task, chunk=f"{seconds:.2g}s")

    def stop(self, final_steps: float | None = None):
        if final_steps is not None:
            self._bar.update(self._task, completed=final_steps, steps=f"{final_steps:,.0f}")
        self._bar.stop()


class Reporter:
    """Aggregates the per-seed callbacks of the compiled loop (``callback(i, metrics)`` is called
    once per seed) into one update per reported iteration: a progress bar (``Bar``) with env
    steps, the mean return over seeds and env steps per second, and the loggers (TensorBoard,
    W&B), which get the seed means of every metric (x axis: their ``env_steps``).

    ``offset``: the global index of the current chunk's first iteration (the callback's ``i``
    counts from 0 in every ``train.run`` call).
    """

    def __init__(self, num_seeds: int, total_steps: int, iterations: int, *, bar: bool,
                 loggers: Sequence = (), description: str = "training"):
        self.num_seeds, self.total_steps, self.iterations = num_seeds, total_steps, iterations
        self.loggers = list(loggers)
        self.offset = 0
        self._means = SeedMeans(num_seeds)
        self._last_return = float("nan")
        self._t0 = None
        self._steps0 = 0.0
        self._want_bar, self._description = bar, description
        self._bar = None
        self._lock = threading.Lock()

    def start(self, env_steps_per_seed: float = 0.0):
        """Call when the compiled loop starts running (after compilation)."""
        self._t0 = time.perf_counter()
        self._steps0 = env_steps_per_seed * self.num_seeds
        if self._want_bar:
            self._bar = Bar(self._description, self.total_steps, env_steps_per_seed,
                            f"it -/{self.iterations}")

    def __call__(self, i, metrics):
        it = self.offset + int(i)
        means = self._means.add(it, metrics)
        if means is not None:
            with self._lock:     # seeds spread over devices report from several threads
                self.update(it, means)

    def update(self, it: int, means: dict):
        if np.isfinite(means.get("episode_return", np.nan)):
            self._last_return = means["episode_return"]
        steps = means.get("env_steps", 0.0)
        dt = time.perf_counter() - (self._t0 or time.perf_counter())
        sps = (steps * self.num_seeds - self._steps0) / dt if dt > 0 else float("nan")
        if self._bar is not None:
            self._bar.update(steps, self._last_return, sps, f"it {it + 1}/{self.iterations}")
        for lg in self.loggers:
            lg.log(it, means)

    def chunk_done(self, seconds: float):
        """Show how long the last compiled chunk took: the grace period a signal needs
        (``jaxgrpo.preemption``)."""
        if self._bar is not None:
            self._bar.chunk(seconds)

    def close(self, final_steps: float | None = None):
        if self._bar is not None:
            self._bar.stop(final_steps)
            self._bar = None
        for lg in self.loggers:
            lg.close()
        self.loggers = []


class SweepReporter:
    """The progress line and loggers of a sweep. Its compiled programs call back once per kept
    metrics row of every run (``runner.single_run``: every ``log_every`` iterations and the
    last), with the run's position in the current compilation's batch; ``group(idx)`` says
    which combinations that batch holds (position ``p`` is combination ``idx[p // seeds]``,
    seed ``p % seeds``; positions past them are padding).

    The bar (from the first row on) counts the env steps of all runs together against
    ``sum(budgets) * seeds`` and shows the mean of the runs' latest returns. ``loggers_for(c)`` gives combination ``c``'s loggers
    (made at its first row); they get the seed means of every metric of each row, as ``train``'s
    do (x axis: ``env_steps``).

    budgets: ``[C]`` each combination's env-step budget per seed (``total_timesteps``).
    """

    def __init__(self, seeds: int, budgets: Sequence[float], *, bar: bool,
                 loggers_for=None, description: str = "sweep"):
        self.seeds, self.budgets = seeds, list(budgets)
        self.loggers_for = loggers_for
        self.loggers: dict[int, list] = {}
        self._means = [SeedMeans(seeds) for _ in self.budgets]
        self._rows: dict = collections.Counter()     # (c, s) -> rows reported so far
        self._steps: dict = {}                       # (c, s) -> latest env steps
        self._returns: dict = {}                     # (c, s) -> latest finite return
        self._idx: list = []
        self._groups = 0
        self._lock = threading.Lock()
        self._t0, self._steps0 = None, 0.0
        self._want_bar, self._description = bar, description
        self._bar = None           # started at the first row: nothing is drawn before it

    def group(self, idx: Sequence[int]):
        """The next compilation's combinations (call before it runs)."""
        self._idx = list(idx)
        self._groups += 1

    def __call__(self, position, metrics):
        p = int(position)
        if p >= len(self._idx) * self.seeds:
            return                                   # a padding run
        c, s = self._idx[p // self.seeds], p % self.seeds
        with self._lock:
            row = self._rows[c, s]
            self._rows[c, s] += 1
            steps = float(np.asarray(metrics.get("env_steps", np.nan)))
            ret = float(np.asarray(metrics.get("episode_return", np.nan)))
            if np.isfinite(steps):
                self._steps[c, s] = steps
            if np.isfinite(ret):
                self._returns[c, s] = ret
            total = float(sum(self._steps.values()))
            now = time.perf_counter()
            if self._t0 is None:
                self._t0, self._steps0 = now, total
            sps = (total - self._steps0) / (now - self._t0) if now > self._t0 else np.nan
            with no_warnings():
                mean_ret = float(np.mean(list(self._returns.values()))) \
                    if self._returns else float("nan")
            if self._want_bar:
                if self._bar is None:
                    self._bar = Bar(self._description, float(sum(self.budgets)) * self.seeds)
                self._bar.update(total, mean_ret, sps, f"compilation {self._groups}")
        means = self._means[c].add(row, metrics)
        if means is not None and self.loggers_for is not None:
            with self._lock:
                if c not in self.loggers:
                    self.loggers[c] = list(self.loggers_for(c))
                loggers = self.loggers[c]
            for lg in loggers:
                lg.log(None, means)

    def close(self):
        self._want_bar = False
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        for lgs in self.loggers.values():
            for lg in lgs:
                lg.close()
        self.loggers = {}


def x_step(it, means) -> int:
    """A logger's x value: the seed mean of ``env_steps`` (completion tokens for text tasks),
    rounded; the iteration count ``it + 1`` only when a row has no finite ``env_steps``."""
    steps = means.get("env_steps", float("nan"))
    if np.isfinite(steps):
        return int(round(steps))
    return 0 if it is None else it + 1


def require(module: str, flag: str, extra: str):
    """Import an optional dependency or raise ``RunError`` saying how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RunError(f"{flag} needs {module}: pip install 'jaxgrpo[{extra}]'") from None


class TensorBoardLogger:
    """Seed means of every metric to TensorBoard event files in ``logdir`` (tensorboardX, from
    the ``tensorboard`` extra) as ``train/<metric>``, x axis = env steps (``x_step``), and
    ``train/iteration`` (when known)."""

    def __init__(self, logdir):
        SummaryWriter = require("tensorboardX", "--tensorboard", "tensorboard").SummaryWriter
        self.writer = SummaryWriter(str(logdir))

    def log(self, it, means):
        x = x_step(it, means)
        if it is not None:
            self.writer.add_scalar("train/iteration", it + 1, global_step=x)
        for k, v in means.items():
            if np.isfinite(v):
                self.writer.add_scalar(f"train/{k}", v, global_step=x)
        self.writer.flush()

    def close(self):
        self.writer.close()


class WandbLogger:
    """Seed means of every metric to Weights & Biases (``wandb`` extra) as ``train/<metric>``
    against the x axis ``env_steps`` (W&B's ``define_metric``), and ``train/iteration`` (when
    known). The run id is kept in ``id_file`` (default ``OUT/wandb_id.txt``) so that
    ``--resume`` continues the same W&B run. ``name`` (default: the folder's name) and
    ``group`` name the W&B run; ``several``: one of several W&B runs open at once in this
    process (a sweep's combinations; W&B >= 0.19.10, ``reinit="create_new"``)."""

    def __init__(self, out, config_dict, project="jaxgrpo", *, name=None, group=None,
                 id_file=None, several=False):
        wandb = require("wandb", "--wandb", "wandb")
        id_file = Path(id_file) if id_file is not None else Path(out) / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
        self.wandb = wandb
        extra = {"reinit": "create_new"} if several else {}
        self.run = wandb.init(project=project, id=run_id, resume="allow", dir=str(out),
                              name=name or Path(out).name, group=group, config=config_dict,
                              **extra)
        self.run.define_metric("env_steps")
        self.run.define_metric("train/*", step_metric="env_steps")

    def log(self, it, means):
        row = {f"train/{k}": v for k, v in means.items() if np.isfinite(v)}
        if it is not None:
            row["train/iteration"] = it + 1
        self.run.log({"env_steps": x_step(it, means), **row})

    def close(self):
        self.run.finish()
