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
import json
import logging
import os
import warnings
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .configio import check_count, check_vmap_size, expand_grid, grid_configs
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
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx], dtype=x.dtype)


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
    """``(init, run, kept, n)`` for one seed: ``init(key, hp) -> TrainState``; ``run(state, hp,
    m) -> (TrainState, metrics)`` runs ``m`` (static) iterations and keeps one metrics row per
    ``log_every`` of them and the last; ``kept(start, m)`` the (0-based) iterations of those rows
    for a call starting at iteration ``start``; ``n`` the run's iterations. A chunk keeps each
    metric's last non-NaN value over its iterations (``last_valid_row``), so only the kept rows
    are ever stored. With ``log_every=1``, ``run(init(key, hp), hp, n)`` is
    ``make_train(config)(key, hp)``; runs split at multiples of ``log_every`` keep the same
    rows as one call."""
    train = make_train(config)
    n = train.num_iterations
    k = min(log_every, n)

    def run(state, hp, m):
        if k == 1:
            return train.run(state, hp, m)
        outer, rem = divmod(m, k)

        def chunk(s, _):
            s, met = train.run(s, hp, k)
            return s, jax.tree.map(last_valid_row, met)

        state, ms = jax.lax.scan(chunk, state, None, length=outer)
        if rem:
            state, met = train.run(state, hp, rem)
            ms = jax.tree.map(lambda a, b: jnp.concatenate([a, last_valid_row(b)[None]]),
                              ms, met)
        return state, ms

    def kept(start, m):
        outer, rem = divmod(m, k)
        rows = start + np.arange(1, outer + 1) * k - 1
        return np.append(rows, start + m - 1) if rem else rows

    return train.init, run, kept, n


