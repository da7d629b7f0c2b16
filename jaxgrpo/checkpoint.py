"""Checkpoints of a (seed-batched) training run with orbax-checkpoint.

A checkpoint is one orbax step directory ``DIR/<iteration>/`` with three items:

- ``state``: every array leaf of the ``TrainState`` (parameters, optimizer state, reference
  policy, RNG key, iteration, env_steps and, for PPO, the environment states), stored flat as
  ``leaf_000, leaf_001, ...``. Typed PRNG keys are stored as their raw ``key_data``
  (``uint32 [..., 2]`` for threefry) and wrapped again on restore.
- ``history``: ``{name: [S, k]}``, the per-iteration metrics of the ``k`` iterations run so far
  (``S`` seeds).
- ``meta`` (JSON): the iteration count, the run's resolved config, the key path, shape and dtype
  of every leaf, and a SHA-256 digest of all array bytes.

Beside them, ``DIR/<iteration>/files.json`` lists the size and SHA-256 of every file of the
step as written (orbax's own bookkeeping files included, also those it never reads back).

On restore, every file is checked against ``files.json``, and the stored leaves against the
structure that the current config produces (key paths, shapes, dtypes) and against the digest,
so a checkpoint of another config, a truncated file or flipped bits give a ``CheckpointError``
naming the problem instead of a run that silently continues from garbage. Nothing here ever
deletes or rewrites an existing step (orbax's ``max_to_keep`` retention aside).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Mapping

import jax
import numpy as np

from .errors import CheckpointError
from .keys import impl_name, is_key

FORMAT = 1
MANIFEST = "files.json"


# ----------------------------------------------------------------------------- pytree <-> arrays

def flatten_state(state) -> tuple[dict[str, np.ndarray], dict]:
    """A pytree -> ``({"leaf_000": np.ndarray, ...}, layout)``.

    ``layout`` (JSON-able) holds, per leaf, its key path, shape, dtype and, for typed PRNG keys,
    the key implementation (their arrays are stored as ``jax.random.key_data``).
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(jax.block_until_ready(state))
    arrays, layout = {}, {"paths": [], "shapes": [], "dtypes": [], "key_impls": {}}
    for i, (path, leaf) in enumerate(leaves):
        name = f"leaf_{i:03d}"
        if is_key(leaf):
            layout["key_impls"][name] = impl_name(leaf.dtype)
            leaf = jax.random.key_data(leaf)
        arr = np.asarray(jax.device_get(leaf))
        arrays[name] = arr
        layout["paths"].append(jax.tree_util.keystr(path))
        layout["shapes"].append(list(arr.shape))
        layout["dtypes"].append(str(arr.dtype))
    return arrays, layout


