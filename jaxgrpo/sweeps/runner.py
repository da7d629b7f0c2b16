"""The compiled program of one sweep compilation: a config's training vmapped over runs and
``shard_map``-ped over the mesh, cached by its static fields (``jaxgrpo.compiled``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import compiled
from ..keys import key_data, wrap_keys
from ..loggers import SINK
from ..runs import build_train, shard_jit
from .mesh import RUN_AXIS, shard_runs


def last_valid_row(x: jax.Array) -> jax.Array:
    """``x: [k, ...]`` -> ``[...]``: the last non-NaN entry along axis 0 (NaN if there is none).

    How a ``log_every``-iteration chunk is reduced to its kept row: a GRPO run whose env-step
    budget ran out mid-chunk still reports its last real return (later rows are NaN)."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return x[-1]
    ok = ~jnp.isnan(x)
    last = x.shape[0] - 1 - jnp.argmax(ok[::-1], axis=0)
    return jnp.take_along_axis(x, last[None], axis=0)[0]


def single_run(config, log_every: int):
    """``(init, run, kept, n)`` for one seed: ``init(key, hp) -> TrainState``; ``run(state, hp,
    m, position=None) -> (TrainState, metrics)`` runs ``m`` (static) iterations and keeps one
    metrics row per ``log_every`` of them and the last; ``kept(start, m)`` the (0-based)
    iterations of those rows for a call starting at iteration ``start``; ``n`` the run's
    iterations. A chunk keeps each metric's last non-NaN value over its iterations
    (``last_valid_row``), so only the kept rows are ever stored. Each kept row is also sent to
    the progress sink (``loggers.SINK(position, row)``, a host callback; ``position``: the run's
    place in its compilation's batch, None: no callback). With ``log_every=1``,
    ``run(init(key, hp), hp, n)`` is ``make_train(config)(key, hp)``; runs split at multiples of
    ``log_every`` keep the same rows as one call."""
    train = build_train(config)
    n = train.num_iterations
    k = min(log_every, n)

    def run(state, hp, m, position=None):
        def report(row):
            if position is not None:
                jax.debug.callback(SINK, position, row)
            return row

        if k == 1:
            def one(s, _):
                s, met = train.step(s, hp)
                return s, report(met)
            return jax.lax.scan(one, state, None, length=m)
        outer, rem = divmod(m, k)

        def chunk(s, _):
            s, met = train.run(s, hp, k)
            return s, report(jax.tree.map(last_valid_row, met))

        state, ms = jax.lax.scan(chunk, state, None, length=outer)
        if rem:
            state, met = train.run(state, hp, rem)
            last = report(jax.tree.map(last_valid_row, met))
            ms = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), ms, last)
        return state, ms

    def kept(start, m):
        outer, rem = divmod(m, k)
        rows = start + np.arange(1, outer + 1) * k - 1
        return np.append(rows, start + m - 1) if rem else rows

    return train.init, run, kept, n


