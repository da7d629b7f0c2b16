"""Training runs into run folders: train (in checkpointed chunks), resume, load, evaluate.

The files of a run folder are described in ``jaxgrpo.rundir``. Seed ``s`` of a run with
``seeds=S, base_seed=b`` trains with ``jax.random.split(jax.random.key(b), S)[s]``: the run is
``jax.jit(jax.vmap(make_train(config)))(jax.random.split(jax.random.key(b), S))`` done in chunks
of ``checkpoint_every`` iterations (``train.run``), which gives the same result.
"""
from __future__ import annotations

import collections
import datetime
import json
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from .configio import check_count, config_to_dict, load_config, save_config
from .loggers import _SINK, Reporter, TensorBoardLogger, WandbLogger, require
from .provenance import versions
from .rundir import (RunError, check_folder_path, folder_kind, holds_results, summarize,
                     write_results)
from .stats import bootstrap_ci


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



# ----------------------------------------------------------------------------- training

def run_training(config, out, *, seeds: int = 1, base_seed: int = 0,
                 checkpoint_every: int | None = None, stop_after: int | None = None,
                 resume: bool = False, resume_step: int | None = None, progress: bool = False,
                 log_every: int | None = None, tensorboard: bool = False, wandb: bool = False,
                 wandb_project: str = "jaxgrpo", max_to_keep: int | None = 3,
                 compiler_options: dict | None = None, preset: str | None = None,
                 echo=None) -> dict:
    """Train ``config`` with ``seeds`` vmapped seeds into the run folder ``out``; returns the
    summary dict (also written to ``out/summary.json``).

    The compiled loop runs in chunks of ``checkpoint_every`` iterations (all of them when None);
    a checkpoint is written after every chunk and at the end. ``stop_after``: stop (with a
    checkpoint) once that many iterations are done. ``resume``: continue ``out`` from its
    latest checkpoint (the config must be the folder's), or from checkpoint ``resume_step``;
    checkpoints after that one are then moved, with the folder's current metrics.csv,
    summary.json and curves.png, to ``out/superseded/<time>/`` (kept, never deleted). Without
    ``resume``, a folder that already holds results, or a path that is a file, is refused
    (``RunError``). A resumed run ends with the same parameters and metrics, bitwise, as the
    run done in one go.

    progress: show a progress bar on stderr; log_every: report every k iterations to the bar and
    the loggers (default: about 200 reports per run). compiler_options: XLA options for the
    compiled loop (e.g. ``{"xla_backend_optimization_level": 0}`` compiles about twice as fast
    on CPU; results may then differ in the last bits from a default build). preset: the name
    of the preset the config came from, recorded in summary.json. echo: a ``print``-like
    function for the few status lines (None: silent).
    """
    from .checkpoint import Checkpointer

    out = check_folder_path(out, "--resume" if resume else "--out")
    with Checkpointer(out / "checkpoints", max_to_keep=max_to_keep) as ckpt:
        return _run_training(ckpt, config, out, seeds=seeds, base_seed=base_seed,
                             checkpoint_every=checkpoint_every, stop_after=stop_after,
                             resume=resume, resume_step=resume_step, progress=progress,
                             log_every=log_every, tensorboard=tensorboard, wandb=wandb,
                             wandb_project=wandb_project, compiler_options=compiler_options,
                             preset=preset, echo=echo)


