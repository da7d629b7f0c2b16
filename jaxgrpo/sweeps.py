"""Hyperparameter sweeps: many runs from one compilation, sharded over every device.

``sweep(config, grid, seeds)`` runs every combination of ``grid`` (a dict of lists) times
``seeds`` seeds and returns a ``SweepResult``:

- Dynamic fields (those in ``config.hparams()``: lr, beta, gamma, clip_eps, ...) are crossed
  with the seeds into one flat batch of ``R = combinations x seeds`` runs, vmapped, and compiled
  once.
- Static fields (group_size, num_groups, hidden_sizes, env, algo, ... anything that changes the
  traced program) cannot be vmapped: the sweep compiles once per combination of their values,
  and says so with a ``StaticSweepWarning`` and a ``logging`` line.
- The run axis ``R`` is sharded over ``jax.devices()`` (all devices of all processes, so a
  multi-host job only needs ``jax.distributed.initialize()`` before calling ``sweep``): a
  ``Mesh`` with one axis ``"runs"``, inputs placed with ``NamedSharding(mesh, P("runs"))``,
  padded to a multiple of the device count, and a ``shard_map`` so that each device runs its
  own runs with no cross-device traffic (GRPO's episode ``while_loop`` stops per device, not
  when the slowest run on any device is done). Padding runs are dropped afterwards. Within a
  device, ``vmap_size`` runs are vmapped at once (default: all of them).
- Seed ``s`` uses ``jax.random.split(jax.random.key(base_seed), seeds)[s]``, so
  ``make_train(config.replace(**combination))(key)`` with that key is the sweep's run (equal
  up to float rounding, which RL training amplifies over many iterations: see docs/sweeps.md).

The ``jaxgrpo sweep SWEEP.yaml`` command is in ``jaxgrpo.cli``; its YAML is read by
``jaxgrpo.configio.load_sweep_spec``.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import warnings
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .configio import check_count, expand_grid, grid_configs
from .stats import bootstrap_ci, last_valid
from .train import make_train

logger = logging.getLogger(__name__)

__all__ = ["sweep", "SweepResult", "StaticSweepWarning", "shard_runs", "run_mesh",
           "expand_grid", "grid_configs", "last_valid_row", "check_count"]

RUN_AXIS = "runs"


class StaticSweepWarning(UserWarning):
    """The grid names static fields, so the sweep compiles more than once."""


def _static_key(config) -> tuple:
    """What a compiled runner depends on: the config class and its static (non-hparam) fields."""
    dynamic = set(config.hparams())

    def norm(v):
        if isinstance(v, Mapping):
            return tuple(sorted((k, norm(x)) for k, x in v.items()))
        if isinstance(v, (list, tuple)):
            return tuple(norm(x) for x in v)
        return v

    return (type(config).__name__,) + tuple(
        (f.name, repr(norm(getattr(config, f.name)))) for f in dataclasses.fields(config)
        if f.init and f.name not in dynamic)


# ----------------------------------------------------------------------------- devices

def run_mesh(devices=None) -> Mesh:
    """A 1-D ``Mesh`` with axis ``"runs"`` over ``devices`` (default ``jax.devices()``: every
    device of every process, which is what a multi-host run after
    ``jax.distributed.initialize()`` needs)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices: need at least one device")
    return Mesh(np.asarray(devices), (RUN_AXIS,))


