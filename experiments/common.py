"""Helpers shared by the experiment scripts: machine description, code version, CIs, final
returns, and the README blocks the scripts write.

``machine`` (``jaxgrpo.provenance``), ``last_valid`` and ``bootstrap_ci`` (``jaxgrpo.stats``)
are the library's own (run folders use them too), re-exported here so there is one
implementation."""
from __future__ import annotations

import os
import subprocess

from jaxgrpo.provenance import machine
from jaxgrpo.stats import bootstrap_ci, last_valid

__all__ = ["bootstrap_ci", "code_version", "git_rev", "last_valid", "machine", "update_readme"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"


def code_version() -> str:
    """The commit, with "+changes" when the code (jaxgrpo/, experiments/*.py, *.yaml) differs
    from it."""
    try:
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "jaxgrpo",
                                "experiments/*.py", "experiments/*.yaml"],
                               cwd=ROOT, capture_output=True).returncode != 0
    except OSError:
        dirty = False
    return git_rev() + ("+changes" if dirty else "")


def update_readme(readme, name, block):
    """Replace the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(readme).read() if os.path.exists(readme) else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + block + "\n" + end + rest.split(end, 1)[1]
    else:
        text += f"\n{begin}\n{block}\n{end}\n"
    with open(readme, "w") as f:
        f.write(text)


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
