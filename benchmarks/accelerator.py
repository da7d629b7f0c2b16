"""The accelerator benchmark: one command to run when a GPU or TPU is available.

    python -m benchmarks.accelerator                 # full sizes, <= 8 min -> benchmarks/accelerator.md
    python -m benchmarks.accelerator --tiny --out X  # CPU smoke size

The measurements of ``benchmarks.run``'s ``scaling`` part (the same points, tables and
targets: ``benchmarks.run.width_points``, ``seed_points``, ``scaling_tables``), at accelerator
sizes, in one process, compile excluded from every rate:

- lanes: GRPO (stream collector, ``num_envs`` = L lanes, L / 8 groups of 8) against PPO
  (``num_envs`` = L), 128 steps per lane per iteration, one seed from scratch per point: valid
  env steps/s, valid fraction, GRPO's staleness; CartPole-v1 at L = 64 .. 65,536 (GRPO and
  PPO), Acrobot-v1 at 64 .. 16,384 and Breakout-MinAtar at 64 .. 4,096 (GRPO);
- seeds: the default configs on CartPole-v1, 1 .. 1,024 seeds vmapped, and 16 and 64 GRPO
  seeds (16 PPO seeds) one after the other (``jax.lax.map``) against the same seeds vmapped;
- the wall time to a mean training return of 475 over 8 vmapped seeds, GRPO's and PPO's
  default configs (as ``benchmarks.run``'s ``peers`` part computes it).

Points run in order of priority (CartPole lanes to 4,096, GRPO's seeds to 64, CartPole's
larger lanes, PPO's seeds to 64, the time to 475, the larger seed counts, Acrobot and
Breakout lanes); a point that would end past
``--minutes`` (default 8, counted from the start of the command) is skipped and listed as
skipped. After each point: the device's peak memory so far (``memory_stats()
["peak_bytes_in_use"]``; the process's peak RSS on CPU, where there is none).

rejax PPO runs at the lanes points too when ``--rejax-python`` names a Python with rejax (e.g.
``benchmarks/.venv-rejax/bin/python``, made by ``python -m benchmarks.run``; on an accelerator
it needs a CUDA/TPU build of JAX in that environment); otherwise its table says "not run".
PureJaxRL's headline, for comparison: 2,048 CartPole PPO agents in about 98 s on an A100.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax

HERE = Path(__file__).parent
WIDTHS = (64, 256, 1024, 4096, 16384, 65536)
# per env: algorithms, repeats, env steps aimed at per point, fewest iterations, widths
ENVS = {
    "CartPole-v1": {"algos": ("grpo", "ppo"), "repeats": 1, "steps": 1_000_000,
                    "min_iters": 8, "widths": WIDTHS},
    "Acrobot-v1": {"algos": ("grpo",), "repeats": 1, "steps": 1_000_000, "min_iters": 8,
                   "widths": WIDTHS[:5]},
    # the GRPO ring holds ~10 x 128 x L observations of 400 float32: 7.8 GiB at 4,096 lanes
    "Breakout-MinAtar": {"algos": ("grpo",), "repeats": 1, "steps": 500_000, "min_iters": 2,
                         "widths": WIDTHS[:4]},
}
SEEDS = (1, 16, 64, 256, 1024)
# also run one after the other (lax.map): PPO's 4-env iterations are latency-bound on a GPU
# (~195 iterations per seed), so its sequential runs stop at 16 seeds
MAP_SEEDS = {"grpo": (16, 64), "ppo": (16,)}
SEED_STEPS = 100_000
CURVE_SEEDS, CURVE_STEPS = 8, 500_000
TINY_ENVS = {"CartPole-v1": {"algos": ("grpo", "ppo"), "repeats": 1, "steps": 256,
                             "min_iters": 2, "widths": (8,)}}


def peak_memory_mib() -> tuple[float | None, str]:
    """(MiB, what): the device's peak bytes in use, else the process's peak RSS."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak"
    from benchmarks.measure import maxrss_mib
    return maxrss_mib(), "process peak RSS"


