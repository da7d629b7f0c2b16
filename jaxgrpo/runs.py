"""Training runs into run folders: train (in checkpointed chunks), resume, load, evaluate, SFT;
and ``init_from`` resolved into the params a run starts from.

The files of a run folder are described in ``jaxgrpo.rundir``. Seed ``s`` of a run with
``seeds=S, base_seed=b`` trains with ``jax.random.split(jax.random.key(b), S)[s]``: the run is
``jax.jit(jax.vmap(make_train(config)))(jax.random.split(jax.random.key(b), S))`` done in chunks
of ``checkpoint_every`` iterations (``train.run``), which gives the same result (with several
devices, the seeds sharded over them: ``over_seeds``). Compiled programs are kept in
``jaxgrpo.compiled``'s cache, keyed by the whole config (the hparams are constants of these
programs).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import compiled, preemption
from .checkpoint import Checkpointer, config_diff
from .checks import check_count
from .config import SFTConfig
from .configio import check_init_from, config_to_dict, load_config, save_config, source_run
from .cores import warn_idle_cores
from .errors import CheckpointError, RunError
from .evaluation import seed_returns
from .fileio import write_json
from .loggers import SINK, Reporter, TensorBoardLogger, WandbLogger, require
from .provenance import versions
from .rundir import (OPTIONS_FILE, RENAMED_METRICS, check_folder_path, folder_kind,
                     holds_results, summarize, write_results)
from .stats import bootstrap_ci
from .train import budget_left, make_train


# ----------------------------------------------------------------------------- init_from

def init_params(config, seeds: int | None = None):
    """The params ``config.init_from`` points to (its latest checkpoint) as NumPy arrays, or
    None when it is None. Checked first (``check_init_from``). ``seeds`` None: its seed 0's
    params; a count: the params a run of that many seeds starts from: those of its only seed
    when it has one, else (it has ``seeds`` seeds) every seed's, stacked ``[seeds, ...]``: seed
    i starts from its seed i (``per_seed_params``)."""
    if getattr(config, "init_from", None) is None:
        return None
    check_init_from(config, seeds)
    if config.pretrained:       # a Hugging Face checkpoint: every seed starts from it
        from .text.pretrained import load_pretrained
        return jax.tree.map(np.asarray, load_pretrained(config.init_from)[1])
    params = load_run(config.init_from).state.params
    if per_seed_params(config, seeds):
        return jax.tree.map(np.asarray, params)
    return jax.tree.map(lambda x: np.asarray(x)[0], params)


def per_seed_params(config, seeds) -> bool:
    """Whether a run of ``seeds`` seeds starts each seed from its own params: ``init_from``
    names a run of more than one seed (then it must have ``seeds``)."""
    return (getattr(config, "init_from", None) is not None and seeds is not None and seeds > 1
            and not config.pretrained and source_run(config.init_from)[1] > 1)


def build_train(config, callback=None, callback_every: int = 1):
    """``make_train(config, callback, callback_every, params=init_params(config))``: the
    training function with ``init_from`` read from its run folder (make_train reads no disk)."""
    return make_train(config, callback=callback, callback_every=callback_every,
                      params=init_params(config))


# ----------------------------------------------------------------------------- compiled pieces

def _config_key(config) -> str:
    return json.dumps(config_to_dict(config), sort_keys=True)


def _train_fn(config, log_every):
    """``build_train`` reporting to the progress sink every ``log_every`` iterations, cached."""
    return compiled.cached(("runs.train", _config_key(config), log_every),
                           lambda: build_train(config, SINK, log_every))[0]


def seed_devices(seeds: int) -> int:
    """How many devices a run of ``seeds`` seeds is spread over: the most of this process's
    devices that divides ``seeds`` (on a CPU, ``jaxgrpo.use_cpu_cores`` gives one device per
    core, and ``jaxgrpo train`` does so itself); 1 for one seed or in a multi-process job."""
    if seeds < 2 or jax.process_count() > 1:
        return 1
    n = min(len(jax.local_devices()), seeds)
    return max(d for d in range(1, n + 1) if seeds % d == 0)


def over_seeds(fn, seeds: int, one_at_a_time: bool = False):
    """``jax.jit`` of ``fn`` over a leading seed axis of every argument and output: on one
    device ``jax.vmap(fn)``; over ``seed_devices(seeds)`` devices, the seed axis sharded
    (``shard_map``) and each device's seeds vmapped, or with ``one_at_a_time`` run one after
    the other (``lax.map``; the initialization: a vmapped orthogonal initializer's batched QR
    fans out over XLA:CPU's thread pool from inside it, and with several CPU devices executing
    at once that deadlocks, jaxlib 0.10.2)."""
    k = seed_devices(seeds)
    if k == 1:
        return jax.jit(jax.vmap(fn))
    from jax.sharding import Mesh
    local = (lambda *a: jax.lax.map(lambda x: fn(*x), a)) if one_at_a_time else jax.vmap(fn)
    return shard_jit(local, Mesh(np.asarray(jax.local_devices()[:k]), ("seeds",)))


def shard_jit(local, mesh, compiler_options=None):
    """``jax.jit`` of ``local`` on every device of the 1-D ``mesh``: every argument and output
    split along its leading axis over the mesh's axis (``shard_map``), each device computing
    its own rows with no traffic between devices. ``local`` sees ``[rows / devices, ...]``.
    How run_training spreads seeds (``over_seeds``) and a sweep its runs (``sweeps.runner``)."""
    from jax.sharding import NamedSharding, PartitionSpec as P
    spec = P(mesh.axis_names[0])
    # check_vma=False: the training code is written for plain vmap, not for shard_map's
    # varying-manual-axes types (a while_loop carry starting from constants would fail it)
    sharded = jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
    return jax.jit(sharded, in_shardings=NamedSharding(mesh, spec),
                   out_shardings=NamedSharding(mesh, spec), compiler_options=compiler_options)


def _compiled_init(config, seeds, log_every, compiler_options=None):
    """Compiled ``keys [S] -> TrainState`` (leading seed axis) and its compile seconds. When
    ``init_from`` gives every seed its own params (``per_seed_params``), they are an argument
    of the compiled program, vmapped with the keys. Over several devices (``over_seeds``)."""
    train = _train_fn(config, log_every)
    keys = jax.ShapeDtypeStruct((seeds,), jax.random.key(0).dtype)
    key = ("runs.init", _config_key(config), seeds, seed_devices(seeds),
           compiled.options_key(compiler_options))
    if not per_seed_params(config, seeds):
        return compiled.cached(key, lambda: over_seeds(lambda k: train.init(k), seeds, True)
                               .lower(keys).compile(compiler_options=compiler_options))
    params = init_params(config, seeds)
    fn, dt = compiled.cached((*key, "per-seed params"), lambda: over_seeds(
        lambda k, p: train.init(k, params=p), seeds, True).lower(keys, params)
        .compile(compiler_options=compiler_options))
    return (lambda k: fn(k, params)), dt


def _run_key(config, seeds, n, log_every, compiler_options=None):
    return ("runs.run", _config_key(config), seeds, seed_devices(seeds), n, log_every,
            compiled.options_key(compiler_options))


def _compiled_run(config, seeds, n, log_every, state_shape, compiler_options=None):
    """Compiled ``state [S, ...] -> (state, metrics {name: [S, n]})``: ``n`` iterations of
    every seed (one ``train.run`` scan, vmapped, over several devices: ``over_seeds``), and
    its compile seconds."""
    train = _train_fn(config, log_every)
    return compiled.cached(_run_key(config, seeds, n, log_every, compiler_options),
                           lambda: over_seeds(lambda s: train.run(s, None, n), seeds)
                           .lower(state_shape).compile(compiler_options=compiler_options))


def _compiled_spent(config, seeds, n, log_every, state_shape, compiler_options=None):
    """``_compiled_run`` of seeds whose budgets are all spent (``train.run_spent``: the same
    results, bitwise, from a program without rollout and update)."""
    train = _train_fn(config, log_every)
    return compiled.cached(("runs.spent", *_run_key(config, seeds, n, log_every,
                                                    compiler_options)[1:]),
                           lambda: over_seeds(lambda s: train.run_spent(s, None, n), seeds)
                           .lower(state_shape).compile(compiler_options=compiler_options))


def _spent(config, log_every, state) -> bool:
    """Whether every seed of a budgeted run has used its budget (``train.budget_left``)."""
    return getattr(_train_fn(config, log_every), "run_spent", None) is not None and \
        not bool(jnp.any(budget_left(config, state)))


def default_log_every(iterations: int) -> int:
    """About 200 progress updates per run of ``iterations`` iterations (a budgeted config's
    ``expected_iterations``)."""
    return max(1, math.ceil(iterations / 200))


def chunk_length(log_every: int, checkpoint_every: int | None) -> int:
    """Iterations per compiled call of a run: ``log_every``, or its greatest common divisor
    with ``checkpoint_every``, so that checkpoints fall on chunk ends. A run of ``I``
    iterations then compiles at most two programs (this length and ``I`` modulo it), and a
    signal is acted on within one chunk (``jaxgrpo.preemption``)."""
    return math.gcd(log_every, checkpoint_every) if checkpoint_every else log_every


def state_template(config, seeds: int, log_every: int = 1):
    """``jax.eval_shape`` of the seed-batched initial TrainState."""
    train = _train_fn(config, log_every)
    keys = jax.ShapeDtypeStruct((seeds,), jax.random.key(0).dtype)
    return jax.eval_shape(jax.vmap(lambda k: train.init(k)), keys)


# ----------------------------------------------------------------------------- training

def run_training(config, out, *, seeds: int = 1, base_seed: int = 0,
                 checkpoint_every: int | None = None, stop_after: int | None = None,
                 resume: bool = False, resume_step: int | None = None, progress: bool = False,
                 log_every: int | None = None, tensorboard: bool = False, wandb: bool = False,
                 wandb_project: str | None = None, max_to_keep: int | None = 3,
                 compiler_options: dict | None = None, preset: str | None = None,
                 echo=None) -> dict:
    """Train ``config`` with ``seeds`` vmapped seeds into the run folder ``out``; returns the
    summary dict (also written to ``out/summary.json``). The seeds are spread over this
    process's devices (``seed_devices``: on a CPU one per core after
    ``jaxgrpo.use_cpu_cores()``, which ``jaxgrpo train`` calls), each device vmapping its own.

    The compiled loop runs in chunks of ``chunk_length(log_every, checkpoint_every)``
    iterations; a checkpoint is written every ``checkpoint_every`` iterations and at the end
    (only at the end when None). Inside ``preemption.handling()`` a signal stops the run at the
    end of the chunk in flight, with a checkpoint of the iteration reached and the partial
    metrics.csv, summary.json and curves.png, by raising ``preemption.Preempted``.
    ``stop_after``: stop (with a checkpoint) once that many iterations are done. ``resume``:
    continue ``out`` from its latest checkpoint (the config must be the folder's), or from
    checkpoint ``resume_step``; checkpoints after that one are then moved, with the folder's
    current metrics.csv, summary.json and curves.png, to ``out/superseded/<time>/`` (kept,
    never deleted). A resumed run keeps the options of its folder's ``options.json``
    (checkpoint_every, log_every, tensorboard, wandb, wandb_project, compiler_options) except
    those given again; a complete one is left as it is. Without ``resume``, a folder that
    already holds results, or a path that is a file, is refused (``RunError``), as is a bad
    ``config.init_from``, or resuming a folder with results but no checkpoint, before anything
    is written. A resumed run ends with the same parameters and metrics, bitwise, as the run
    done in one go (on the same number of devices: spread differently, the seeds round
    differently).

    progress: show a progress bar on stderr; log_every: report every k iterations to the bar and
    the loggers (default: about 200 reports per run). compiler_options: XLA options for the
    compiled loop (e.g. ``{"xla_backend_optimization_level": 0}`` compiles about twice as fast
    on CPU; results may then differ in the last bits from a default build). preset: the name
    of the preset the config came from, recorded in summary.json. echo: a ``print``-like
    function for the few status lines (None: silent, but for the line naming both tasks when
    the run trains another task than its ``init_from`` learned, then a warning).
    """
    out = check_folder_path(out, "--resume" if resume else "--out")
    given = {"checkpoint_every": checkpoint_every, "log_every": log_every,
             "tensorboard": tensorboard or None, "wandb": wandb or None,
             "wandb_project": wandb_project, "compiler_options": compiler_options}
    saved_opts = _saved_options(out) if resume else None
    opts = {**(saved_opts or {}), **{k: v for k, v in given.items() if v is not None}}
    checkpoint_every, compiler_options = opts.get("checkpoint_every"), opts.get("compiler_options")
    note = _check_arguments(config, seeds, checkpoint_every, stop_after, resume, resume_step)
    if seeds > 1:
        warn_idle_cores("run_training", f"{seeds} seeds", jax.local_devices())
    run = _Run(config, out, seeds, base_seed, config_to_dict(config, seeds, base_seed),
               opts.get("log_every") or default_log_every(
                   getattr(config, "expected_iterations", config.iterations)), preset,
               echo or (lambda *a, **k: None))
    with Checkpointer(out / "checkpoints", max_to_keep=max_to_keep) as ckpt:
        start = _start_step(ckpt, run, resume, resume_step)
        if opts.get("tensorboard"):
            require("tensorboardX", "--tensorboard", "tensorboard")
        if opts.get("wandb"):
            require("wandb", "--wandb", "wandb")
        state = None
        if start is not None:                 # a bad checkpoint fails here, before any write
            state = _continue_from(ckpt, start, run)
            if state is None:
                return _summary(run)
        elif resume:
            run.say(f"{out}: no checkpoint yet, starting at iteration 0")
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            try:                       # claims the folder: two runs cannot both start in it
                save_config(out / "config.yaml", config, seeds, base_seed, preset=run.preset,
                            exclusive=True)
            except FileExistsError:
                raise RunError(f"{out}: another run started there meanwhile; choose another "
                               "--out") from None
        if opts != saved_opts:
            write_json(out / OPTIONS_FILE, opts)
        loggers = ([TensorBoardLogger(out / "tensorboard")] if opts.get("tensorboard") else [])\
            + ([WandbLogger(out, run.run_dict, opts.get("wandb_project") or "jaxgrpo")]
               if opts.get("wandb") else [])
        announced = state is None
        if state is None:
            if note:                    # another task than init_from's: said, not refused
                (echo or _warn)(note)
            run.say(f"compiling {config.algo.upper()} {config.env}: {seeds} seed(s) ...")
            init, dt = _compiled_init(config, seeds, run.log_every, compiler_options)
            run.compile_s += dt
            state = jax.block_until_ready(init(jax.random.split(jax.random.key(base_seed),
                                                                seeds)))
        stop = config.iterations if stop_after is None else min(config.iterations, stop_after)
        _train_chunks(ckpt, run, state, stop, checkpoint_every, compiler_options, announced,
                      Reporter(seeds, config.total_timesteps, config.iterations, bar=progress,
                               loggers=loggers,
                               description=f"{config.algo.upper()} {config.env}"))
        summary = _summary(run)
        write_results(out, config, run.metrics(), summary)
        return summary


def _saved_options(out: Path) -> dict:
    """The options recorded in ``out/options.json`` ({} when there is none: older folders)."""
    try:
        saved = json.loads((out / OPTIONS_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise RunError(f"--resume {out}: {OPTIONS_FILE} is unreadable ({e})") from None
    return saved if isinstance(saved, dict) else {}


@dataclasses.dataclass
class _Run:
    """A run in progress: what it is, and its iterations, metrics and seconds so far."""

    config: Any
    out: Path
    seeds: int
    base_seed: int
    run_dict: dict
    log_every: int
    preset: str | None
    say: Any
    done: int = 0
    compile_s: float = 0.0
    run_s: float = 0.0
    chunks: list = dataclasses.field(default_factory=list)

    def metrics(self) -> dict:
        """The metrics so far, ``{name: [S, done]}`` (the chunks joined into one)."""
        if len(self.chunks) > 1:     # a metric a chunk lacks (older code's) is NaN there
            names = dict.fromkeys(k for c in self.chunks for k in c)
            fill = lambda c, k: c[k] if k in c else np.full(
                next(iter(c.values())).shape, np.nan, np.float32)
            self.chunks = [{k: np.concatenate([fill(c, k) for c in self.chunks], axis=1)
                            for k in names}]
        return self.chunks[0]


def _summary(run: _Run) -> dict:
    return summarize(run.config, run.metrics(), seeds=run.seeds, base_seed=run.base_seed,
                     iterations_done=run.done, compile_seconds=run.compile_s,
                     run_seconds=run.run_s, preset=run.preset,
                     seed_devices=seed_devices(run.seeds))


def _warn(line: str) -> None:
    warnings.warn(line, stacklevel=3)


def _check_arguments(config, seeds, checkpoint_every, stop_after, resume, resume_step):
    """``RunError`` for a bad count, ``--step`` without ``--resume`` or a bad ``init_from``
    (for ``seeds`` seeds); returns ``check_init_from``'s line when the run trains another task
    than the one its ``init_from`` learned (else None)."""
    for name, v in (("checkpoint_every", checkpoint_every), ("stop_after", stop_after),
                    ("resume_step", resume_step)):
        if v is not None:
            try:
                check_count(name, v, 1)
            except ValueError as e:
                raise RunError(str(e)) from None
    if resume_step is not None and not resume:
        raise RunError("--step: only with --resume (which checkpoint to continue from)")
    if getattr(config, "init_from", None) is not None:
        try:
            return check_init_from(config, seeds)
        except ValueError as e:
            raise RunError(str(e)) from None
    return None


def _start_step(ckpt, run: _Run, resume: bool, resume_step) -> int | None:
    """The checkpoint to continue from (None: start at iteration 0); ``RunError`` when
    resuming a folder that is not this config's run, or starting in one that holds results."""
    out = run.out
    if not resume:
        if holds_results(out):
            hint = ("or continue the run with --resume" if folder_kind(out) == "run"
                    else "it is not a training run")
            raise RunError(f"{out} already holds results ({_listing(out)}); choose another "
                           f"--out, {hint}")
        return None
    if not (out / "config.yaml").is_file():
        raise RunError(f"--resume {out}: no config.yaml there; not a run folder")
    saved, saved_seeds, saved_base = load_config(out / "config.yaml")
    diff = config_diff(config_to_dict(saved, saved_seeds, saved_base), run.run_dict)
    if diff:
        raise RunError(f"--resume {out}: the config differs from the run's config.yaml: {diff}")
    steps = ckpt.steps()
    if resume_step is not None and resume_step not in steps:
        raise RunError(f"--step {resume_step}: {out} has no checkpoint {resume_step}; it "
                       f"has {steps or 'none'}")
    results = [n for n in ("metrics.csv", "summary.json") if (out / n).exists()]
    if not steps and results:
        raise RunError(f"--resume {out}: holds results ({', '.join(results)}) but no checkpoint "
                       "to continue from; it was left as it is (train again with another --out)")
    return resume_step if resume_step is not None else (steps[-1] if steps else None)


def _continue_from(ckpt, start: int, run: _Run):
    """Restore checkpoint ``start`` into ``run``, setting later checkpoints aside; returns the
    state, or None when the run is already complete (nothing to do)."""
    template = state_template(run.config, run.seeds, run.log_every)
    state, metrics0, meta = restore(ckpt, start, template, run.run_dict, run.out, "train")
    run.done = int(meta["iteration"])
    run.preset = run.preset or meta.get("preset")
    later = [s for s in ckpt.steps() if s > start]
    if later:
        where = _set_aside(run.out, later, ckpt)
        run.say(f"continuing from checkpoint {start}: checkpoint(s) {later} moved to {where} "
                "(kept, not deleted), beside copies of the run's results as they were")
    run.compile_s = float(meta.get("compile_seconds", 0))
    run.run_s = float(meta.get("run_seconds", 0))
    run.chunks.append(metrics0)
    I = run.config.iterations
    if run.done >= I and not later and _summary_done(run.out) == run.done:
        run.say(f"{run.out}: the run is complete ({run.done}/{I} iterations); nothing to do")
        return None
    run.say(f"resuming {run.out} at iteration {run.done}/{I}")
    was, now = int(meta.get("seed_devices", 1)), seed_devices(run.seeds)
    if was != now:
        run.say(f"its seeds ran over {was} device(s) and continue over {now}: the rest rounds "
                "differently from a run in one go on either count")
    return state


def _train_chunks(ckpt, run: _Run, state, stop, checkpoint_every, compiler_options, announced,
                  reporter) -> None:
    """Train ``run`` from ``state`` until ``stop`` iterations in chunks of ``chunk_length``
    iterations, with a checkpoint (and, before the end, the folder's results without the plot)
    every ``checkpoint_every`` iterations and at ``stop``. Once every seed's budget is spent
    (on-policy GRPO), the rest of the scan runs in one call of ``train.run_spent`` (bitwise
    the same, without checkpoints between). Before each chunk, a signal caught by
    ``preemption.handling()`` saves the iteration reached and raises ``Preempted``."""
    config, seeds = run.config, run.seeds
    state_shape = jax.eval_shape(lambda s: s, state)
    length = chunk_length(run.log_every, checkpoint_every)
    saved = run.done

    def save_reached():
        if run.done > saved:
            _save(ckpt, run, state)
            write_results(run.out, config, run.metrics(), _summary(run))

    SINK.target = reporter
    try:
        started = False
        while run.done < stop:
            preemption.check(run.out, run.done, save_reached)
            if _spent(config, run.log_every, state):   # the rest is idle: one cheap call
                n = stop - run.done
                fn, dt = _compiled_spent(config, seeds, n, run.log_every, state_shape,
                                         compiler_options)
            else:
                n = min(stop, (run.done // length + 1) * length) - run.done
                if _run_key(config, seeds, n, run.log_every, compiler_options) not in \
                        compiled.CACHE and not (announced and not started):
                    run.say(f"compiling {config.algo.upper()} {config.env}: {seeds} seed(s), "
                            f"{n} iterations per call ...")
                fn, dt = _compiled_run(config, seeds, n, run.log_every, state_shape,
                                       compiler_options)
            run.compile_s += dt
            if not started:
                reporter.start(float(np.mean(np.asarray(state.env_steps))))
                started = True
            reporter.offset = run.done
            t = time.perf_counter()
            # Wait with block_until_ready (it releases the GIL, which the loop's progress
            # callback needs) before any host conversion (which may wait holding it).
            state, m = jax.block_until_ready(fn(state))
            dt = time.perf_counter() - t
            run.run_s += dt
            reporter.chunk_done(dt)
            jax.effects_barrier()
            m = jax.device_get(m)
            run.chunks.append({k: np.asarray(v) for k, v in m.items()})
            run.done += n
            if run.done == stop or (checkpoint_every and run.done % checkpoint_every == 0):
                _save(ckpt, run, state)
                saved = run.done
                if run.done < stop:
                    write_results(run.out, config, run.metrics(), _summary(run), plot=False)
    finally:
        SINK.target = None
        reporter.close(None)


def _save(ckpt, run: _Run, state) -> None:
    """Checkpoint ``run.done`` iterations: ``state`` and the metrics so far."""
    ckpt.save(run.done, state, run.metrics(), {
        "iteration": run.done, "num_iterations": run.config.iterations,
        "config": run.run_dict, "compile_seconds": run.compile_s,
        "run_seconds": run.run_s, "preset": run.preset,
        "seed_devices": seed_devices(run.seeds),
        "saved_at": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": versions()})


def _listing(out: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def _summary_done(out: Path):
    """``iterations_done`` of ``out/summary.json``, None if it is missing or unreadable."""
    try:
        return json.loads((out / "summary.json").read_text()).get("iterations_done")
    except (OSError, ValueError, AttributeError):
        return None


def _set_aside(out: Path, steps: list, ckpt) -> Path:
    """Put checkpoints ``steps`` aside in ``out/superseded/<time>/checkpoints/``, with copies
    of the run's config.yaml, metrics.csv, summary.json and curves.png as they are now (copied
    first, so an interruption loses nothing) and its eval.json (moved: its entries name those
    checkpoints). Returns that folder."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = out / "superseded" / stamp
    n = 1
    while dest.exists():
        n += 1
        dest = out / "superseded" / f"{stamp}-{n}"
    (dest / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "metrics.csv", "summary.json", "curves.png"):
        if (out / name).is_file():
            shutil.copy2(out / name, dest / name)
    ckpt.close()                         # orbax caches the step list: reopen after the move
    for step in steps:
        os.replace(Path(ckpt.directory) / str(step), dest / "checkpoints" / str(step))
    if (out / "eval.json").is_file():
        os.replace(out / "eval.json", dest / "eval.json")
    return dest


def restore(ckpt, step: int, template, run_dict: dict, out: Path, command: str):
    """``ckpt.restore(step, ...)`` checked to hold ``step`` iterations of metrics; on any
    ``CheckpointError`` the message also names the newest intact earlier checkpoint and the
    ``jaxgrpo COMMAND ... --step N`` that uses it."""
    try:
        state, metrics, meta = ckpt.restore(step, template, expected_config=run_dict)
        done = meta.get("iteration")
        if not isinstance(done, int):
            raise CheckpointError(f"checkpoint {ckpt.directory}/{step}: its metadata has no "
                                  "iteration count; the checkpoint is corrupt")
        if done != step or any(v.shape[-1] != done for v in metrics.values()):
            raise CheckpointError(f"checkpoint {ckpt.directory}/{step}: holds "
                                  f"{done} iterations of metrics, expected {step}")
        return state, {RENAMED_METRICS.get(k, k): v for k, v in metrics.items()}, meta
    except CheckpointError as e:
        intact = ckpt.newest_intact(template, run_dict, below=step)
        if intact is None:
            hint = "no earlier checkpoint is intact"
        elif command == "train":
            hint = (f"checkpoint {intact} is intact: continue from it with `jaxgrpo train "
                    f"--resume {out} --step {intact}` (later checkpoints are then kept in "
                    f"{out}/superseded/)")
        else:
            hint = (f"checkpoint {intact} is intact: `jaxgrpo {command} {out} --step {intact}` "
                    "uses it")
        raise CheckpointError(f"{e}; {hint}") from None


def sft(config, out, *, seeds: int = 1, base_seed: int = 0, **kwargs) -> dict:
    """Train ``config`` (an ``SFTConfig``) into the run folder ``out`` (``run_training``, whose
    keyword arguments it takes: progress, checkpoint_every, resume, ...). Returns the summary
    dict; the policy is then ``GRPOConfig(init_from=out)``'s starting point."""
    if not isinstance(config, SFTConfig):
        raise TypeError(f"sft: needs an SFTConfig, got {type(config).__name__}")
    return run_training(config, out, seeds=seeds, base_seed=base_seed, **kwargs)


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
        state, metrics, meta = restore(ckpt, step, state_template(config, seeds),
                                       config_to_dict(config, seeds, base_seed), run_dir,
                                       "eval")
    return Run(run_dir, config, seeds, base_seed, state, metrics, step, meta)


def evaluate_run(run: Run, episodes: int = 100, seed: int = 0) -> dict:
    """Greedy and sampled evaluation of every seed's policy (``evaluation.seed_returns``):
    ``{mode: {"per_seed": [{mean, std}], "mean", "std", "ci95"}}`` where the overall mean/std
    pool all episodes and ci95 is the bootstrap CI of the mean over seeds."""
    out = {"episodes_per_seed": episodes, "seed": seed, "checkpoint": run.step,
           "iterations": run.config.iterations}
    returns = seed_returns(run.config, run.state.params, jax.random.key(seed), episodes)
    for mode, r in returns.items():
        per_seed = r.mean(1)
        m, lo, hi = bootstrap_ci(per_seed)
        out[mode] = {"per_seed": [{"mean": float(a), "std": float(b)}
                                  for a, b in zip(per_seed, r.std(1))],
                     "mean": float(r.mean()), "std": float(r.std()), "ci95": [lo, hi]}
    return out
