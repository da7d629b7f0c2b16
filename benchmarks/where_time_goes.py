"""Where a PPO / GRPO iteration spends its time on CPU, and what GRPO's collectors buy.

    python -m benchmarks.where_time_goes        # -> benchmarks/where_time_goes.md
    python -m benchmarks.where_time_goes --tiny --out X.md   # smoke: tiny budgets, ~1 min

1. Ablations (CartPole-v1, PureJaxRL's PPO batch; GRPO's stream collector with the same 4
   lanes x 128 steps): steps/s of the compiled loop with the learn phase replaced by the
   identity, with GAE replaced by one-step TD, and unchanged. Rates are env steps per second
   of *process CPU time* (robust to other jobs on a shared machine) and of wall time, median
   of 3 runs after one compile.
2. Op counts of the compiled PPO program: ops per trip of every while-loop body (the collect
   step, the minibatch step, ...), and how many threefry loops each contains.
3. XLA:CPU options that could speed up the small dots (each passed as a jit compiler option).
4. Valid fraction of a lane pool (W lanes running N episodes, a finished lane starts the next
   queued episode) against lockstep (W = N, the on-policy collector), simulated on
   episode-length distributions, with the number of loop trips it costs.
5. GRPO's collectors, measured: the default CartPole run with the stream collector (the
   default) and with ``on_policy=True``: valid fraction, steps/s, staleness and final training
   return over 3 seeds.
6. The per-epoch shuffle of the learn phase: ``update.epoch_order`` (a sort of packed uint32
   keys) against an argsort and ``jax.random.permutation``, the whole learn phase timed on
   synthetic batches (PPO's 512 samples; the GRPO stream's default batch of 4,096, all valid;
   the on-policy collector's default buffer of 16,000, half valid).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxgrpo
import jaxgrpo.ppo as ppo_mod
import jaxgrpo.update as update_mod
from benchmarks.measure import machine

OUT = Path(__file__).resolve().parent / "where_time_goes.md"
BUDGET = 300_000
REPS = 3


def rates(cfg, reps=None, compiler_options=None):
    """-> (median CPU-time steps/s, median wall steps/s, compile s)."""
    t0 = time.perf_counter()
    f = jax.jit(jaxgrpo.make_train(cfg), compiler_options=compiler_options)
    f = f.lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    cpu, wall = [], []
    for r in range(REPS if reps is None else reps):
        c0, w0 = time.process_time(), time.perf_counter()
        _, m = jax.block_until_ready(f(jax.random.key(r)))
        steps = float(m["env_steps"][-1])
        cpu.append(steps / (time.process_time() - c0))
        wall.append(steps / (time.perf_counter() - w0))
    return statistics.median(cpu), statistics.median(wall), compile_s


def ablations():
    # algorithm.minibatch_learn calls update.learn through the module: patched there
    real_learn, real_gae = update_mod.learn, ppo_mod.gae
    no_learn = lambda loss_fn, params, opt_state, *a, **k: (params, opt_state, {})
    one_step = lambda r, v, nv, term, done, g, lam: (r + g * nv * (1 - term) - v,
                                                   r + g * nv * (1 - term))
    ppo = jaxgrpo.PPOConfig(env="CartPole-v1", total_timesteps=BUDGET)
    grpo = jaxgrpo.GRPOConfig(env="CartPole-v1", total_timesteps=BUDGET, num_envs=4)
    rows = []
    for name, cfg, patch in [("PPO", ppo, None), ("PPO, learn removed", ppo, "learn"),
                             ("PPO, GAE -> one-step TD", ppo, "gae"),
                             ("GRPO stream, 4 lanes x 128 steps", grpo, None),
                             ("GRPO stream, 4 lanes x 128 steps, learn removed", grpo, "learn")]:
        update_mod.learn = no_learn if patch == "learn" else real_learn
        ppo_mod.gae = one_step if patch == "gae" else real_gae
        try:
            cpu, wall, c = rates(cfg)
        finally:
            update_mod.learn, ppo_mod.gae = real_learn, real_gae
        rows.append(f"| {name} | {cpu / 1e3:.1f}k | {wall / 1e3:.1f}k | {1e6 / cpu:.2f} |")
        print(rows[-1], flush=True)
    return rows


FREE = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}


def op_counts():
    cfg = jaxgrpo.PPOConfig(env="CartPole-v1", total_timesteps=BUDGET)
    text = jax.jit(jaxgrpo.make_train(cfg)).lower(jax.random.key(0)).compile().as_text()
    comps, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if m and "(" in line:
            cur = m.group(1)
            comps[cur] = []
        elif line.startswith("}"):
            cur = None
        elif cur:
            m2 = re.search(r"=\s*(?:\([^)]*\)|\S+)\s+([\w\-]+)\(", line)
            if m2:
                comps[cur].append((m2.group(1), line))
    rows = []
    for parent, ins in comps.items():
        for op, line in ins:
            if op != "while":
                continue
            body = re.search(r"body=%?([\w.\-]+)", line).group(1)
            ops = collections.Counter(o for o, _ in comps.get(body, []) if o not in FREE)
            loops = ops.get("while", 0) + ops.get("call", 0)
            text_ = "\n".join(l for _, l in comps.get(body, []))
            role = ("one iteration" if ops.get("while", 0) >= 3 else
                    "one epoch (permutation + minibatch loop)" if "sort" in ops else
                    "one minibatch step (forward, backward, Adam)" if ops.get("dot", 0) >= 4 else
                    "one collect step (policy, env, buffer writes)" if "dynamic_update_slice" in text_
                    else "other")
            rows.append((sum(ops.values()), loops, role))
    rows.sort(reverse=True)
    return [f"| {role} | {n} | {loops} |" for n, loops, role in rows if n > 20]


def xla_options():
    cfg = jaxgrpo.PPOConfig(env="CartPole-v1", total_timesteps=BUDGET)
    rows = []
    for opts in ({}, {"xla_cpu_multi_thread_eigen": False}, {"xla_cpu_use_xnnpack": True},
                 {"xla_cpu_use_onednn": True}):
        cpu, wall, c = rates(cfg, compiler_options=opts)
        rows.append(f"| `{json.dumps(opts)}` | {cpu / 1e3:.1f}k | {wall / 1e3:.1f}k | {c:.1f} |")
        print(rows[-1], flush=True)
    return rows


def pool(lengths, lanes):
    """Greedy lane pool: -> (valid / simulated, loop trips)."""
    free = np.zeros(lanes)
    for length in lengths:
        free[np.argmin(free)] += length
    trips = free.max()
    return lengths.sum() / (lanes * trips), trips


def pool_table(n=32, draws=500, seed=0):
    rng = np.random.default_rng(seed)
    dists = {
        "uniform 20..500": lambda: rng.integers(20, 501, n),
        "exponential, mean 100, cap 500": lambda: np.minimum(rng.exponential(100, n).astype(int) + 10, 500),
        "geometric, mean 28 (early CartPole)": lambda: rng.geometric(1 / 20, n) + 8,
        "80% at the 500 limit": lambda: np.where(rng.random(n) < 0.8, 500, rng.integers(50, 500, n)),
    }
    rows = []
    for name, draw in dists.items():
        cells = []
        for lanes in (n, n // 2, n // 4, n // 8):
            res = np.array([pool(draw(), lanes) for _ in range(draws)])
            cells.append(f"{res[:, 0].mean():.0%} / {res[:, 1].mean():.0f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def collectors(seeds=3, budget=500_000):
    rows = []
    for name, on_policy in (("stream (default)", False), ("on-policy (`on_policy=True`)", True)):
        cfg = jaxgrpo.GRPOConfig(env="CartPole-v1", total_timesteps=budget, on_policy=on_policy)
        f = jax.jit(jaxgrpo.make_train(cfg)).lower(jax.random.key(0)).compile()
        valid = sim = wall = 0.0
        finals, stale, stale_max = [], [], 0.0
        for k in range(seeds):
            w0 = time.perf_counter()
            _, m = jax.block_until_ready(f(jax.random.key(k)))
            wall += time.perf_counter() - w0
            m = {n: np.asarray(v, np.float64) for n, v in m.items()}
            ran = ~np.isnan(m["loss"])
            v = np.diff(m["env_steps"], prepend=0.0)[ran]
            valid, sim = valid + v.sum(), sim + (v / m["valid_frac"][ran]).sum()
            stale.append(np.mean(m["staleness/mean"][ran]))
            stale_max = max(stale_max, float(np.max(m["staleness/max"][ran])))
            r = m["episode_return"][ran]
            finals.append(r[-max(1, len(r) // 10):].mean())
        rows.append(f"| {name} | {valid / sim:.3f} | {valid / wall / 1e3:.1f}k | "
                    f"{np.mean(stale):.2f} ({stale_max:.0f}) | "
                    f"{np.mean(finals):.1f} ({', '.join(f'{x:.0f}' for x in finals)}) |")
        print(rows[-1], flush=True)
    return rows


def shuffles(inner=8, reps=5):
    import jaxgrpo.update as U
    from jaxgrpo import grpo, ppo
    from jaxgrpo.train import make_train
    variants = {
        "`epoch_order` (packed uint32 sort)": U.epoch_order,
        "argsort of uniform keys": lambda k, m: jnp.argsort(
            jnp.where(m, jax.random.uniform(k, m.shape), 2.0)).astype(jnp.int32),
        "`jax.random.permutation` (all valid only)": lambda k, m: jax.random.permutation(
            k, m.shape[0]),
    }
    # (name, config, module, samples, valid samples, chunk)
    cases = [("PPO, 512 samples", jaxgrpo.PPOConfig(), ppo, 512, 512, 128),
             ("GRPO stream, 4,096 samples (all valid)", jaxgrpo.GRPOConfig(), grpo, 4096, 4096,
              1024),
             ("GRPO on-policy, 16,000 samples, 8,000 valid", jaxgrpo.GRPOConfig(on_policy=True),
              grpo, 16_000, 8_000, 128)]
    rows, real = [], U.epoch_order
    for name, cfg, algo, C, n_valid, chunk in cases:
        train = make_train(cfg)
        hp, st = cfg.hparams(), train.init(jax.random.key(0))
        k = jax.random.key(1)
        batch = {"obs": jax.random.normal(k, (C, 4)), "action": jnp.zeros(C, jnp.int32),
                 "logp": jnp.full(C, -0.69), "adv": jax.random.normal(k, (C,)),
                 "value": jnp.zeros(C), "ret": jnp.ones(C)}
        mask = jax.random.permutation(k, jnp.arange(C) < n_valid)
        weight = mask / n_valid
        dense = n_valid == C            # PPO and the GRPO stream: the fixed-size path
        cells = []
        for vname, fn in variants.items():
            if not dense and "all valid only" in vname:
                cells.append("-")
                continue
            U.epoch_order = fn
            try:
                def f(key):
                    def body(c, kk):
                        lf = lambda p, ch, w, m: algo.loss(cfg, train.policy, p, st.ref_params,
                                                           ch, w, m, hp)
                        out = U.learn(lf, st.params, st.opt_state, train.optimizer(hp), batch,
                                      weight, mask, kk, epochs=cfg.update_epochs,
                                      num_minibatches=cfg.num_minibatches, chunk=chunk,
                                      all_valid=dense)
                        return c + out[2]["loss"], None
                    return jax.lax.scan(body, 0.0, jax.random.split(key, inner))[0]
                g = jax.jit(f)
                g(k).block_until_ready()
                ts = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    g(k).block_until_ready()
                    ts.append(time.perf_counter() - t0)
            finally:
                U.epoch_order = real
            cells.append(f"{statistics.median(ts) / inner * 1e3:.2f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return ["| learn phase of | " + " | ".join(variants) + " |",
            "|---|" + "---:|" * len(variants)] + rows


def _machine() -> str:
    m = machine()
    return (f"{m['cpu']}, {m['cores']} cores, {m['device']}, jax {m['jax']}, "
            f"Python {m['python']}")


def main(argv=None):
    global BUDGET, REPS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true",
                   help="smoke: 20k-step budgets, 1 repeat, 1 seed (numbers meaningless)")
    p.add_argument("--out", help=f"markdown to write (default {OUT}; with --tiny only when given)")
    a = p.parse_args(argv)
    if a.tiny:
        BUDGET, REPS = 20_000, 1
    seeds, budget = (1, 20_000) if a.tiny else (3, 500_000)
    t0 = time.time()
    L = ["# Where the time goes (generated)", "",
         f"`python -m benchmarks.where_time_goes{' --tiny' if a.tiny else ''}`, "
         f"{time.strftime('%Y-%m-%d %H:%M')}, machine: {_machine()}. Load average at start: "
         f"{os.getloadavg()[0]:.1f}." + (" TINY MODE (smoke budgets, numbers meaningless)."
                                         if a.tiny else ""), ""]
    L += [f"## 1. Ablations (CartPole-v1, {BUDGET // 1000}k env steps, median of {REPS})", "",
          "| program | steps/s (CPU time) | steps/s (wall) | us of CPU per env step |",
          "|---|---:|---:|---:|"] + ablations() + [""]
    L += ["## 2. Compiled PPO program: ops per trip of each while-loop body", "",
          "Threefry draws are rolled 5-trip loops on XLA:CPU (shown as `while`/`call` ops); "
          "bodies with at most 20 ops (those loops themselves, the initializer) are left out.",
          "", "| loop body | ops per trip | nested loops per trip |", "|---|---:|---:|"]
    L += op_counts() + [""]
    L += ["## 3. XLA:CPU options (PPO, CartPole-v1)", "",
          "| compiler options | steps/s (CPU time) | steps/s (wall) | compile s |",
          "|---|---:|---:|---:|"] + xla_options() + [""]
    L += ["## 4. Lane pool for GRPO episodes: valid fraction / loop trips (32 episodes)", "",
          "Simulated: W lanes run the 32 episodes of an iteration, a finished lane starts the "
          "next queued one; W = 32 is the on-policy collector (`on_policy=True`), which waits "
          "for the iteration's longest episode. The default stream collector has no such wait: "
          "a lane whose episode ended starts the next group member at once, across iterations "
          "(§5). 500 draws per cell.", "",
          "| episode lengths | W = 32 | W = 16 | W = 8 | W = 4 |", "|---|---|---|---|---|"]
    L += pool_table() + [""]
    L += [f"## 5. GRPO's collectors, measured (default config, CartPole-v1, {budget // 1000}k "
          "steps)", "",
          "The stream collector (default): 32 lanes step 128 times per iteration, a lane whose "
          "episode ended starts the next group member at once, a group is scored when its 8 "
          "members have ended and each iteration trains the 4,096 oldest scored steps; the "
          "price is that an episode's early steps were sampled by a policy a few updates older "
          "than the one that trains them (staleness: `staleness/mean` averaged over iterations "
          "and seeds, and the largest `staleness/max`). On-policy: each iteration runs 4 "
          "groups x 8 fresh episodes and waits for the longest. Seeds "
          f"0-{seeds - 1}, one compile per row; final return: mean training return of the last "
          "10% of iterations.", "",
          "| collector | valid / simulated | steps/s (wall) | staleness mean (max) "
          "| final return (per seed) |", "|---|---:|---:|---:|---|"]
    L += collectors(seeds, budget)
    L += ["", "## 6. The learn phase's per-epoch shuffle (ms per learn phase, median of "
          f"{1 if a.tiny else 5})", "",
          "4 epochs x 4 minibatches on a synthetic batch, the library's `learn` with only the "
          "shuffle swapped. XLA:CPU sorts one primitive operand on a fast path; a key-value "
          "sort (argsort, `jax.random.permutation`) calls a comparator per comparison.", ""]
    L += shuffles(*((2, 1) if a.tiny else ()))
    L += ["", f"({time.time() - t0:.0f} s in all; load average at the end "
              f"{os.getloadavg()[0]:.1f})", ""]
    out = a.out or (None if a.tiny else OUT)
    if out:
        Path(out).write_text("\n".join(L))
        print(f"wrote {out}")
    else:
        print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