def points(tiny: bool, compiler_options=None) -> list[dict]:
    """One measurement spec (benchmarks.measure) per point, in the order they run."""
    from benchmarks import run as R
    opts = compiler_options
    if tiny:
        return (R.width_points((8,), TINY_ENVS, tiny=True, compiler_options=opts)
                + R.seed_points((1, 2), 4096, tiny=True, algos=("grpo",), compiler_options=opts,
                                shard=False)
                + curve_points(True, opts))
    def lanes(env, lo, hi):
        return R.width_points([w for w in ENVS[env]["widths"] if lo <= w <= hi],
                              {env: ENVS[env]}, compiler_options=opts)

    def seeds(algo, lo, hi):
        # one accelerator: the seeds vmapped on it (sharding over one device is the same)
        return R.seed_points([n for n in SEEDS if lo <= n <= hi], SEED_STEPS,
                             algos=(algo,), compiler_options=opts, map_counts=MAP_SEEDS[algo],
                             shard=False)
    return (lanes("CartPole-v1", 0, 4096) + seeds("grpo", 0, 64) + lanes("CartPole-v1", 4097, 1e9)
            + seeds("ppo", 0, 64) + curve_points(False, opts) + seeds("grpo", 65, 1e9)
            + seeds("ppo", 65, 1e9) + lanes("Acrobot-v1", 0, 4096)
            + lanes("Breakout-MinAtar", 0, 4096) + lanes("Acrobot-v1", 4097, 1e9))


def curve_points(tiny: bool, compiler_options=None) -> list[dict]:
    """The default configs with 8 vmapped seeds (tiny: 2), for the time to a mean return of 475."""
    from benchmarks import run as R
    return [{"kind": "train", "axis": "curve", "env": "CartPole-v1", "algo": algo,
             "x": 2 if tiny else CURVE_SEEDS, "seeds": 2 if tiny else CURVE_SEEDS,
             "label": f"{algo} defaults, time to 475",
             "overrides": {"total_timesteps": 4096 if tiny else CURVE_STEPS,
                           **(R.tiny_overrides(algo) if tiny else {})},
             "compiler_options": compiler_options} for algo in ("grpo", "ppo")]


def run_rejax(py: str, p: dict) -> dict | None:
    ov = p["overrides"]
    spec = {"total_timesteps": ov["total_timesteps"], "num_envs": ov.get("num_envs", 4),
            "num_steps": ov.get("num_steps", 128), "seeds": p.get("seeds", 1), "key": 0}
    r = subprocess.run([py, str(HERE / "peers" / "rejax_ppo.py"), json.dumps(spec)],
                       capture_output=True, text=True, timeout=3600)
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    print(f"  rejax failed (rc {r.returncode}): {r.stderr[-500:]}", flush=True)
    return None


def run(pts: list[dict], minutes: float, rejax_python: str | None = None, start=None):
    """Measure the points in order, skipping those that would end past ``minutes`` after
    ``start`` (a ``time.perf_counter()``; default now), estimating a point at 1.5 x the longest
    so far. -> (points run, raw rows, skipped labels)."""
    from benchmarks import measure
    start = time.perf_counter() if start is None else start
    done, raw, skipped, longest = [], [], [], 0.0
    for p in pts:
        elapsed = time.perf_counter() - start
        if elapsed + 1.5 * longest > 60 * minutes:
            skipped.append(p["label"])
            print(f"  skipped {p['label']} ({elapsed:.0f} s elapsed)", flush=True)
            continue
        t = time.perf_counter()
        try:
            r = measure.measure_train(p)
        except Exception as e:  # noqa: BLE001  (out of device memory: report, go on)
            r = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        r["peak_mib"], r["memory"] = peak_memory_mib()
        if p["axis"] == "width" and p["algo"] == "ppo" and rejax_python and "error" not in r:
            rx = run_rejax(rejax_python, p)
            r["rejax_sps"] = rx and rx.get("sps")
        longest = max(longest, time.perf_counter() - t)
        done.append(p)
        raw.append(r)
        print(f"  {p['label']}: " + (r["error"] if "error" in r else
              f"{r['sps']:,.0f} steps/s, compile {r['compile_s']:.1f} s, run {r['run_s']:.2f} s, "
              f"valid {r['valid_frac']:.3f}, {r['memory']} {r['peak_mib']:.0f} MiB"), flush=True)
    return done, raw, skipped


