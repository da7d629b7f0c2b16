"""Helpers shared by the experiment scripts: machine description, CIs, final returns.

``machine`` (``jaxgrpo.provenance``), ``last_valid`` and ``bootstrap_ci`` (``jaxgrpo.stats``)
are the library's own (run folders use them too), re-exported here so there is one
implementation."""
from __future__ import annotations

import subprocess

from jaxgrpo.provenance import machine
from jaxgrpo.stats import bootstrap_ci, last_valid

__all__ = ["bootstrap_ci", "git_rev", "last_valid", "machine"]


def git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"


def train_and_evaluate(cfg, seeds: int = 8, episodes: int = 100):
    """Train ``cfg`` with ``seeds`` seeds vmapped in one compiled call (keys
    ``split(key(0), seeds)``), then evaluate each seed's final policy on ``episodes`` sampled
    episodes (``jaxgrpo.evaluate``, key(1)). Returns ``(ev [seeds], metrics, compile_s,
    run_s)``, the seconds compile excluded from run."""
    import time

    import jax
    import numpy as np

    import jaxgrpo
    train = jax.jit(jax.vmap(jaxgrpo.make_train(cfg)))
    keys = jax.random.split(jax.random.key(0), seeds)
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    t1 = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()
    ev = np.asarray(jaxgrpo.evaluate(cfg, state, jax.random.key(1), episodes))
    return ev, metrics, t1 - t0, t2 - t1
