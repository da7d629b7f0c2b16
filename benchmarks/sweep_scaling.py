"""Wall time of n vmapped seeds (one ``jaxgrpo.sweep``) against n sequential runs, for GRPO and
PPO, and which of them ``sweep``'s default (``vmap_size="auto"``) picks on this backend.

On CartPole-v1, each a short fixed number of iterations: GRPO's default config (the stream
collector: 32 lanes x 128 steps per iteration, groups of 8), GRPO collecting on-policy
(``on_policy=True``: 4 groups x 8 fresh episodes per iteration, 500-step limit) and PPO with its
defaults (4 envs x 128 steps). For each config and each n in ``--counts``:

- sequential: ``jax.jit(make_train(config))`` compiled once, then called for n keys one
  after the other (each waited for);
- vmapped: ``sweep(config, {}, seeds=n)``: the first call compiles and runs, a second call
  (compiled program cached) is the run time;
- vmap_size=1: the same with ``sweep(..., vmap_size=1)``: one compiled program that runs the
  n runs one after the other (``lax.map``) instead of vmapping them;
- over the devices (when the process has more than one): ``sweep(config, {}, seeds=n)`` on all
  of them, the runs vmapped within each device. On a CPU the script starts JAX with one device
  per core (``jaxgrpo.use_cpu_cores``, ``--cpu-devices``), as ``jaxgrpo sweep`` does; the
  columns above run on the first device alone (``devices=[jax.devices()[0]]``).

The default, ``vmap_size="auto"``, is one of the last two (``resolve_vmap_size``: all runs
vmapped, on every backend); the table names which.

Seed s is ``jax.random.split(jax.random.key(0), n)[s]`` in both, so both do the same work.
Peak RSS is read after each vmapped sweep (runs go in increasing n, so the value after the
largest sweep bounds its memory). Writes a markdown table (``--out``).

    python -m benchmarks.sweep_scaling          # n = 1, 8, 64 -> benchmarks/sweep_scaling.md
    python -m benchmarks.sweep_scaling --tiny   # ~20 s: tiny GRPO (stream), n = 2, printed only
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import jax
import numpy as np

from jaxgrpo import GRPOConfig, PPOConfig, make_train, use_cpu_cores
from jaxgrpo.provenance import machine_info
from jaxgrpo.sweeps import resolve_vmap_size, sweep


def machine() -> dict:
    """``jaxgrpo.provenance.machine_info()``, plus the load average at the start."""
    info = machine_info()
    try:
        info["load_average_1min_at_start"] = "%.1f" % os.getloadavg()[0]
    except OSError:
        info["load_average_1min_at_start"] = "n/a"
    return info


def peak_rss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def block(tree):
    return jax.tree.map(lambda x: x.block_until_ready(), tree)


def _timed_sweep(config, n, compiler_options, vmap_size, devices):
    go = lambda: sweep(config, {}, n, compiler_options=compiler_options, vmap_size=vmap_size,
                       devices=devices)
    t = time.perf_counter()
    go()
    first = time.perf_counter() - t
    t = time.perf_counter()
    res = go()
    return first, time.perf_counter() - t, res


def run(config, counts, compiler_options=None, log=print) -> list[dict]:
    """Time each count; returns one dict per count."""
    train = jax.jit(make_train(config), compiler_options=compiler_options)
    t = time.perf_counter()
    block(train(jax.random.key(0)))          # compile (+ one run)
    seq_first = time.perf_counter() - t
    rows = []
    one, every = jax.devices()[:1], jax.devices()
    for n in counts:
        vm_first, vm_run, res = _timed_sweep(config, n, compiler_options, None, one)
        rss = peak_rss_mib()
        map_first, map_run, _ = _timed_sweep(config, n, compiler_options, 1, one)
        dev_first, dev_run = (_timed_sweep(config, n, compiler_options, None, every)[:2]
                              if len(every) > 1 else (None, None))
        keys = jax.random.split(jax.random.key(0), n)
        t = time.perf_counter()
        for s in range(n):
            block(train(keys[s]))
        seq_run = time.perf_counter() - t
        ret = np.nanmean(res.final_return())
        rows.append({"n": n, "seq_run": seq_run, "vm_run": vm_run, "vm_first": vm_first,
                     "map_run": map_run, "map_first": map_first, "seq_first": seq_first,
                     "dev_run": dev_run, "dev_first": dev_first, "devices": len(every),
                     "rss": rss, "final_return": ret})
        log(f"n={n:3d}: sequential {seq_run:7.2f} s, vmapped {vm_run:7.2f} s (first call "
            f"{vm_first:6.2f} s), vmap_size=1 {map_run:7.2f} s (first call {map_first:6.2f} s)"
            + (f", over {len(every)} devices {dev_run:7.2f} s" if dev_run else "")
            + f", peak RSS {rss:7.0f} MiB, mean final return {ret:.1f}")
    return rows


def describe(config) -> str:
    if config.algo == "grpo" and config.on_policy:
        return (f"GRPO on-policy, {config.num_groups} groups x {config.group_size} episodes "
                f"(time limit {config.max_episode_steps}), update_epochs "
                f"{config.update_epochs} x num_minibatches {config.num_minibatches}")
    if config.algo == "grpo":
        return (f"GRPO stream, {config.num_envs} lanes x {config.num_steps} steps, groups of "
                f"{config.group_size} (time limit {config.max_episode_steps}), update_epochs "
                f"{config.update_epochs} x num_minibatches {config.num_minibatches}")
    return (f"PPO, {config.num_envs} envs x {config.num_steps} steps, update_epochs "
            f"{config.update_epochs} x num_minibatches {config.num_minibatches}")


def markdown(tables, info, note="") -> str:
    """tables: ``[(config, rows)]``, one per algorithm."""
    platform = jax.devices()[0].platform
    default_of = lambda c: ("vmap_size=1" if resolve_vmap_size("auto", platform, c.algo) == 1
                            else "vmapped")
    config0 = tables[0][0]
    devs = tables[0][1][0].get("devices", 1)
    lines = [
        "# Sweep scaling: vmapped seeds vs sequential runs",
        "",
        f"`python -m benchmarks.sweep_scaling`: {config0.env}, {config0.iterations} iterations "
        f"per run, hidden {config0.hidden_sizes}. Wall seconds for all n runs with the "
        "compiled program reused:",
        "",
        "- sequential: one `jax.jit(make_train(config))`, compiled once, called for the n keys "
        "one after the other;",
        "- vmapped: `sweep(config, {}, n, vmap_size=None)`, all n runs in one vmapped batch;",
        "- vmap_size=1: `sweep(config, {}, n, vmap_size=1)`, one compiled program that loops over "
        "the runs (`lax.map`)" + (";" if devs > 1 else "."),
    ] + ([f"- over {devs} devices: `sweep(config, {{}}, n)` on all of the process's {devs} "
          f"{platform} devices, each device's runs vmapped; the process started with one CPU "
          "device per core (`jaxgrpo.use_cpu_cores()`, what `jaxgrpo sweep` does), and the "
          "columns before run on the first device alone (`devices=[jax.devices()[0]]`)."]
         if devs > 1 else []) + [
        "",
        "The default, `vmap_size=\"auto\"`, is "
        + ", ".join(dict.fromkeys(f"**{default_of(c)}** for {c.algo.upper()}" for c, _ in tables))
        + f" on this backend ({platform}); its column is marked (default). \"first call\" is the "
        "sweep's first call, compilation included. Peak RSS is the process's maximum resident "
        "memory after the vmapped sweep of that n (n increasing, the tables in order).",
    ]
    for config, rows in tables:
        mark = lambda name: f"{name} (default)" if name == default_of(config) else name
        over = f"over {devs} devices"
        lines += [
            "", f"## {describe(config)}", "",
            f"Sequential compile + one run: {rows[0]['seq_first']:.1f} s.", "",
            f"| runs n | sequential (s) | {mark('vmapped')} (s) | {mark('vmap_size=1')} (s) "
            + (f"| {over} (s) " if devs > 1 else "")
            + "| seq / vmapped | seq / vmap_size=1 "
            + (f"| seq / {over} " if devs > 1 else "")
            + "| first call: vmapped, vmap_size=1" + (", over" if devs > 1 else "")
            + " (s) | peak RSS (MiB) | mean final return |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if devs > 1 else ""),
        ]
        for r in rows:
            d = devs > 1 and r.get("dev_run")
            lines.append(f"| {r['n']} | {r['seq_run']:.2f} | {r['vm_run']:.2f} "
                         f"| {r['map_run']:.2f} "
                         + (f"| {r['dev_run']:.2f} " if d else "")
                         + f"| {r['seq_run'] / r['vm_run']:.2f} "
                         f"| {r['seq_run'] / r['map_run']:.2f} "
                         + (f"| {r['seq_run'] / r['dev_run']:.2f} " if d else "")
                         + f"| {r['vm_first']:.1f}, {r['map_first']:.1f}"
                         + (f", {r['dev_first']:.1f}" if d else "")
                         + f" | {r['rss']:.0f} | {r['final_return']:.1f} |")
    lines += ["", "Reading: vmapped runs move in lockstep. PPO's and the GRPO stream's "
              "iterations have a fixed length (num_steps steps of every lane, one update of a "
              "fixed size), so no run waits for another. On-policy GRPO's rollout loop runs "
              "until the longest episode of the whole vmapped batch has ended and its update's "
              "chunk loop until the largest batch is done, for every run, so vmapping makes "
              "each run wait for the slowest, while `vmap_size=1` keeps the one compilation "
              "without the wait. Treat differences under ~10% as noise."
              + (f" Over {devs} devices, each device trains its share of the runs at once: "
                 "XLA:CPU runs one program on about one core, so one device per core is what "
                 "puts the other cores to work." if devs > 1 else "")]
    lines += ["", "Machine:", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true",
                   help="tiny config, n = 2, fast compile (-O0): ~20 s, mostly compiling")
    p.add_argument("--counts", type=int, nargs="+", help="run counts (default 1 8 64; tiny 2)")
    p.add_argument("--iterations", type=int, default=10, help="iterations per run (full mode)")
    p.add_argument("--cpu-devices", type=int, help="CPU devices JAX starts with (full mode "
                   "default: one per core, jaxgrpo.use_cpu_cores; tiny mode: as JAX has them)")
    p.add_argument("--out", help="markdown file to write (full mode default "
                   "benchmarks/sweep_scaling.md; tiny mode writes only when given)")
    a = p.parse_args(argv)
    if a.cpu_devices or not a.tiny:   # before JAX starts (making a config starts it)
        use_cpu_cores(a.cpu_devices)
    if a.tiny:
        # GRPO only: the PPO table is the same code, and the suite's time is short
        configs = [GRPOConfig(total_timesteps=2000, num_groups=2, group_size=4, num_iterations=3,
                              num_steps=16, env_params={"max_steps_in_episode": 50})]
        counts, opts, out = a.counts or [2], {"xla_backend_optimization_level": 0}, a.out
    else:
        worst = 4 * 8 * 500          # the on-policy collector's most steps per iteration
        configs = [GRPOConfig(total_timesteps=a.iterations * 32 * 128),
                   GRPOConfig(on_policy=True, num_iterations=a.iterations,
                              total_timesteps=a.iterations * worst),
                   PPOConfig(total_timesteps=a.iterations * 4 * 128)]
        counts, opts = a.counts or [1, 8, 64], None
        out = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweep_scaling.md")
    info = machine()
    print(info)
    tables = []
    for config in configs:
        print(describe(config))
        tables.append((config, run(config, counts, opts)))
    emit(markdown(tables, info), out)
    return 0


def emit(md: str, out: str | None) -> None:
    """Write the report ``md`` to ``out`` (and say so), or print it when there is no ``out``."""
    if out:
        with open(out, "w") as f:
            f.write(md)
        print(f"wrote {out}")
    else:
        print(md)


if __name__ == "__main__":
    sys.exit(main())