def markdown(done, raw, skipped, info: dict, command: str) -> str:
    from benchmarks import run as R
    scaled = [(p, r) for p, r in zip(done, raw) if p["axis"] in ("width", "seeds")]
    sc = R.scaling_tables([p for p, _ in scaled], [r for _, r in scaled])
    lines = ["# Accelerator benchmark: GRPO and PPO against lanes and vmapped seeds", "",
             f"`{command}`; the points, tables and targets of `benchmarks.run`'s scaling part "
             "(benchmarks/README.md) at accelerator sizes, in one process: valid env steps per "
             "second of the compiled training program, compile excluded. Peak memory: "
             f"{raw[0].get('memory', 'n/a') if raw else 'n/a'} after the point (the maximum so "
             "far in the process).", "", "## Targets", "", "| target | status | measured |",
             "|---|---|---|"]
    lines += [f"| {t} | {s} | {n} |" for t, s, n in R.scaling_targets(sc)]
    lines += [""] + R.scaling_markdown(sc, images=False, processes="all points in one "
                                       "process, in the order of the command's docstring",
                                       memory="the device's peak bytes in use so far (the "
                                       "process's peak RSS where the device reports none)")
    rx = [(p, r) for p, r in zip(done, raw) if "rejax_sps" in r]
    lines += ["### rejax PPO at the same lanes", "", "| lanes | jaxgrpo PPO steps/s | "
              "rejax PPO steps/s |", "|---:|---:|---:|"]
    lines += [f"| {p['x']:,} | {r['sps']:,.0f} | "
              f"{'failed' if r['rejax_sps'] is None else format(r['rejax_sps'], ',.0f')} |"
              for p, r in rx] or ["| - | - | not run (`--rejax-python`) |"]
    curves = [(p, r) for p, r in zip(done, raw) if p["axis"] == "curve"]
    if curves:
        lines += ["", f"### Time to a mean training return of {R.TARGET:.0f}", "",
                  f"Default configs, {curves[0][0]['seeds']} seeds vmapped in one run, "
                  f"{curves[0][0]['overrides']['total_timesteps']:,} env steps per seed; the "
                  "hit as in benchmarks/README.md's peers part (the first iteration whose "
                  "across-seed mean training return is >= 475; its wall time assumes the run's "
                  "average steps/s).", "",
                  "| algo | steps per seed to 475 | wall s to 475 | run steps/s | final return |",
                  "|---|---:|---:|---:|---:|"]
        for p, r in curves:
            if "error" in r:
                lines.append(f"| {p['algo'].upper()} | failed | | | |")
                continue
            hs, ht = r.get("hit_steps_per_seed"), r.get("hit_time_s")
            lines.append(f"| {p['algo'].upper()} | {R.fmt_opt(hs, ',.0f')} | "
                         f"{'not reached' if ht is None else f'{ht:.1f}'} | {r['sps']:,.0f} | "
                         f"{R.fmt_opt(r.get('final_return'), '.1f')} |")
    lines += ["", "Skipped (time limit): " + (", ".join(skipped) if skipped else "none") + ".",
              "", "PureJaxRL's headline for comparison: 2,048 CartPole PPO agents in about 98 s "
              "on an A100 (its setting, not re-measured here).", "", "Machine:", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true",
                   help="CPU smoke size: 8 lanes, 2 seeds, short episodes, fast compile")
    p.add_argument("--minutes", type=float, default=8.0,
                   help="skip the points that would end later than this after the start "
                   "(default 8)")
    p.add_argument("--out", help="markdown to write (default benchmarks/accelerator.md; with "
                   "--tiny only when given); the raw numbers go beside it as .json")
    p.add_argument("--rejax-python", help="a Python with rejax installed, to run rejax PPO too")
    a = p.parse_args(argv)
    start = time.perf_counter()
    from benchmarks.measure import machine
    info = machine()
    print(info, flush=True)
    opts = {"xla_backend_optimization_level": 0} if a.tiny else None
    done, raw, skipped = run(points(a.tiny, opts), a.minutes, a.rejax_python, start)
    info["benchmark_wall_s"] = f"{time.perf_counter() - start:.0f}"
    cmd = "python -m benchmarks.accelerator" + (" --tiny" if a.tiny else "")
    md = markdown(done, raw, skipped, info, cmd)
    out = a.out or (None if a.tiny else str(HERE / "accelerator.md"))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(md)
        with open(os.path.splitext(out)[0] + ".json", "w") as fh:
            json.dump({"points": done, "rows": raw, "skipped": skipped, "machine": info}, fh,
                      indent=1, default=str)
        print(f"wrote {out}")
    else:
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
