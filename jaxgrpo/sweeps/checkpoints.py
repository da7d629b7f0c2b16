"""Preemption-safe sweeps: every run's ``TrainState`` and the metrics so far saved with orbax
every few iterations, and a sweep called again continuing from its newest checkpoint."""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from .. import preemption
from ..checkpoint import Checkpointer, config_diff
from ..errors import CheckpointError
from ..keys import key_data, wrap_keys
from .mesh import to_host
from .processes import from_process_0


class SweepCheckpoints:
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
        self.directory = os.path.abspath(os.fspath(directory))
        self.identity = identity
        self.primary = jax.process_index() == 0
        self.ck = Checkpointer(self.directory, max_to_keep=2, this_process_only=True) \
            if self.primary else None
        self.last = 0             # the step saved or restored last (0: none)

    def close(self):
        if self.ck is not None:
            self.ck.close()

    def save(self, states: dict, metrics: dict, done: list) -> None:
        step = int(sum(done))
        self.last = step
        if self.primary:
            self.ck.save(step, states, metrics, {"config": self.identity, "done": list(done)})
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"jaxgrpo-sweep-save-{step}")

    def _read(self, template_for, n_groups: int):
        """Process 0's read of the newest step: ``(info, (states, metrics) or None)``; ``info``
        (JSON) has ``error`` (a ``CheckpointError``'s message), ``done`` and metric shapes."""
        info, got = {"error": None, "done": None}, None
        try:
            step = self.ck.latest_step()
            if step is None:
                return info, got
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
        return info, got

    def restore(self, template_for, n_groups: int):
        """``(states, metrics, done)`` of the newest step, or None when there is none.
        ``template_for(g)``: the abstract ``[R_g, ...]`` raw state of compilation ``g``.
        A foreign (other sweep or code) or corrupt checkpoint raises ``CheckpointError``
        naming it, on every process; nothing is written."""
        info, got = {"error": None, "done": None}, None
        if self.primary:
            info, got = self._read(template_for, n_groups)
        if jax.process_count() > 1:
            info = from_process_0(info)
        if info["error"]:
            raise CheckpointError(info["error"])
        if info["done"] is None:
            return None
        self.last = int(sum(info["done"]))
        if jax.process_count() > 1:
            if got is None:   # shapes to receive into
                tmpl = {f"g{g}": template_for(g) for g in range(len(info["done"]))}
                got = (jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), tmpl),
                       {k: np.zeros(v, np.float32) for k, v in info["metrics"].items()})
            got = jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(got))
        return got[0], got[1], info["done"]


def _any_process(signum: int) -> int:
    """The largest signal number any process of the job received (0: none)."""
    return int(np.max(multihost_utils.process_allgather(np.int32(signum))))


def batched(template, R: int):
    """A run's abstract state -> the abstract raw ``[R, ...]`` state of a checkpoint."""
    raw = jax.eval_shape(key_data, template)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct((R,) + tuple(s.shape), s.dtype), raw)


def run_checkpointed(runner, gi, kd, hp, ckpt, segment, every, saved_states, saved_rows, done):
    """Compilation ``gi`` of a segmented sweep, ``segment`` iterations per compiled call (the
    calls end at multiples of ``segment``), from where the restored checkpoint left it.
    ``saved_states``/``saved_rows``/``done`` (the sweep's checkpoint content, host arrays: a
    compilation is in them once it ran a segment) are updated in place and saved with ``ckpt``
    (None: never) every ``every`` iterations and at the compilation's end (``every`` None:
    never). Before each call, a signal caught by ``preemption.handling()`` saves the iterations
    reached and raises ``preemption.Preempted`` (``iteration``: iterations done, summed over
    the compilations). Returns ``(state, metrics {name: [R, rows]}, R, a [R_pad] array for
    placement)``."""
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
    saved = at

    def keep():                            # this compilation's progress into the content
        if gi >= len(done):
            done.append(0)
        done[gi] = at
        saved_states[key] = jax.tree.map(lambda x: to_host(x)[:R], state)
        saved_rows.update({f"{key}/{k}": v for k, v in rows.items()})

    def save_reached():                    # on a signal: save what is not saved yet
        if ckpt is not None:
            if at > saved:
                keep()
            if sum(done) > ckpt.last:
                ckpt.save(saved_states, saved_rows, done)

    while at < n:
        preemption.check(ckpt.directory if ckpt is not None else None,
                         int(sum(done[:gi])) + at, save_reached,
                         _any_process if jax.process_count() > 1 else None)
        m = min(n, (at // segment + 1) * segment) - at
        state, met = runner.segment(state, hp, m)
        met = {k: to_host(v)[:R] for k, v in met.items()}
        rows = {k: np.concatenate([rows[k], v], axis=1) if k in rows else v
                for k, v in met.items()}
        at += m
        if ckpt is not None and every is not None and (at % every == 0 or at == n):
            keep()
            ckpt.save(saved_states, saved_rows, done)
            saved = at
    if ckpt is not None and saved < n:
        keep()           # a finished compilation is in the content a later signal saves
    typed = wrap_keys(state, runner.template, runner.key_impl)
    return typed, rows, R, jax.tree.leaves(state)[0]