def _abstract_layout(template) -> tuple[dict, Any]:
    """The layout that ``flatten_state`` would give for ``template`` (arrays or
    ``jax.ShapeDtypeStruct``s, e.g. from ``jax.eval_shape``), and its treedef."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    layout = {"paths": [], "shapes": [], "dtypes": [], "key_impls": {}}
    for i, (path, leaf) in enumerate(leaves):
        name = f"leaf_{i:03d}"
        shape, dtype = tuple(leaf.shape), leaf.dtype
        if is_key(leaf):
            layout["key_impls"][name] = impl_name(dtype)
            data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype))
            shape, dtype = data.shape, data.dtype
        layout["paths"].append(jax.tree_util.keystr(path))
        layout["shapes"].append(list(shape))
        layout["dtypes"].append(str(np.dtype(dtype)))
    return layout, treedef


def unflatten_state(template, arrays: Mapping[str, np.ndarray], layout: dict):
    """Inverse of ``flatten_state`` given a ``template`` with the expected structure."""
    _, treedef = jax.tree_util.tree_flatten(template)
    leaves = []
    for i in range(len(layout["paths"])):
        name = f"leaf_{i:03d}"
        x = jax.numpy.asarray(arrays[name])
        if name in layout["key_impls"]:
            x = jax.random.wrap_key_data(x, impl=layout["key_impls"][name])
        leaves.append(x)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def digest(state_arrays: Mapping[str, np.ndarray], metrics: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every array (state and metrics)."""
    h = hashlib.sha256()
    for group, d in (("state", state_arrays), ("metrics", metrics)):
        for name in sorted(d):
            a = np.ascontiguousarray(d[name])
            h.update(f"{group}/{name}:{a.dtype}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- manager

def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_manifest(step_dir) -> dict:
    """``{relative path: [size, sha256]}`` of every file under ``step_dir`` (the manifest
    itself excluded)."""
    out = {}
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel != MANIFEST:
                out[rel] = [os.path.getsize(path), _sha256(path)]
    return dict(sorted(out.items()))


def _quiet_orbax():
    for name in ("absl", "orbax", "orbax.checkpoint"):
        logging.getLogger(name).setLevel(logging.ERROR)


class Checkpointer:
    """Save and restore checkpoints of a run in ``directory`` (one orbax step per save, the
    step number being the iteration count).

    ``max_to_keep``: the newest checkpoints kept (older ones are removed by orbax after a newer
    one is written successfully); None keeps all. ``this_process_only``: in a multi-process
    job, a manager that only this process uses (no barriers with the others; they must not
    write to ``directory``), for host arrays that one process saves for all.
    """

    def __init__(self, directory, max_to_keep: int | None = 3, this_process_only: bool = False):
        import orbax.checkpoint as ocp

        _quiet_orbax()
        self.directory = os.path.abspath(os.fspath(directory))
        self._ocp = ocp
        self._manager = None
        self._max_to_keep = max_to_keep
        self._this_process_only = this_process_only

    @property
    def manager(self):
        if self._manager is None:
            ocp = self._ocp
            kw = {"create": True}
            if self._this_process_only and jax.process_count() > 1:
                os.makedirs(self.directory, exist_ok=True)   # orbax cannot, with these options
                me = jax.process_index()
                kw["create"] = False
                kw["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                    primary_host=me, active_processes={me},
                    barrier_sync_key_prefix=f"jaxgrpo-p{me}")
            opts = ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep,
                                                enable_async_checkpointing=False, **kw)
            self._manager = ocp.CheckpointManager(self.directory, options=opts)
        return self._manager

    def close(self) -> None:
        """Release orbax's threads (call when done; also ``with Checkpointer(...) as ck:``)."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def steps(self) -> list[int]:
        """Iteration counts of the finished checkpoints, ascending (no directory: [])."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        s = self.steps()
        return s[-1] if s else None

    def save(self, step: int, state, metrics: Mapping[str, np.ndarray], meta: dict) -> None:
        """Write checkpoint ``step``: ``state`` (any pytree, typed keys allowed), ``metrics``
        ``{name: [S, step]}`` and ``meta`` (JSON-able; layout and digest are added).
        Refuses to replace an existing step."""
        ocp = self._ocp
        if step in self.steps():
            raise CheckpointError(f"{self.directory}: checkpoint {step} already exists; "
                                  "not overwriting it")
        arrays, layout = flatten_state(state)
        metrics = {k: np.asarray(v) for k, v in metrics.items()}
        meta = {**meta, "format": FORMAT, "step": int(step), "layout": layout,
                "metric_names": sorted(metrics), "digest": digest(arrays, metrics)}
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(arrays), history=ocp.args.StandardSave(metrics),
            meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()
        step_dir = os.path.join(self.directory, str(step))
        manifest = os.path.join(step_dir, MANIFEST)
        files = file_manifest(step_dir)
        with open(manifest + ".tmp", "w") as f:
            json.dump(files, f, indent=1)
        os.replace(manifest + ".tmp", manifest)

    def check_files(self, step: int) -> None:
        """Raise ``CheckpointError`` unless every file of checkpoint ``step`` is as written
        (size and SHA-256 against its ``files.json``; a step without one is not checked)."""
        where = f"checkpoint {self.directory}/{step}"
        step_dir = os.path.join(self.directory, str(step))
        try:
            with open(os.path.join(step_dir, MANIFEST)) as f:
                want = json.load(f)
        except FileNotFoundError:
            # written just after orbax finalizes the step: missing if the process stopped in
            # between, or in checkpoints of jaxgrpo before 0.1.1; the arrays' digest still
            # guards their data
            return
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{where}: its {MANIFEST} is unreadable ({type(e).__name__}); "
                                  "the checkpoint is corrupt") from None
        if not isinstance(want, dict) or not want or not all(
                isinstance(v, list) and len(v) == 2 for v in want.values()):
            raise CheckpointError(f"{where}: its {MANIFEST} is not a list of files; the "
                                  "checkpoint is corrupt")
        got = file_manifest(step_dir)
        for rel, (size, sha) in want.items():
            if rel not in got:
                raise CheckpointError(f"{where}: file {rel} is missing; the checkpoint is corrupt")
            if got[rel][0] != size:
                raise CheckpointError(f"{where}: file {rel} is {got[rel][0]} bytes, {size} when "
                                      "written; the checkpoint is corrupt")
            if got[rel][1] != sha:
                raise CheckpointError(f"{where}: file {rel} has changed since it was written "
                                      "(SHA-256 differs); the checkpoint is corrupt")

    def newest_intact(self, template, expected_config: Mapping | None = None,
                      below: int | None = None) -> int | None:
        """The newest step (below ``below`` if given) that restores without error, or None."""
        for step in reversed(self.steps()):
            if below is not None and step >= below:
                continue
            try:
                self.restore(step, template, expected_config)
            except CheckpointError:
                continue
            return step
        return None

    def read_meta(self, step: int) -> dict:
        path = os.path.join(self.directory, str(step), "meta", "metadata")
        try:
            with open(path) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {self.directory}/{step}: its metadata is "
                                  f"unreadable ({type(e).__name__}: {e}); the checkpoint is "
                                  "corrupt") from None
        missing = [k for k in ("format", "layout", "digest", "metric_names")
                   if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise CheckpointError(f"checkpoint {self.directory}/{step}: its metadata lacks "
                                  f"{missing[0]!r}; the checkpoint is corrupt or not jaxgrpo's")
        return meta

    def restore(self, step: int, template, expected_config: Mapping | None = None):
        """Read checkpoint ``step`` -> ``(state, metrics, meta)``.

        template: a pytree with the expected structure (arrays or ``jax.ShapeDtypeStruct``s,
        e.g. ``jax.eval_shape`` of the run's init). expected_config: the run's config dict;
        the checkpoint's must be equal. Raises ``CheckpointError`` on any mismatch or
        corruption.
        """
        ocp = self._ocp
        where = f"checkpoint {self.directory}/{step}"
        meta = self.read_meta(step)
        if meta.get("format") == FORMAT:
            self.check_files(step)
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{where}: unknown format {meta.get('format')!r} "
                                  f"(this jaxgrpo writes format {FORMAT})")
        if expected_config is not None:
            diff = config_diff(meta.get("config", {}), expected_config)
            if diff:
                raise CheckpointError(f"{where} was written by a different config: {diff}")
        want, _ = _abstract_layout(template)
        got = meta["layout"]
        if got["paths"] != want["paths"]:
            extra = sorted(set(got["paths"]) ^ set(want["paths"]))
            raise CheckpointError(f"{where}: its state has a different structure than this "
                                  f"config's (e.g. {extra[0] if extra else 'leaf order'})")
        if got["key_impls"] != want["key_impls"]:
            raise CheckpointError(f"{where}: its PRNG keys use {got['key_impls']}, this session "
                                  f"{want['key_impls']}")
        for p, gs, ws, gd, wd in zip(want["paths"], got["shapes"], want["shapes"],
                                     got["dtypes"], want["dtypes"]):
            if gs != ws or gd != wd:
                raise CheckpointError(f"{where}: {p} is {gd}{gs} in the checkpoint, this config "
                                      f"needs {wd}{ws}")
        try:
            r = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(), history=ocp.args.StandardRestore(),
                meta=ocp.args.JsonRestore()))
            arrays = {k: np.asarray(v) for k, v in r["state"].items()}
            metrics = {k: np.asarray(v) for k, v in r["history"].items()}
        except Exception as e:  # noqa: BLE001 - whatever orbax/tensorstore raise for bad files
            msg = " ".join(str(e).split())[:300]
            raise CheckpointError(f"{where} is unreadable ({type(e).__name__}: {msg}); the "
                                  "checkpoint is corrupt") from None
        for i, (shape, dtype) in enumerate(zip(got["shapes"], got["dtypes"])):
            a = arrays.get(f"leaf_{i:03d}")
            if a is None or list(a.shape) != shape or str(a.dtype) != dtype:
                raise CheckpointError(f"{where}: array {got['paths'][i]} is missing or has the "
                                      "wrong shape; the checkpoint is corrupt")
        if sorted(metrics) != meta["metric_names"] or digest(arrays, metrics) != meta["digest"]:
            raise CheckpointError(f"{where}: its arrays do not match the digest written with "
                                  "them; the checkpoint is corrupt")
        return unflatten_state(template, arrays, got), metrics, meta


def config_diff(saved: Mapping, current: Mapping) -> str:
    """'' if equal, else a short description of the first differing key."""
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k, "<unset>"), current.get(k, "<unset>")
        if _norm(a) != _norm(b):
            return f"{k} is {a!r} there and {b!r} here"
    return ""


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _norm(x) for k, x in v.items()}
    return v