def _is_key_type(x) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _raw(tree):
    """Typed PRNG keys -> their key data (what crosses jit boundaries and checkpoints)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key_type(x) else x, tree)


def _typed(tree, template, impl):
    """Inverse of ``_raw``: leaves that are keys in ``template`` wrapped again."""
    return jax.tree.map(lambda x, t: jax.random.wrap_key_data(x, impl=impl) if _is_key_type(t)
                        else x, tree, template)


class _Runner:
    """One configuration's program, vmapped over runs, ``shard_map``-ped over a mesh.

    ``__call__(key_data [R, *key_shape] uint32, hparams {name: [R] float32})`` ->
    ``(state, metrics {name: [R_pad, I_kept]}, R)``: the whole run in one compiled call.
    For checkpointed sweeps, ``init(key_data, hparams) -> (state, R)`` and ``segment(state,
    hparams, m) -> (state, metrics)`` run it ``m`` iterations at a time (one compilation per
    distinct ``m``). ``state`` is a ``TrainState`` with a leading ``[R_pad]`` axis sharded over
    the mesh, its PRNG keys as raw key data (``_raw``); ``template`` is its abstract form for
    one run, typed keys included.
    """

    def __init__(self, config, log_every, mesh, key_impl, compiler_options, vmap_size=None):
        self.config = config
        self.mesh = mesh
        self.key_impl = key_impl
        self.compiler_options = compiler_options
        init, run, self.kept_rows, self.num_iterations = _single_run(config, log_every)
        self.kept = self.kept_rows(0, self.num_iterations)
        self._run = run
        self.vmap_size = vmap_size
        self.template = jax.eval_shape(init, jax.random.key(0, impl=key_impl),
                                       config.hparams())

        def local_init(key_data, hp):
            keys = jax.random.wrap_key_data(key_data, impl=key_impl)
            # Initialize one run at a time (lax.map), train all of them at once (vmap). A
            # vmapped init would batch the orthogonal initializer's QR into one LAPACK call that
            # fans out over XLA:CPU's intra-op thread pool from inside that pool; with several
            # CPU devices executing at once (--xla_force_host_platform_device_count) every pool
            # thread then waits on work queued behind it: a deadlock (jaxlib 0.10.2).
            return jax.lax.map(lambda a: init(*a), (keys, hp))

        def local(key_data, hp):   # the runs of one device: [R_pad / n_dev, ...]
            return self._local_run(local_init(key_data, hp), hp, self.num_iterations)

        self.fn = self._compile(local)
        self._init = self._compile(lambda kd, hp: _raw(local_init(kd, hp)))
        self._segments = {}

    def _local_run(self, state, hp, m):
        R_local = jax.tree.leaves(hp)[0].shape[0]
        if self.vmap_size is None or self.vmap_size >= R_local:
            return jax.vmap(lambda s, h: self._run(s, h, m))(state, hp)
        # groups of vmap_size runs vmapped, the groups one after the other (one program)
        return jax.lax.map(lambda a: self._run(*a, m), (state, hp), batch_size=self.vmap_size)

    def _compile(self, local):
        spec = P(RUN_AXIS)
        # check_vma=False: the training code is written for plain vmap, not for shard_map's
        # varying-manual-axes types (a while_loop carry starting from constants would fail it).
        sharded = jax.shard_map(local, mesh=self.mesh, in_specs=spec, out_specs=spec,
                                check_vma=False)
        out = NamedSharding(self.mesh, spec)
        return jax.jit(lambda args: sharded(*args), in_shardings=(out,), out_shardings=out,
                       compiler_options=self.compiler_options)

    def __call__(self, key_data, hparams):
        (state, metrics), R = shard_runs(self.fn, (key_data, hparams), self.mesh)
        return state, metrics, R

    def init(self, key_data, hparams):
        return shard_runs(self._init, (key_data, hparams), self.mesh)

    def place(self, tree):
        """Host arrays ``[R, ...]`` -> global arrays ``[R_pad, ...]`` on the mesh (padded as
        ``shard_runs`` pads), for a state restored from a checkpoint."""
        return shard_runs(lambda x: x, tree, self.mesh)[0]

    def segment(self, state, hparams, m):
        if m not in self._segments:
            def local(raw, hp):
                typed = _typed(raw, self.template, self.key_impl)
                state, metrics = self._local_run(typed, hp, m)
                return _raw(state), metrics
            self._segments[m] = self._compile(local)
        return self._segments[m]((state, self.place(hparams)))


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
      ``padded_runs`` (R rounded up to the device count), ``rows_per_device``
      (``{device id: rows of the run axis it computed}``, every device of every process) and
      ``vmap_size`` (runs vmapped at once per device; None: all).
    vmap_size: the ``vmap_size`` argument (``"auto"`` by default; the value it resolved to is
      in ``placement``).
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
    vmap_size: int | str | None = "auto"

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


# ----------------------------------------------------------------------------- checks

def resolve_vmap_size(vmap_size, platform: str, algo: str = "grpo") -> int | None:
    """The ``vmap_size`` a sweep uses for ``algo`` on ``platform`` (``jax.Device.platform``).

    ``"auto"``: on ``"cpu"``, 1 for GRPO (its vmapped runs move in lockstep: every rollout lasts
    as long as the longest episode of the batch, which a CPU pays for in full) and None (all
    of a device's runs vmapped) for PPO (fixed-length rollouts: vmapped was a little faster);
    None on accelerators. benchmarks/sweep_scaling.md has the measurements. An int or None is
    returned as given."""
    if vmap_size == "auto":
        return 1 if platform == "cpu" and algo == "grpo" else None
    return vmap_size


def _describe(config, grid, seeds, base_seed, log_every, devices, compiler_options, vmap_size,
              checkpoint_every) -> dict:
    """A sweep call as flat JSON values (``config.<field>``, ``grid``, ``seeds``, ...): what every
    process of a multi-process sweep must agree on. Never raises (unplain values -> repr)."""
    from .configio import config_to_dict, plain
    desc = {}
    try:
        desc.update({f"config.{k}": v for k, v in config_to_dict(config).items()})
    except Exception:   # noqa: BLE001 - not a config: validation names it afterwards
        desc["config"] = repr(config)
    try:
        dev = None if devices is None else [int(d.id) for d in devices]
    except Exception:   # noqa: BLE001
        dev = repr(devices)
    for k, v in (("grid", grid), ("seeds", seeds), ("base_seed", base_seed),
                 ("log_every", log_every), ("devices", dev),
                 ("compiler_options", compiler_options), ("vmap_size", vmap_size),
                 ("checkpoint_every", checkpoint_every)):
        try:
            desc[k] = plain(v)
        except Exception:   # noqa: BLE001
            desc[k] = repr(v)
    return json.loads(json.dumps(desc, sort_keys=True, default=repr))


def _short(v, n: int = 60) -> str:
    s = json.dumps(v, sort_keys=True) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n - 3] + "..."


def agree(desc: dict, error: Exception | None = None) -> None:
    """Check that every process made the same call before any of them compiles.

    desc: this process's call (JSON values); error: the ``ValueError`` its own validation
    raised, if any. With one process, ``error`` is raised. With several, the descriptions
    and errors are exchanged (``process_allgather`` of their JSON bytes), and every process
    raises the same kind of one-line ``ValueError``: a process's own error, the first
    process's error, or the fields whose values differ with each process's value. Without
    this, different calls would meet in mismatched collectives and fail (gloo: after ~30 s)
    or hang."""
    if jax.process_count() == 1:
        if error is not None:
            raise error
        return
    from jax.experimental import multihost_utils as mh
    blob = json.dumps({"call": desc, "error": None if error is None else str(error)},
                      sort_keys=True).encode()
    lens = np.asarray(mh.process_allgather(np.asarray([len(blob)], np.int32))).reshape(-1)
    buf = np.zeros(int(lens.max()), np.uint8)
    buf[:len(blob)] = np.frombuffer(blob, np.uint8)
    every = np.asarray(mh.process_allgather(buf)).reshape(len(lens), -1)
    docs = [json.loads(every[p, :lens[p]].tobytes()) for p in range(len(lens))]
    if error is not None:
        raise error
    failed = [(p, d["error"]) for p, d in enumerate(docs) if d["error"]]
    if failed:
        raise ValueError(f"process {failed[0][0]}: {failed[0][1]}")
    calls = [d["call"] for d in docs]
    names = sorted(set().union(*calls))
    diff = [k for k in names if any(c.get(k, "<unset>") != calls[0].get(k, "<unset>")
                                    for c in calls)]
    if diff:
        parts = [f"{k} (" + ", ".join(f"process {p}: {_short(c.get(k, '<unset>'))}"
                                      for p, c in enumerate(calls)) + ")" for k in diff[:4]]
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise ValueError("sweep: the processes made different sweep calls: "
                         + "; ".join(parts) + more
                         + "; every process must call sweep with the same arguments")


def _check_devices(mesh: Mesh) -> None:
    """Multi-process: every process must own one of the mesh's devices (a process without
    one could neither compute nor gather the results)."""
    n = jax.process_count()
    have = {d.process_index for d in mesh.devices.flat}
    missing = [p for p in range(n) if p not in have]
    if missing:
        own = {p: [d.id for d in jax.devices() if d.process_index == p] for p in missing}
        raise ValueError(f"devices: {[d.id for d in mesh.devices.flat]} leave out every device "
                         f"of process {', '.join(map(str, missing))} (its devices: "
                         f"{', '.join(f'{p}: {v}' for p, v in own.items())}); in a "
                         f"{n}-process sweep each process needs at least one device")


def _placement(idx, R, x: jax.Array, vmap_size) -> dict:
    """The global view (the same on every process) of how ``x [R_pad, ...]`` is sharded."""
    rows = {d.id: len(range(*ix[0].indices(x.shape[0])))
            for d, ix in x.sharding.devices_indices_map(x.shape).items()}
    return {"combinations": list(idx), "runs": R, "padded_runs": x.shape[0],
            "rows_per_device": dict(sorted(rows.items())), "vmap_size": vmap_size}


# ----------------------------------------------------------------------------- checkpoints

class _SweepCheckpoints:
    """A sweep's orbax checkpoints in ``directory``, one step per save (the step is the number
    of iterations done, summed over the compilations so far).

    A step holds, for every compilation ``g`` started so far, its runs' ``TrainState``
    (``state["g<g>"]``, ``[R_g, ...]`` host arrays, keys as key data) and kept metric rows
    (``history["g<g>/<name>"]: [R_g, rows]``), and in its meta ``done`` (iterations done per
    compilation) and ``config``: the sweep's identity (the call's description, minus the
    devices and batching, which may change on resume, plus ``jaxgrpo_code``, the package's
    code digest), which a resume must match. Multi-process: process 0 reads and writes (the
    others receive what it read); everyone waits for each save to finish."""

    def __init__(self, directory, identity: dict):
        from .checkpoint import Checkpointer
        self.directory = os.path.abspath(os.fspath(directory))
        self.identity = identity
        self.primary = jax.process_index() == 0
        self.ck = Checkpointer(self.directory, max_to_keep=2, this_process_only=True) \
            if self.primary else None

    def close(self):
        if self.ck is not None:
            self.ck.close()

    def save(self, states: dict, metrics: dict, done: list) -> None:
        step = int(sum(done))
        if self.primary:
            self.ck.save(step, states, metrics, {"config": self.identity, "done": list(done)})
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils as mh
            mh.sync_global_devices(f"jaxgrpo-sweep-save-{step}")

    def restore(self, template_for, n_groups: int):
        """``(states, metrics, done)`` of the newest step, or None when there is none.
        ``template_for(g)``: the abstract ``[R_g, ...]`` raw state of compilation ``g``.
        A foreign (other sweep or code) or corrupt checkpoint raises ``CheckpointError``
        naming it, on every process; nothing is written."""
        from .checkpoint import CheckpointError, config_diff
        info, got = {"error": None, "done": None}, None
        if self.primary:
            try:
                step = self.ck.latest_step()
                if step is not None:
                    where = f"checkpoint {self.directory}/{step}"
                    meta = self.ck.read_meta(step)
                    diff = config_diff(meta.get("config", {}), self.identity)
                    if diff:
                        raise CheckpointError(f"{where} was written by a different sweep: {diff}")
                    done = meta.get("done")
                    if not (isinstance(done, list) and 0 < len(done) <= n_groups
                            and all(isinstance(d, int) for d in done)):
                        raise CheckpointError(f"{where}: its metadata has no valid iteration "
                                              "counts; the checkpoint is corrupt")
                    tmpl = {f"g{g}": template_for(g) for g in range(len(done))}
                    states, metrics, meta = self.ck.restore(step, tmpl, self.identity)
                    got = (states, metrics)
                    info["done"] = done
                    info["metrics"] = {k: list(v.shape) for k, v in metrics.items()}
            except CheckpointError as e:
                info["error"] = str(e)
        if jax.process_count() > 1:
            info = _from_process_0(info)
        if info["error"]:
            raise CheckpointError(info["error"])
        if info["done"] is None:
            return None
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils as mh
            if got is None:   # shapes to receive into
                tmpl = {f"g{g}": template_for(g) for g in range(len(info["done"]))}
                got = (jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), tmpl),
                       {k: np.zeros(v, np.float32) for k, v in info["metrics"].items()})
            got = jax.tree.map(np.asarray, mh.broadcast_one_to_all(got))
        return got[0], got[1], info["done"]


def _from_process_0(obj: dict) -> dict:
    """Process 0's ``obj`` (JSON values) on every process."""
    from jax.experimental import multihost_utils as mh
    blob = json.dumps(obj, sort_keys=True, default=repr).encode()
    n = int(np.asarray(mh.broadcast_one_to_all(np.asarray([len(blob)], np.int32)))[0])
    buf = np.zeros(n, np.uint8)
    if jax.process_index() == 0:
        buf[:] = np.frombuffer(blob, np.uint8)
    return json.loads(np.asarray(mh.broadcast_one_to_all(buf)).tobytes())


