"""``sweep``: a grid of configs x seeds checked (on every process alike), grouped into one
compilation per static configuration, run sharded over the devices (optionally checkpointed),
and gathered into a ``SweepResult``."""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from .. import provenance
from ..checks import check_count
from ..compiled import static_key
from ..grids import check_checkpoint_every, check_vmap_size, grid_configs
from ..configio import check_init_from
from ..loggers import SINK
from .checkpoints import SweepCheckpoints, batched, run_checkpointed
from ..cores import warn_idle_cores
from .mesh import check_devices, placement, resolve_vmap_size, run_mesh, to_host
from .processes import agree, describe
from .result import SweepResult
from .runner import compiled_runner

logger = logging.getLogger("jaxgrpo.sweeps")


class StaticSweepWarning(UserWarning):
    """The grid names static fields, so the sweep compiles more than once."""


def sweep(config, grid: Mapping[str, Sequence] | None = None, seeds: int = 1, *,
          base_seed: int = 0, log_every: int = 1, devices=None,
          compiler_options: Mapping[str, Any] | None = None,
          vmap_size: int | str | None = "auto", checkpoint_dir=None,
          checkpoint_every: int | None = None, segment: int | str | None = None,
          reporter=None) -> SweepResult:
    """Train every combination of ``grid`` x ``seeds`` seeds.

    config: a GRPOConfig or PPOConfig, the base of every combination.
    grid: ``{field: [values]}``; any init field of the config, or ``"algo"`` (``"grpo"`` /
      ``"ppo"``: switches the config class, carrying over the shared fields that were set).
      Combination ``c`` is ``config.replace(**combination)``, in ``itertools.product`` order.
    seeds: number of seeds S; seed ``s`` uses ``jax.random.split(jax.random.key(base_seed),
      S)[s]`` for every combination.
    log_every: keep one row per ``log_every`` iterations (and the last iteration), inside the
      compiled program: row ``j`` is iteration ``(j + 1) * log_every - 1`` with each metric's
      last non-NaN value over its chunk of ``log_every`` iterations.
    devices: devices to shard the runs over (default ``jax.devices()``: all of them, or in a
      single process the first R when the sweep has R runs, fewer than the devices; in a
      multi-process job every process must own at least one).
    compiler_options: passed to ``jax.jit`` (e.g. ``{"xla_backend_optimization_level": 0}``
      to trade run speed for compile speed on CPU).
    vmap_size: how many runs each device vmaps at once. ``"auto"`` (default) and None: all
      of them (``resolve_vmap_size``). A smaller value runs groups of ``vmap_size`` one after
      the other (``lax.map``) in the same compiled program. Vmapped runs move in lockstep,
      which costs nothing with fixed-length iterations (PPO, GRPO's stream collector) but
      makes on-policy GRPO wait, each iteration, for the longest episode of any run
      (benchmarks/sweep_scaling.md). The value used is in ``placement`` and the log line.
    checkpoint_dir: save the sweep's state (every run's ``TrainState`` and the metrics so far)
      with orbax there every ``checkpoint_every`` iterations (a multiple of ``log_every``;
      default: a tenth of the longest run, rounded up to one), and continue from its newest
      checkpoint if it has one: a sweep killed at any point and called again with the same
      arguments ends with the same metrics as one that ran in one go. A checkpoint of another
      sweep (config, grid, seeds, base_seed, log_every, checkpoint_every) or of other jaxgrpo
      code is refused with a ``CheckpointError`` and left as it is.
    segment: run each compilation ``segment`` iterations per compiled call (a multiple of
      ``log_every``; ``"auto"``: ``auto_segment``), so that a signal caught by
      ``jaxgrpo.preemption.handling()`` stops the sweep within one call: the iterations
      reached are then saved to ``checkpoint_dir`` (if given) and ``preemption.Preempted``
      is raised. With ``segment``, ``checkpoint_every`` None saves only then. None: one call
      per compilation (``checkpoint_every`` iterations per call when checkpointed).
    reporter: where the runs' kept metric rows go while they run (``loggers.SweepReporter``:
      the progress line and loggers of ``jaxgrpo sweep``); None: nowhere (the compiled
      programs then have no host callback).

    Returns a ``SweepResult`` with ``metrics[name]: [C, S, I]``. Raises ``ValueError`` naming
    the field for a bad grid (or a bad ``init_from``), before compiling anything. Each distinct
    value of the static fields is one compilation (warned about with ``StaticSweepWarning``);
    the dynamic fields and the seeds of one compilation are one vmapped batch sharded over
    ``devices``.

    Multi-process (after ``jax.distributed.initialize`` on each): every process makes the same
    call and receives the whole result; the calls are compared first, and any difference is
    one ``ValueError`` on every process naming it.
    """
    desc = describe(config, grid, seeds, base_seed, log_every, devices, compiler_options,
                    vmap_size, checkpoint_every)
    checked, error = None, None
    try:
        checked = _check_call(config, grid, seeds, base_seed, log_every, devices, vmap_size,
                              checkpoint_every)
    except ValueError as e:
        error = e
    agree(desc, error)
    seeds, base_seed, log_every, vmap_size, checkpoint_every, combos, configs, mesh = checked
    if devices is None and len(configs) * seeds > 1:
        warn_idle_cores("sweep", f"{len(configs) * seeds} runs", list(mesh.devices.flat))
    groups, static_in_grid = _compilations(configs, combos, seeds)
    keys = jax.random.split(jax.random.key(base_seed), seeds)
    key_impl = jax.random.key_impl(keys)
    platform = mesh.devices.flat[0].platform
    runners = [compiled_runner(configs[idx[0]], log_every, mesh, key_impl, compiler_options,
                               resolve_vmap_size(vmap_size, platform, configs[idx[0]].algo),
                               report=reporter is not None,
                               shared=shared_hparams([configs[c] for c in idx]))
               for idx in groups.values()]
    longest = lambda: max(r.num_iterations for r in runners)
    if segment == "auto":
        segment = auto_segment(longest(), log_every, checkpoint_every)
    elif segment is not None:
        segment = check_count("segment", segment, 1)
        if segment % log_every or (checkpoint_every or segment) % segment:
            raise ValueError(f"segment: must be a multiple of log_every ({log_every}) that "
                             f"divides checkpoint_every ({checkpoint_every}), got {segment}")
    ckpt = None
    if checkpoint_dir is not None:
        if checkpoint_every is None and segment is None:
            checkpoint_every = -(-max(1, longest() // 10) // log_every) * log_every
        ckpt = _open_checkpoints(checkpoint_dir, checkpoint_every, desc)
    SINK.target = reporter
    try:
        return _sweep(configs, combos, groups, runners, static_in_grid, seeds,
                      np.asarray(jax.random.key_data(keys)), base_seed, log_every, mesh,
                      vmap_size, ckpt, checkpoint_every, segment, reporter)
    finally:
        SINK.target = None
        if ckpt is not None:
            ckpt.close()


def _check_call(config, grid, seeds, base_seed, log_every, devices, vmap_size,
                checkpoint_every) -> tuple:
    """The arguments of ``sweep`` checked (``ValueError`` naming the first bad one) ->
    ``(seeds, base_seed, log_every, vmap_size, checkpoint_every, combos, configs, mesh)``."""
    seeds = check_count("seeds", seeds, 1)
    log_every = check_count("log_every", log_every, 1)
    base_seed = check_count("base_seed", base_seed, 0)
    vmap_size = check_vmap_size(vmap_size)
    checkpoint_every = check_checkpoint_every(checkpoint_every, log_every)
    if not hasattr(config, "hparams"):
        raise ValueError("config: must be a GRPOConfig or PPOConfig, got "
                         f"{type(config).__name__}")
    combos, configs = grid_configs(config, grid)
    checked = set()       # init_from and the model shape it must match are static fields
    for cfg in configs:
        if getattr(cfg, "init_from", None) is not None and static_key(cfg) not in checked:
            check_init_from(cfg, per_seed=False)
            checked.add(static_key(cfg))
    if devices is None and jax.process_count() == 1:    # no more devices than runs: no padding
        devices = jax.devices()[:max(1, min(jax.device_count(), len(configs) * seeds))]
    mesh = run_mesh(devices)
    check_devices(mesh)
    return seeds, base_seed, log_every, vmap_size, checkpoint_every, combos, configs, mesh


def _compilations(configs, combos, seeds) -> tuple[dict, list]:
    """``({static key: [combination indices]}, the grid's static fields)``; warns
    (``StaticSweepWarning`` and a log line) when there is more than one compilation."""
    groups: dict = {}
    for c, cfg in enumerate(configs):
        groups.setdefault(static_key(cfg), []).append(c)
    dynamic_names = set(configs[0].hparams())
    for cfg in configs:
        dynamic_names &= set(cfg.hparams())
    grid_keys = list(combos[0])

    def splits(k):   # a dynamic field can still pick the program (``compiled.static_key``)
        programs: dict = {}
        for combo, cfg in zip(combos, configs):
            rest = tuple(repr(v) for j, v in combo.items() if j != k)
            programs.setdefault(rest, set()).add(static_key(cfg))
        return any(len(p) > 1 for p in programs.values())

    static_in_grid = [k for k in grid_keys if k not in dynamic_names or splits(k)]
    if len(groups) > 1:
        msg = (f"sweep: grid fields {static_in_grid} are static (they change the compiled "
               f"program): {len(groups)} compilations, one per combination of their values; "
               f"{[k for k in grid_keys if k not in static_in_grid]} and the {seeds} seeds are "
               f"vmapped within each")
        logger.warning(msg)
        warnings.warn(msg, StaticSweepWarning, stacklevel=3)   # the caller of sweep
    return groups, static_in_grid


def shared_hparams(configs) -> frozenset:
    """The hyperparameters every one of ``configs`` gives the same value (NaN, a None
    option, equals NaN): the runs of one compilation take them unbatched, so a ``lax.cond`` on
    one (e.g. ``beta > 0``) stays a branch instead of becoming a select that runs both sides."""
    hps = [{k: float(v) for k, v in c.hparams().items()} for c in configs]
    same = lambda a, b: a == b or (np.isnan(a) and np.isnan(b))
    return frozenset(k for k in hps[0] if all(same(h[k], hps[0][k]) for h in hps))


def auto_segment(longest: int, log_every: int, checkpoint_every: int | None) -> int:
    """Iterations per compiled call of a preemptible sweep: about a 200th of the ``longest``
    run (as ``jaxgrpo train`` reports and chunks), rounded up to a multiple of ``log_every``,
    and dividing ``checkpoint_every`` when that is given."""
    seg = -(-max(log_every, -(-longest // 200)) // log_every) * log_every
    return math.gcd(seg, checkpoint_every) if checkpoint_every else seg


def _open_checkpoints(directory, every, desc) -> SweepCheckpoints:
    """The sweep's checkpoints, identified by ``desc`` with ``checkpoint_every=every`` (the
    interval in use: a tenth of the longest run when the caller gave none and no segment)."""
    identity = {k: v for k, v in desc.items()
                if k not in ("devices", "vmap_size", "compiler_options")}
    identity.update(checkpoint_every=every, jaxgrpo_code=provenance.code_digest())
    return SweepCheckpoints(directory, identity)


def _sweep(configs, combos, groups, runners, static_in_grid, seeds, key_data, base_seed,
           log_every, mesh, vmap_size, ckpt, checkpoint_every, segment,
           reporter=None) -> SweepResult:
    sizes = [len(idx) * seeds for idx in groups.values()]
    restored = None
    if ckpt is not None:
        restored = ckpt.restore(lambda g: batched(runners[g].template, sizes[g]), len(runners))
        if restored is not None:
            logger.info("sweep: continuing from %s (iterations done per compilation: %s)",
                        ckpt.directory, restored[2])
    saved_states, saved_rows, done = restored or ({}, {}, [])

    per_combo: list = [None] * len(configs)        # (metrics {name: [S, rows]}, kept rows)
    states: list | None = [None] * len(configs)
    placements: list = []
    for gi, (idx, runner) in enumerate(zip(groups.values(), runners)):
        hp = [configs[c].hparams() for c in idx]
        hp = {k: np.repeat(np.asarray([float(h[k]) for h in hp], np.float32), seeds)
              for k in hp[0]}                                   # [C_g * S]
        kd = np.tile(key_data, (len(idx),) + (1,) * (key_data.ndim - 1))   # [C_g * S, ...]
        logger.info("sweep: compilation %d/%d %s: %d combinations x %d seeds = %d runs on %d "
                    "devices, vmap_size %s%s", gi + 1, len(groups),
                    {k: combos[idx[0]][k] for k in static_in_grid} or "", len(idx), seeds,
                    len(idx) * seeds, mesh.devices.size,
                    "all" if runner.vmap_size is None else runner.vmap_size,
                    f" ({vmap_size})" if vmap_size == "auto" else "")
        if reporter is not None:
            reporter.group(idx)
        if ckpt is None and segment is None:
            state, metrics, R = runner(kd, hp)
            host = {k: to_host(v)[:R] for k, v in metrics.items()}
            place_of = next(iter(metrics.values()))
        else:
            state, host, R, place_of = run_checkpointed(
                runner, gi, kd, hp, ckpt, segment or checkpoint_every, checkpoint_every,
                saved_states, saved_rows, done)
        jax.effects_barrier()               # this compilation's progress callbacks are done
        placements.append(placement(idx, R, place_of, runner.vmap_size))
        for j, c in enumerate(idx):
            per_combo[c] = ({k: v.reshape(len(idx), seeds, -1)[j] for k, v in host.items()},
                            runner.kept)
        states = _split_states(states, state, idx, seeds, R)
    metrics, iteration = _gather(per_combo, seeds)
    return SweepResult(grid=combos, configs=configs, metrics=metrics, iteration=iteration,
                       seeds=seeds, base_seed=base_seed, log_every=log_every, states=states,
                       placement=placements, vmap_size=vmap_size)


def _split_states(states, state, idx, seeds, R):
    """``states[c]`` for the combinations ``idx`` from their runs' ``state [R_pad, ...]``; None
    once any state is not addressable from this process (multi-host)."""
    if states is None or not all(x.is_fully_addressable for x in jax.tree.leaves(state)):
        return None
    st = jax.tree.map(lambda x: x[:R].reshape((len(idx), seeds) + x.shape[1:]), state)
    for j, c in enumerate(idx):
        states[c] = jax.tree.map(lambda x: x[j], st)
    return states


def _gather(per_combo, seeds) -> tuple[dict, np.ndarray]:
    """Per-combination ``(metrics {name: [S, rows]}, kept)`` -> ``(metrics {name: [C, S, I]}
    NaN-padded, iteration [C, I] -1-padded)``."""
    n_rows = max(len(kept) for _, kept in per_combo)
    names = []
    for m, _ in per_combo:
        names += [k for k in m if k not in names]
    metrics = {k: np.full((len(per_combo), seeds, n_rows), np.nan, np.float32) for k in names}
    iteration = np.full((len(per_combo), n_rows), -1, np.int64)
    for c, (m, kept) in enumerate(per_combo):
        iteration[c, :len(kept)] = kept
        for k, v in m.items():
            metrics[k][c, :, :v.shape[-1]] = v
    return metrics, iteration
