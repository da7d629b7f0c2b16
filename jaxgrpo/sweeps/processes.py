"""Multi-process agreement: every process of a sweep must make the same call, and process 0's
reads (a checkpoint's metadata) reach the others. Both go through one JSON exchange."""
from __future__ import annotations

import json

import jax
import numpy as np
from jax.experimental import multihost_utils

from ..configio import config_to_dict, plain


def exchange(obj) -> list:
    """Every process's ``obj`` (JSON values; others by ``repr``), in process order, on every
    process (``process_allgather`` of the JSON bytes). Every process must call it."""
    blob = json.dumps(obj, sort_keys=True, default=repr).encode()
    lens = np.asarray(multihost_utils.process_allgather(
        np.asarray([len(blob)], np.int32))).reshape(-1)
    buf = np.zeros(int(lens.max()), np.uint8)
    buf[:len(blob)] = np.frombuffer(blob, np.uint8)
    every = np.asarray(multihost_utils.process_allgather(buf)).reshape(len(lens), -1)
    return [json.loads(every[p, :lens[p]].tobytes()) for p in range(len(lens))]


def from_process_0(obj: dict) -> dict:
    """Process 0's ``obj`` (JSON values) on every process."""
    return exchange(obj)[0]


def describe(config, grid, seeds, base_seed, log_every, devices, compiler_options, vmap_size,
             checkpoint_every) -> dict:
    """A sweep call as flat JSON values (``config.<field>``, ``grid``, ``seeds``, ...): what every
    process of a multi-process sweep must agree on. Never raises (unplain values -> repr)."""
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

    desc: this process's call (JSON values, ``describe``); error: the ``ValueError`` its own
    validation raised, if any. With one process, ``error`` is raised. With several, the
    descriptions and errors are exchanged (``exchange``), and every process raises the same
    kind of one-line ``ValueError``: a process's own error, the first process's error, or the
    fields whose values differ with each process's value. Without this, different calls would
    meet in mismatched collectives and fail (gloo: after ~30 s) or hang."""
    if jax.process_count() == 1:
        if error is not None:
            raise error
        return
    docs = exchange({"call": desc, "error": None if error is None else str(error)})
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
