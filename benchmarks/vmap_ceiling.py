"""What vmapping seeds can buy on this machine: the learn phase's arithmetic alone, n seeds
vmapped against the same n one after the other.

A GRPO or PPO iteration on CartPole spends most of its time in the learn phase: the policy's
forward and backward pass and an Adam step on each minibatch. Vmapping n seeds turns each
minibatch's [B, 64] x [64, 64] products into n of them in one op; that pays only while an op of
one seed is too small to keep the cores busy. This measures exactly that and nothing else:
GRPO's default CartPole policy (``algorithm.gymnax_policy``, the library's own network), a
negative log-likelihood on random observations, ``value_and_grad`` and Adam, ``--steps``
minibatches of B samples per run inside a ``lax.scan``; n runs as ``jit(vmap(run))`` and as
``jit(lambda keys: lax.map(run, keys))``, one compiled program each, compile excluded, the
median of ``--repeats`` calls. B is each default config's minibatch (``num_envs * num_steps /
num_minibatches``): PPO's 128, GRPO's 1,024, and 4,096 (a wider GRPO run). GFLOP/s counts 6
flops per weight per sample (forward 2, backward 4).

If the sequential program already runs at the rate the vmapped one reaches, no collector can
make vmapped seeds faster than sequential ones at that minibatch size on this machine.

    python -m benchmarks.vmap_ceiling          # n = 16, 64 -> benchmarks/vmap_ceiling.md
    python -m benchmarks.vmap_ceiling --tiny   # smoke: n = 2, tiny sizes, printed only
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.sweep_scaling import emit
from jaxgrpo import GRPOConfig, PPOConfig
from jaxgrpo.algorithm import adam, gymnax_env, gymnax_policy
from jaxgrpo.envs import obs_shape
from jaxgrpo.provenance import machine_info


def minibatch(config) -> int:
    """Samples per minibatch of a config's learn phase (every step of an iteration valid)."""
    return config.num_envs * config.num_steps // config.num_minibatches


def make_run(batch: int, steps: int):
    """``run(key) -> final loss``: ``steps`` Adam steps of GRPO's default CartPole policy on
    minibatches of ``batch`` random observations; and the flops of one run."""
    c = GRPOConfig()
    env = gymnax_env(c)
    policy = gymnax_policy(with_critic=False)(c, env)
    obs_dim = int(np.prod(obs_shape(*env)))
    opt = adam(c, c.hparams(), 1)                 # the library's: clipped Adam, eps 1e-5
    weights = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(policy.init(jax.random.key(0)))
                  if x.ndim == 2)

    def run(key):
        params = policy.init(key)

        def body(carry, k):
            params, state = carry
            obs = jax.random.normal(k, (batch, obs_dim))
            action = (obs[:, 0] > 0).astype(jnp.int32)
            loss, g = jax.value_and_grad(
                lambda p: -policy.dist(p, obs).log_prob(action).mean())(params)
            updates, state = opt.update(g, state, params)
            return (optax.apply_updates(params, updates), state), loss

        _, losses = jax.lax.scan(body, (params, opt.init(params)), jax.random.split(key, steps))
        return losses[-1]

    return run, 6 * weights * batch * steps


def measure(n: int, batch: int, steps: int, repeats: int) -> dict:
    run, flops = make_run(batch, steps)
    keys = jax.random.split(jax.random.key(0), n)
    out = {"n": n, "batch": batch}
    for mode, f in (("vmapped", jax.jit(jax.vmap(run))),
                    ("sequential", jax.jit(lambda ks: jax.lax.map(run, ks)))):
        f(keys).block_until_ready()                      # compile and warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            f(keys).block_until_ready()
            times.append(time.perf_counter() - t)
        s = statistics.median(times)
        out[mode] = {"s": s, "gflops": n * flops / s / 1e9}
    out["speedup"] = out["sequential"]["s"] / out["vmapped"]["s"]
    return out


def markdown(rows, info, cmd, sizes) -> str:
    lines = ["# What vmapping seeds can buy: the learn phase's arithmetic", "",
             f"`{cmd}`. " + __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"**Machine:** {info['cpu']} ({', '.join(info['isa'])}), {info['cores']} cores, "
             f"{info['device']}; jax {info['jax']}, flax {info['flax']}, optax {info['optax']}. "
             f"Minibatch sizes: {sizes}.", "",
             "| seeds n | minibatch B | vmapped ms | sequential ms | vmapped GFLOP/s | "
             "sequential GFLOP/s | vmapped / sequential |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        v, s = r["vmapped"], r["sequential"]
        lines.append(f"| {r['n']} | {r['batch']:,} | {v['s'] * 1e3:.1f} | {s['s'] * 1e3:.1f} | "
                     f"{v['gflops']:.1f} | {s['gflops']:.1f} | {r['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="smoke: n = 2, B = 8, 2 steps")
    p.add_argument("--counts", type=int, nargs="+", default=[16, 64], help="seeds n")
    p.add_argument("--steps", type=int, default=32, help="minibatches per run")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per point (median)")
    p.add_argument("--out", help="markdown file (default benchmarks/vmap_ceiling.md; tiny mode "
                   "writes only when given)")
    a = p.parse_args(argv)
    sizes = {"PPO default": minibatch(PPOConfig()), "GRPO default": minibatch(GRPOConfig()),
             "GRPO at 128 lanes": minibatch(GRPOConfig(num_envs=128))}
    if a.tiny:
        counts, batches, steps, repeats, out = [2], [8], 2, 1, a.out
    else:
        counts, batches, steps, repeats = a.counts, sorted(set(sizes.values())), a.steps, a.repeats
        out = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "vmap_ceiling.md")
    info = machine_info()
    rows = []
    for n in counts:
        for b in batches:
            rows.append(measure(n, b, steps, repeats))
            r = rows[-1]
            print(f"n={n} B={b}: vmapped {r['vmapped']['s'] * 1e3:.1f} ms, sequential "
                  f"{r['sequential']['s'] * 1e3:.1f} ms, {r['speedup']:.2f}x", flush=True)
    cmd = "python -m benchmarks.vmap_ceiling" + (" --tiny" if a.tiny else "")
    emit(markdown(rows, info, cmd, ", ".join(f"{k} {v:,}" for k, v in sizes.items())), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