def _run_training(ckpt, config, out, *, seeds, base_seed, checkpoint_every, stop_after, resume,
                  resume_step, progress, log_every, tensorboard, wandb, wandb_project,
                  compiler_options, preset, echo) -> dict:
    import jax

    from .checkpoint import config_diff

    say = echo or (lambda *a, **k: None)
    run_dict = config_to_dict(config, seeds, base_seed)
    for name, v in (("checkpoint_every", checkpoint_every), ("stop_after", stop_after),
                    ("resume_step", resume_step)):
        if v is not None:
            try:
                check_count(name, v, 1)
            except ValueError as e:
                raise RunError(str(e)) from None
    if resume_step is not None and not resume:
        raise RunError("--step: only with --resume (which checkpoint to continue from)")
    I = config.iterations
    log_every = log_every or default_log_every(I)

    start = None                       # the checkpoint to continue from
    if resume:
        if not (out / "config.yaml").is_file():
            raise RunError(f"--resume {out}: no config.yaml there; not a run folder")
        saved, saved_seeds, saved_base = load_config(out / "config.yaml")
        diff = config_diff(config_to_dict(saved, saved_seeds, saved_base), run_dict)
        if diff:
            raise RunError(f"--resume {out}: the config differs from the run's config.yaml: "
                           f"{diff}")
        steps = ckpt.steps()
        if resume_step is not None and resume_step not in steps:
            raise RunError(f"--step {resume_step}: {out} has no checkpoint {resume_step}; it "
                           f"has {steps or 'none'}")
        start = resume_step if resume_step is not None else (steps[-1] if steps else None)
    elif holds_results(out):
        hint = ("or continue the run with --resume" if folder_kind(out) == "run"
                else "it is not a training run")
        raise RunError(f"{out} already holds results ({_listing(out)}); choose another --out, "
                       f"{hint}")

    if tensorboard:
        require("tensorboardX", "--tensorboard", "tensorboard")
    if wandb:
        require("wandb", "--wandb", "wandb")

    keys = jax.random.split(jax.random.key(base_seed), seeds)
    compile_s = run_s = 0.0
    chunks: list[dict] = []
    if start is not None:                     # a bad checkpoint fails here, before any write
        template = state_template(config, seeds, log_every)
        state, metrics0, meta = restore(ckpt, start, template, run_dict, out, "train")
        done = int(meta["iteration"])
        preset = preset or meta.get("preset")
        later = [s for s in ckpt.steps() if s > start]
        if later:
            where = _set_aside(out, later, ckpt)
            say(f"continuing from checkpoint {start}: checkpoint(s) {later} moved to {where} "
                "(kept, not deleted), beside copies of the run's results as they were")
        compile_s, run_s = float(meta.get("compile_seconds", 0)), float(meta.get("run_seconds", 0))
        chunks.append(metrics0)
        if done >= I and not later and _summary_done(out) == done:
            say(f"{out}: the run is complete ({done}/{I} iterations); nothing to do")
            return summarize(config, metrics0, seeds=seeds, base_seed=base_seed,
                             iterations_done=done, compile_seconds=compile_s, run_seconds=run_s,
                             preset=preset)
        say(f"resuming {out} at iteration {done}/{I}")
    else:
        if resume:
            say(f"{out}: no checkpoint yet, starting at iteration 0")
        state, done = None, 0

    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        try:                           # claims the folder: two runs cannot both start in it
            save_config(out / "config.yaml", config, seeds, base_seed, preset=preset,
                        exclusive=True)
        except FileExistsError:
            raise RunError(f"{out}: another run started there meanwhile; choose another "
                           "--out") from None
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
                "compile_seconds": compile_s, "run_seconds": run_s, "preset": preset,
                "saved_at": datetime.datetime.now().isoformat(timespec="seconds"),
                "versions": versions()})
            if done < stop:
                summary = summarize(config, metrics, seeds=seeds, base_seed=base_seed,
                                    iterations_done=done, compile_seconds=compile_s,
                                    run_seconds=run_s, preset=preset)
                write_results(out, config, metrics, summary, plot=False)
    finally:
        _SINK.target = None
        reporter.close(None)
    metrics = _concat(chunks)
    summary = summarize(config, metrics, seeds=seeds, base_seed=base_seed, iterations_done=done,
                        compile_seconds=compile_s, run_seconds=run_s, preset=preset)
    write_results(out, config, metrics, summary)
    return summary


def _listing(out: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def _concat(chunks: list[dict]) -> dict:
    if len(chunks) == 1:
        return chunks[0]
    return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}


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
    import shutil
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
    from .checkpoint import CheckpointError
    try:
        state, metrics, meta = ckpt.restore(step, template, expected_config=run_dict)
        done = meta.get("iteration")
        if not isinstance(done, int):
            raise CheckpointError(f"checkpoint {ckpt.directory}/{step}: its metadata has no "
                                  "iteration count; the checkpoint is corrupt")
        if done != step or any(v.shape[-1] != done for v in metrics.values()):
            raise CheckpointError(f"checkpoint {ckpt.directory}/{step}: holds "
                                  f"{done} iterations of metrics, expected {step}")
        return state, metrics, meta
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
        state, metrics, meta = restore(ckpt, step, state_template(config, seeds),
                                       config_to_dict(config, seeds, base_seed), run_dir,
                                       "eval")
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



# ----------------------------------------------------------------------------- init_from

MODEL_FIELDS = ("num_layers", "width", "num_heads", "max_len", "positions")


def check_init_from(config) -> None:
    """``ValueError`` starting ``init_from:`` unless ``config.init_from`` is a run folder of a
    text run (SFT or GRPO) whose model has the config's shape; reads only its config.yaml."""
    path = Path(config.init_from)
    if not (path / "config.yaml").is_file():
        raise ValueError(f"init_from: {path} is not a run folder (no config.yaml there)")
    try:
        saved, _, _ = load_config(path / "config.yaml")
    except ValueError as e:
        raise ValueError(f"init_from: {e}") from None
    if not hasattr(saved, "model_config") or not saved.env.startswith("text:"):
        raise ValueError(f"init_from: {path} is a run on {saved.env}, not a text task")
    diff = [f"{k} {getattr(saved, k)} (this config: {getattr(config, k)})" for k in MODEL_FIELDS
            if getattr(saved, k) != getattr(config, k)]
    v_saved, v_here = saved.task.tokenizer.vocab_size, config.task.tokenizer.vocab_size
    if v_saved != v_here:
        diff.append(f"vocabulary size {v_saved} (this config: {v_here})")
    if diff:
        raise ValueError(f"init_from: the model of {path} differs from this config's: "
                         + ", ".join(diff))


def init_params(config):
    """The params ``config.init_from`` points to (its latest checkpoint, seed 0) as NumPy
    arrays, or None when it is None."""
    if getattr(config, "init_from", None) is None:
        return None
    check_init_from(config)
    run = load_run(config.init_from)
    return _seed0(run.state.params)


def _seed0(tree):
    import jax
    return jax.tree.map(lambda x: np.asarray(x)[0], tree)