def _global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array sharded by ``sharding`` from the same host value on every process."""
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _to_host(x) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def shard_runs(fn, inputs, mesh: Mesh):
    """Call ``fn(inputs)`` with the leading (run) axis of ``inputs`` sharded over ``mesh``.

    fn: a ``jax.jit`` function mapping a pytree of ``[R_pad, ...]`` arrays to a pytree of
    ``[R_pad, ...]`` arrays, each row independent of the others. inputs: pytree of NumPy
    ``[R, ...]`` arrays. Rows are padded (repeating the last row) to ``R_pad``, the next
    multiple of the mesh size, placed with ``NamedSharding(mesh, P("runs"))``, and the outputs
    come back as global ``jax.Array``s of ``[R_pad, ...]`` plus ``R`` (slice ``[:R]``; the
    padding rows are copies of run ``R - 1``).
    Returns ``(outputs, R)``.
    """
    leaves = jax.tree.leaves(inputs)
    R = leaves[0].shape[0]
    n_dev = mesh.devices.size
    pad = (-R) % n_dev
    sharding = NamedSharding(mesh, P(RUN_AXIS))

    def place(x):
        x = np.asarray(x)
        if pad:
            x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)
        return _global_array(x, sharding)

    return fn(jax.tree.map(place, inputs)), R


def last_valid_row(x: jax.Array) -> jax.Array:
    """``x: [k, ...]`` -> ``[...]``: the last non-NaN entry along axis 0 (NaN if there is none).

    How a ``log_every``-iteration chunk is reduced to its kept row: a GRPO run whose env-step
    budget ran out mid-chunk still reports its last real return (later rows are NaN)."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return x[-1]
    ok = ~jnp.isnan(x)
    last = x.shape[0] - 1 - jnp.argmax(ok[::-1], axis=0)
    return jnp.take_along_axis(x, last[None], axis=0)[0]


def _single_run(config, log_every: int):
    """``(init, run, kept)`` for one seed: ``init(key, hp) -> TrainState``,
    ``run(state, hp) -> (TrainState, metrics)`` with metrics ``[I_kept]``, where the kept
    iterations ``kept`` are ``log_every - 1, 2 * log_every - 1, ...`` and always the last one
    (0-based). The scan is an outer scan of ``log_every``-iteration chunks; each chunk keeps
    one row, each metric's last non-NaN value in the chunk (``last_valid_row``), so only the kept
    rows are ever stored. With ``log_every=1``, ``run(init(key, hp), hp)`` is
    ``make_train(config)(key, hp)``."""
    train = make_train(config)
    n = train.num_iterations
    k = min(log_every, n)
    if k == 1:
        return train.init, lambda state, hp: train.run(state, hp, n), np.arange(n)
    outer, rem = divmod(n, k)

    def run(state, hp):
        def chunk(s, _):
            s, m = train.run(s, hp, k)
            return s, jax.tree.map(last_valid_row, m)

        state, ms = jax.lax.scan(chunk, state, None, length=outer)
        if rem:
            state, m = train.run(state, hp, rem)
            ms = jax.tree.map(lambda a, b: jnp.concatenate([a, last_valid_row(b)[None]]), ms, m)
        return state, ms

    kept = np.arange(1, outer + 1) * k - 1
    if rem:
        kept = np.append(kept, n - 1)
    return train.init, run, kept


class _Runner:
    """One compilation: ``config``'s program, vmapped over runs, ``shard_map``-ped over a mesh.

    ``__call__(key_data [R, *key_shape] uint32, hparams {name: [R] float32})`` ->
    ``(TrainState with leading [R_pad], metrics {name: [R_pad, I_kept]}, R)``.
    """

    def __init__(self, config, log_every, mesh, key_impl, compiler_options, vmap_size=None):
        self.config = config
        self.mesh = mesh
        init, run, self.kept = _single_run(config, log_every)

        def local(key_data, hp):   # the runs of one device: [R_pad / n_dev, ...]
            keys = jax.random.wrap_key_data(key_data, impl=key_impl)
            # Initialize one run at a time (lax.map), train all of them at once (vmap). A
            # vmapped init would batch the orthogonal initializer's QR into one LAPACK call that
            # fans out over XLA:CPU's intra-op thread pool from inside that pool; with several
            # CPU devices executing at once (--xla_force_host_platform_device_count) every pool
            # thread then waits on work queued behind it: a deadlock (jaxlib 0.10.2).
            state = jax.lax.map(lambda a: init(*a), (keys, hp))
            if vmap_size is None or vmap_size >= keys.shape[0]:
                return jax.vmap(run)(state, hp)
            # groups of vmap_size runs vmapped, the groups one after the other (one program)
            return jax.lax.map(lambda a: run(*a), (state, hp), batch_size=vmap_size)

        spec = P(RUN_AXIS)
        # check_vma=False: the training code is written for plain vmap, not for shard_map's
        # varying-manual-axes types (a while_loop carry starting from constants would fail it).
        sharded = jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                                check_vma=False)
        out = NamedSharding(mesh, spec)
        self.fn = jax.jit(lambda args: sharded(*args), in_shardings=(out,), out_shardings=out,
                          compiler_options=compiler_options)

    def __call__(self, key_data, hparams):
        (state, metrics), R = shard_runs(self.fn, (key_data, hparams), self.mesh)
        return state, metrics, R


