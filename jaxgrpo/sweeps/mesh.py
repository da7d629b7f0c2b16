"""Devices of a sweep: the 1-D mesh of runs, rows placed on it and brought back, and how many
runs a device vmaps at once."""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


RUN_AXIS = "runs"


def run_mesh(devices=None) -> Mesh:
    """A 1-D ``Mesh`` with axis ``"runs"`` over ``devices`` (default ``jax.devices()``: every
    device of every process, which is what a multi-host run after
    ``jax.distributed.initialize()`` needs)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices: need at least one device")
    return Mesh(np.asarray(devices), (RUN_AXIS,))


def check_devices(mesh: Mesh) -> None:
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


def resolve_vmap_size(vmap_size, platform: str, algo: str = "grpo") -> int | None:
    """The ``vmap_size`` a sweep uses for ``algo`` on ``platform`` (``jax.Device.platform``).

    ``"auto"``: None (all of a device's runs vmapped) on every backend and for every
    algorithm: PPO's and GRPO's stream collector step fixed-length iterations, so vmapped runs
    never wait for each other (benchmarks/README.md, "Scaling", has the measurements). An int
    or None is returned as given."""
    if vmap_size == "auto":
        return None
    return vmap_size


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array sharded by ``sharding`` from the same host value on every process."""
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx], dtype=x.dtype)


def to_host(x) -> np.ndarray:
    """A (possibly multi-process) global array as one NumPy array on this host."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
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
        return global_array(x, sharding)

    return fn(jax.tree.map(place, inputs)), R


def placement(idx, R, x: jax.Array, vmap_size) -> dict:
    """The global view (the same on every process) of how ``x [R_pad, ...]`` is sharded."""
    rows = {d.id: len(range(*ix[0].indices(x.shape[0])))
            for d, ix in x.sharding.devices_indices_map(x.shape).items()}
    return {"combinations": list(idx), "runs": R, "padded_runs": x.shape[0],
            "rows_per_device": dict(sorted(rows.items())), "vmap_size": vmap_size}