def _batched(template, R: int):
    """A run's abstract state -> the abstract raw ``[R, ...]`` state of a checkpoint."""
    raw = jax.eval_shape(_raw, template)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct((R,) + tuple(s.shape), s.dtype), raw)


# ----------------------------------------------------------------------------- sweep

def sweep(config, grid: Mapping[str, Sequence] | None = None, seeds: int = 1, *,
          base_seed: int = 0, log_every: int = 1, devices=None,
          compiler_options: Mapping[str, Any] | None = None,
          vmap_size: int | str | None = "auto", checkpoint_dir=None,
          checkpoint_every: int | None = None) -> SweepResult:
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
    devices: devices to shard the runs over (default ``jax.devices()``, all of them; in a
      multi-process job every process must own at least one).
    compiler_options: passed to ``jax.jit`` (e.g. ``{"xla_backend_optimization_level": 0}``
      to trade run speed for compile speed on CPU).
    vmap_size: how many runs each device vmaps at once. ``"auto"`` (default): on CPU 1 for
      GRPO and all for PPO, all of them on GPU/TPU (``resolve_vmap_size``). None: all. A
      smaller value runs groups of ``vmap_size`` one after the other (``lax.map``) in the same
      compiled program. Vmapped
      runs move in lockstep (a GRPO rollout lasts as long as the longest episode of the
      batch), which costs a CPU its full price and an accelerator nothing until it is full
      (benchmarks/sweep_scaling.md). The value used is in ``placement`` and the log line.
    checkpoint_dir: save the sweep's state (every run's ``TrainState`` and the metrics so far)
      with orbax there every ``checkpoint_every`` iterations (a multiple of ``log_every``;
      default: a tenth of the longest run, rounded up to one), and continue from its newest
      checkpoint if it has one: a sweep killed at any point and called again with the same
      arguments ends with the same metrics as one that ran in one go. A checkpoint of another
      sweep (config, grid, seeds, base_seed, log_every, checkpoint_every) or of other jaxgrpo
      code is refused with a ``CheckpointError`` and left as it is.

    Returns a ``SweepResult`` with ``metrics[name]: [C, S, I]``. Raises ``ValueError`` naming
    the field for a bad grid, before compiling anything. Each distinct value of the static
    fields is one compilation (warned about with ``StaticSweepWarning``); the dynamic fields
    and the seeds of one compilation are one vmapped batch sharded over ``devices``.

    Multi-process (after ``jax.distributed.initialize`` on each): every process makes the same
    call and receives the whole result; the calls are compared first, and any difference is
    one ``ValueError`` on every process naming it.
    """
    desc = _describe(config, grid, seeds, base_seed, log_every, devices, compiler_options,
                     vmap_size, checkpoint_every)
    error = None
    try:
        seeds = check_count("seeds", seeds, 1)
        log_every = check_count("log_every", log_every, 1)
        base_seed = check_count("base_seed", base_seed, 0)
        vmap_size = check_vmap_size(vmap_size)
        if checkpoint_every is not None:
            checkpoint_every = check_count("checkpoint_every", checkpoint_every, 1)
            if checkpoint_every % log_every:
                raise ValueError(f"checkpoint_every: must be a multiple of log_every "
                                 f"({log_every}), got {checkpoint_every}")
        if not hasattr(config, "hparams"):
            raise ValueError("config: must be a GRPOConfig or PPOConfig, got "
                             f"{type(config).__name__}")
        combos, configs = grid_configs(config, grid)
        mesh = run_mesh(devices)
        _check_devices(mesh)
    except ValueError as e:
        error = e
    agree(desc, error)

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
    platform = mesh.devices.flat[0].platform
    runners = [_runner(configs[idx[0]], log_every, mesh, key_impl, compiler_options,
                       resolve_vmap_size(vmap_size, platform, configs[idx[0]].algo))
               for idx in groups.values()]

    ckpt = None
    if checkpoint_dir is not None:
        if checkpoint_every is None:
            longest = max(r.num_iterations for r in runners)
            checkpoint_every = -(-max(1, longest // 10) // log_every) * log_every
        from .provenance import code_digest
        identity = {k: v for k, v in desc.items()
                    if k not in ("devices", "vmap_size", "compiler_options")}
        identity.update(checkpoint_every=checkpoint_every, jaxgrpo_code=code_digest())
        ckpt = _SweepCheckpoints(checkpoint_dir, identity)
    try:
        return _sweep(configs, combos, groups, runners, static_in_grid, seeds, key_data,
                      base_seed, log_every, mesh, vmap_size, ckpt, checkpoint_every)
    finally:
        if ckpt is not None:
            ckpt.close()


def _sweep(configs, combos, groups, runners, static_in_grid, seeds, key_data, base_seed,
           log_every, mesh, vmap_size, ckpt, checkpoint_every) -> SweepResult:
    sizes = [len(idx) * seeds for idx in groups.values()]
    restored = None
    if ckpt is not None:
        restored = ckpt.restore(lambda g: _batched(runners[g].template, sizes[g]), len(runners))
        if restored is not None:
            logger.info("sweep: continuing from %s (iterations done per compilation: %s)",
                        ckpt.directory, restored[2])
    saved_states, saved_rows, done = restored or ({}, {}, [])

    per_combo_metrics: list = [None] * len(configs)
    per_combo_kept: list = [None] * len(configs)
    states: list | None = [None] * len(configs)
    placement: list = []
    for gi, (idx, runner) in enumerate(zip(groups.values(), runners)):
        used_vmap = runner.vmap_size
        hp = [configs[c].hparams() for c in idx]
        hp = {k: np.repeat(np.asarray([float(h[k]) for h in hp], np.float32), seeds)
              for k in hp[0]}                                   # [C_g * S]
        kd = np.tile(key_data, (len(idx),) + (1,) * (key_data.ndim - 1))   # [C_g * S, ...]
        static_desc = {k: combos[idx[0]][k] for k in static_in_grid}
        logger.info("sweep: compilation %d/%d %s: %d combinations x %d seeds = %d runs on %d "
                    "devices, vmap_size %s%s", gi + 1, len(groups), static_desc or "", len(idx),
                    seeds, len(idx) * seeds, mesh.devices.size,
                    "all" if used_vmap is None else used_vmap,
                    f" ({vmap_size})" if vmap_size == "auto" else "")
        if ckpt is None:
            state, metrics, R = runner(kd, hp)
            host = {k: _to_host(v)[:R] for k, v in metrics.items()}
            place_of = next(iter(metrics.values()))
        else:
            state, host, R, place_of = _run_checkpointed(
                runner, gi, kd, hp, ckpt, checkpoint_every, saved_states, saved_rows, done)
        placement.append(_placement(idx, R, place_of, used_vmap))
        for j, c in enumerate(idx):
            per_combo_metrics[c] = {k: v.reshape(len(idx), seeds, -1)[j] for k, v in host.items()}
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
                       placement=placement, vmap_size=vmap_size)


def _run_checkpointed(runner, gi, kd, hp, ckpt, every, saved_states, saved_rows, done):
    """Compilation ``gi`` of a checkpointed sweep, ``every`` iterations at a time, from where
    the restored checkpoint left it. ``saved_states``/``saved_rows``/``done`` (the sweep's
    checkpoint content, host arrays) are updated in place and saved after every segment.
    Returns ``(state, metrics {name: [R, rows]}, R, a [R_pad] array for placement)``."""
    n = runner.num_iterations
    key = f"g{gi}"
    R = kd.shape[0]
    if gi < len(done) and done[gi] > 0:
        at = done[gi]
        state = runner.place(saved_states[key])
        rows = {k.split("/", 1)[1]: v for k, v in saved_rows.items() if k.startswith(key + "/")}
    else:
        at, rows = 0, {}
        state, R = runner.init(kd, hp)
        if gi >= len(done):
            done.append(0)
    while at < n:
        m = min(every, n - at)
        state, met = runner.segment(state, hp, m)
        met = {k: _to_host(v)[:R] for k, v in met.items()}
        rows = {k: np.concatenate([rows[k], v], axis=1) if k in rows else v
                for k, v in met.items()}
        at += m
        done[gi] = at
        saved_states[key] = jax.tree.map(lambda x: _to_host(x)[:R], state)
        saved_rows.update({f"{key}/{k}": v for k, v in rows.items()})
        ckpt.save(saved_states, saved_rows, done)
    typed = _typed(state, runner.template, runner.key_impl)
    return typed, rows, R, jax.tree.leaves(state)[0]