class Runner:
    """One configuration's program, vmapped over runs, ``shard_map``-ped over a mesh.

    ``__call__(key_data [R, *key_shape] uint32, hparams {name: [R] float32})`` ->
    ``(state, metrics {name: [R_pad, I_kept]}, R)``: the whole run in one compiled call.
    For checkpointed sweeps, ``init(key_data, hparams) -> (state, R)`` and ``segment(state,
    hparams, m) -> (state, metrics)`` run it ``m`` iterations at a time (one compilation per
    distinct ``m``). ``state`` is a ``TrainState`` with a leading ``[R_pad]`` axis sharded over
    the mesh, its PRNG keys as raw key data (``keys.key_data``); ``template`` is its abstract
    form for one run, typed keys included.
    """

    def __init__(self, config, log_every, mesh, key_impl, compiler_options, vmap_size=None,
                 report=False, shared=frozenset()):
        self.config = config
        self.shared = shared
        self.report = report
        self.mesh = mesh
        self.key_impl = key_impl
        self.compiler_options = compiler_options
        init, run, self.kept_rows, self.num_iterations = single_run(config, log_every)
        self.kept = self.kept_rows(0, self.num_iterations)
        self._run = run
        self.vmap_size = vmap_size
        self.template = jax.eval_shape(init, jax.random.key(0, impl=key_impl),
                                       config.hparams())

        def local_init(keys_data, hp):
            keys = jax.random.wrap_key_data(keys_data, impl=key_impl)
            # Initialize one run at a time (lax.map), train all of them at once (vmap). A
            # vmapped init would batch the orthogonal initializer's QR into one LAPACK call that
            # fans out over XLA:CPU's intra-op thread pool from inside that pool; with several
            # CPU devices executing at once (--xla_force_host_platform_device_count) every pool
            # thread then waits on work queued behind it: a deadlock (jaxlib 0.10.2).
            return jax.lax.map(lambda a: init(*a), (keys, hp))

        def local(keys_data, hp):   # the runs of one device: [R_pad / n_dev, ...]
            return self._local_run(local_init(keys_data, hp), hp, self.num_iterations)

        self.fn = self._compile(local)
        self._init = self._compile(lambda kd, hp: key_data(local_init(kd, hp)))
        self._segments = {}

    def _local_run(self, state, hp, m):
        R_local = jax.tree.leaves(hp)[0].shape[0]
        # each run's place in the batch, for the progress callback (runs are laid out on the
        # devices in order, R_local each); without ``report``, no callback
        position = jax.lax.axis_index(RUN_AXIS) * R_local + jnp.arange(R_local)
        # hparams every run shares enter unbatched (row 0: padding rows copy a real run)
        common = {k: v[0] for k, v in hp.items() if k in self.shared}
        hp = {k: v for k, v in hp.items() if k not in self.shared}
        run = lambda s, h, p: self._run(s, {**h, **common}, m, p if self.report else None)
        if self.vmap_size is None or self.vmap_size >= R_local:
            return jax.vmap(run)(state, hp, position)
        # groups of vmap_size runs vmapped, the groups one after the other (one program)
        return jax.lax.map(lambda a: run(*a), (state, hp, position), batch_size=self.vmap_size)

    def _compile(self, local):
        fn = shard_jit(local, self.mesh, self.compiler_options)
        return lambda args: fn(*args)          # shard_runs passes the inputs as one tuple

    def __call__(self, keys_data, hparams):
        (state, metrics), R = shard_runs(self.fn, (keys_data, hparams), self.mesh)
        return state, metrics, R

    def init(self, keys_data, hparams):
        return shard_runs(self._init, (keys_data, hparams), self.mesh)

    def place(self, tree):
        """Host arrays ``[R, ...]`` -> global arrays ``[R_pad, ...]`` on the mesh (padded as
        ``shard_runs`` pads), for a state restored from a checkpoint."""
        return shard_runs(lambda x: x, tree, self.mesh)[0]

    def segment(self, state, hparams, m):
        if m not in self._segments:
            def local(raw, hp):
                typed = wrap_keys(raw, self.template, self.key_impl)
                state, metrics = self._local_run(typed, hp, m)
                return key_data(state), metrics
            self._segments[m] = self._compile(local)
        return self._segments[m]((state, self.place(hparams)))


def compiled_runner(config, log_every, mesh, key_impl, compiler_options,
                    vmap_size=None, report=False, shared=frozenset()) -> Runner:
    """``Runner(...)``, cached by the config's static fields (``compiled.static_key``), so sweeps
    that differ only in dynamic values (or repeat) reuse the compiled program (jit's own cache
    then keys on the run count). ``report``: send every kept row to ``loggers.SINK`` (a
    sweep with a progress line or loggers; without, the program has no host callback).
    ``shared``: the hparams all its runs give one value (``driver.shared_hparams``), which
    enter the vmapped runs unbatched; part of the key, values not."""
    key = ("sweeps.runner", compiled.static_key(config), log_every,
           tuple(d.id for d in mesh.devices.flat), str(key_impl),
           compiled.options_key(compiler_options), vmap_size, report, tuple(sorted(shared)))
    return compiled.cached(key, lambda: Runner(config, log_every, mesh, key_impl,
                                               compiler_options, vmap_size, report,
                                               shared))[0]