_RUNNERS: collections.OrderedDict = collections.OrderedDict()
_MAX_RUNNERS = 16


def _runner(config, log_every, mesh, key_impl, compiler_options, vmap_size=None) -> _Runner:
    """Cached by the static fields, so sweeps that differ only in dynamic values (or repeat)
    reuse the compiled program (jit's own cache then keys on the run count)."""
    key = (_static_key(config), log_every, tuple(d.id for d in mesh.devices.flat),
           str(key_impl), repr(sorted((compiler_options or {}).items())), vmap_size)
    if key in _RUNNERS:
        _RUNNERS.move_to_end(key)
        return _RUNNERS[key]
    r = _Runner(config, log_every, mesh, key_impl, compiler_options, vmap_size)
    _RUNNERS[key] = r
    while len(_RUNNERS) > _MAX_RUNNERS:
        _RUNNERS.popitem(last=False)
    return r


# ----------------------------------------------------------------------------- result

@dataclasses.dataclass
class SweepResult:
    """Results of ``sweep``. C combinations, S seeds, I kept iterations.

    grid: ``[C]`` dicts, the grid values of each combination.
    configs: ``[C]`` configs, ``config.replace(**grid[c])``.
    metrics: ``{name: float32 [C, S, I]}``; NaN where a metric does not apply (a GRPO metric
      in a PPO combination), where GRPO skipped an iteration after its env-step budget, and in
      padding rows past a combination's own length.
    iteration: ``int [C, I]``, the (0-based) training iteration of each kept row; -1 for
      padding rows (combinations with fewer iterations than the longest one).
    states: ``[C]`` final ``TrainState``s with a leading ``[S]`` axis (None on multi-host runs,
      where they are not addressable from one process).
    placement: one dict per compilation: ``combinations`` (indices), ``runs`` (R),
      ``padded_runs`` (R rounded up to the device count) and ``rows_per_device``
      (``{device id: rows of the run axis it computed}``).
    seeds, base_seed: seed ``s`` used ``jax.random.split(jax.random.key(base_seed), seeds)[s]``.
    log_every: one row per ``log_every`` iterations (and the last) was kept, holding each
      metric's last non-NaN value over those iterations.
    """

    grid: list
    configs: list
    metrics: dict
    iteration: np.ndarray
    seeds: int
    base_seed: int = 0
    log_every: int = 1
    states: list | None = None
    placement: list = dataclasses.field(default_factory=list)

    @property
    def num_combinations(self) -> int:
        return len(self.grid)

    def keys(self) -> jax.Array:
        """The ``[S]`` seed keys."""
        return jax.random.split(jax.random.key(self.base_seed), self.seeds)

    def _grid_fields(self) -> list:
        names = []
        for g in self.grid:
            names += [k for k in g if k not in names]
        return names

    def to_dataframe(self):
        """Tidy ``pandas.DataFrame``: one row per combination x seed x kept iteration, with
        columns ``combination``, the grid fields, ``seed``, ``iteration`` and one column per
        metric. Padding rows are dropped; GRPO's skipped iterations stay (NaN metrics)."""
        import pandas as pd

        C, S, I = self.num_combinations, self.seeds, self.iteration.shape[1]
        c_idx, s_idx, i_idx = np.meshgrid(np.arange(C), np.arange(S), np.arange(I), indexing="ij")
        keep = (self.iteration[c_idx, i_idx] >= 0).ravel()
        cols = {"combination": c_idx.ravel()[keep]}
        for name in self._grid_fields():
            vals = [g.get(name) for g in self.grid]
            vals = [str(tuple(v)) if isinstance(v, (list, tuple)) else v for v in vals]
            col = np.empty(C, dtype=object)
            col[:] = vals
            cols[name] = col[c_idx.ravel()[keep]]
        cols["seed"] = s_idx.ravel()[keep]
        cols["iteration"] = self.iteration[c_idx, i_idx].ravel()[keep]
        for name, v in self.metrics.items():
            cols[name] = v.ravel()[keep]
        df = pd.DataFrame(cols)
        for name in self._grid_fields():   # object columns of numbers -> numeric dtype
            try:
                df[name] = pd.to_numeric(df[name])
            except (TypeError, ValueError):
                pass
        return df

    def to_csv(self, path) -> None:
        """Write ``to_dataframe()`` to ``path`` (parent folders are created)."""
        path = os.fspath(path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self.to_dataframe().to_csv(path, index=False)

    def final_return(self, metric: str = "episode_return") -> np.ndarray:
        """``[C, S]``: each seed's last non-NaN value of ``metric`` (NaN if it has none)."""
        return last_valid(self.metrics[metric])

    def summary(self, metric: str = "episode_return", n_boot: int = 10_000, ci: float = 0.95,
                seed: int = 0):
        """``pandas.DataFrame``, one row per combination (the index, ``combination``): the
        grid fields, ``seeds`` (how many have a final value), ``mean`` of each seed's final
        ``metric`` (``final_return``) over the seeds, and its percentile-bootstrap
        ``ci_low``/``ci_high`` (``n_boot`` resamples of the seeds, level ``ci``). Short
        column names, so that ``print(res.summary())`` fits 80 columns for a few grid fields.
        """
        import pandas as pd

        final = self.final_return(metric)
        rows = []
        for c, g in enumerate(self.grid):
            x = final[c][~np.isnan(final[c])]
            mean, lo, hi = bootstrap_ci(x, num=n_boot, seed=seed + c, level=ci)
            rows.append({**{k: (str(tuple(v)) if isinstance(v, (list, tuple)) else v)
                            for k, v in g.items()},
                         "seeds": len(x), "mean": mean, "ci_low": lo, "ci_high": hi})
        df = pd.DataFrame(rows)
        df.index.name = "combination"
        df.attrs["metric"] = f"final {metric}"
        return df

    def label(self, c: int) -> str:
        """``"lr=0.001, beta=0"``: combination ``c``'s grid values."""
        from .plots import grid_label
        return grid_label(self.grid[c])

    def plot(self, path, metric: str = "episode_return", x: str = "env_steps",
             title: str | None = None):
        """Learning curves, one per combination, exactly as ``jaxgrpo plot`` draws a sweep
        folder (``plots.sweep_curves``): the mean over seeds of ``metric`` against ``x`` with a
        95% bootstrap CI band. Saved to ``path``; parent folders are created."""
        from .plots import plot_curves, sweep_curves
        path = os.fspath(path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        plot_curves(sweep_curves(self.to_dataframe()), path, metric, x=x,
                    title=title or self.configs[0].env)


# ----------------------------------------------------------------------------- sweep

def sweep(config, grid: Mapping[str, Sequence] | None = None, seeds: int = 1, *,
          base_seed: int = 0, log_every: int = 1, devices=None,
          compiler_options: Mapping[str, Any] | None = None,
          vmap_size: int | None = None) -> SweepResult:
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
    devices: devices to shard the runs over (default ``jax.devices()``, all of them).
    compiler_options: passed to ``jax.jit`` (e.g. ``{"xla_backend_optimization_level": 0}``
      to trade run speed for compile speed on CPU).
    vmap_size: how many runs each device vmaps at once (default None: all of its runs). A
      smaller value runs groups of ``vmap_size`` one after the other (``lax.map``) in the same
      compiled program. Vmapped runs move in lockstep: every GRPO rollout lasts as long as
      the longest episode of the batch, so on CPU ``vmap_size=1`` is usually fastest (see
      benchmarks/sweep_scaling.md); on accelerators vmap wide.

    Returns a ``SweepResult`` with ``metrics[name]: [C, S, I]``. Raises ``ValueError`` naming
    the field for a bad grid, before compiling anything. Each distinct value of the static
    fields is one compilation (warned about with ``StaticSweepWarning``); the dynamic fields
    and the seeds of one compilation are one vmapped batch sharded over ``devices``.
    """
    seeds = check_count("seeds", seeds, 1)
    log_every = check_count("log_every", log_every, 1)
    base_seed = check_count("base_seed", base_seed, 0)
    if vmap_size is not None:
        vmap_size = check_count("vmap_size", vmap_size, 1)
    if not hasattr(config, "hparams"):
        raise ValueError(f"config: must be a GRPOConfig or PPOConfig, got {type(config).__name__}")
    combos, configs = grid_configs(config, grid)
    mesh = run_mesh(devices)

    groups: dict = {}
    for c, cfg in enumerate(configs):
        groups.setdefault(_static_key(cfg), []).append(c)
    dynamic_names = set(configs[0].hparams())
    for cfg in configs:
        dynamic_names &= set(cfg.hparams())
    grid_keys = list(combos[0])
    static_in_grid = [k for k in grid_keys if k not in dynamic_names]
    if len(groups) > 1:
        msg = (f"sweep: grid fields {static_in_grid} are static (they change the compiled "
               f"program): {len(groups)} compilations, one per combination of their values; "
               f"{[k for k in grid_keys if k in dynamic_names]} and the {seeds} seeds are "
               f"vmapped within each")
        logger.warning(msg)
        warnings.warn(msg, StaticSweepWarning, stacklevel=2)

    keys = jax.random.split(jax.random.key(base_seed), seeds)
    key_impl = jax.random.key_impl(keys)
    key_data = np.asarray(jax.random.key_data(keys))          # [S, *key_shape]

    per_combo_metrics: list = [None] * len(configs)
    per_combo_kept: list = [None] * len(configs)
    states: list | None = [None] * len(configs)
    placement: list = []
    for gi, idx in enumerate(groups.values()):
        cfg0 = configs[idx[0]]
        runner = _runner(cfg0, log_every, mesh, key_impl, compiler_options, vmap_size)
        hp = [configs[c].hparams() for c in idx]
        hp = {k: np.repeat(np.asarray([float(h[k]) for h in hp], np.float32), seeds)
              for k in hp[0]}                                   # [C_g * S]
        kd = np.tile(key_data, (len(idx),) + (1,) * (key_data.ndim - 1))   # [C_g * S, ...]
        static_desc = {k: combos[idx[0]][k] for k in static_in_grid}
        logger.info("sweep: compilation %d/%d %s: %d combinations x %d seeds = %d runs on %d "
                    "devices", gi + 1, len(groups), static_desc or "", len(idx), seeds,
                    len(idx) * seeds, mesh.devices.size)
        state, metrics, R = runner(kd, hp)
        probe = next(iter(metrics.values()))
        placement.append({"combinations": list(idx), "runs": R, "padded_runs": probe.shape[0],
                          "rows_per_device": {sh.device.id: sh.data.shape[0]
                                              for sh in probe.addressable_shards}})
        host = {k: _to_host(v)[:R].reshape(len(idx), seeds, -1) for k, v in metrics.items()}
        for j, c in enumerate(idx):
            per_combo_metrics[c] = {k: v[j] for k, v in host.items()}
            per_combo_kept[c] = runner.kept
        if states is not None and all(x.is_fully_addressable for x in jax.tree.leaves(state)):
            st = jax.tree.map(lambda x: x[:R].reshape((len(idx), seeds) + x.shape[1:]), state)
            for j, c in enumerate(idx):
                states[c] = jax.tree.map(lambda x: x[j], st)
        else:
            states = None

    n_rows = max(len(k) for k in per_combo_kept)
    names = []
    for m in per_combo_metrics:
        names += [k for k in m if k not in names]
    metrics = {k: np.full((len(configs), seeds, n_rows), np.nan, np.float32) for k in names}
    iteration = np.full((len(configs), n_rows), -1, np.int64)
    for c, (m, kept) in enumerate(zip(per_combo_metrics, per_combo_kept)):
        iteration[c, :len(kept)] = kept
        for k, v in m.items():
            metrics[k][c, :, :v.shape[-1]] = v
    return SweepResult(grid=combos, configs=configs, metrics=metrics, iteration=iteration,
                       seeds=seeds, base_seed=base_seed, log_every=log_every, states=states,
                       placement=placement)
