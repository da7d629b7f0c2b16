"""The accelerator benchmark: one command to run when a GPU or TPU is available.

    python -m benchmarks.accelerator                 # full sizes -> benchmarks/accelerator.md
    python -m benchmarks.accelerator --tiny --out X  # CPU smoke size

On CartPole-v1, in one process, for PPO and GRPO: valid env steps per second of the compiled
training program (compile excluded), compile seconds, the fraction of simulated steps that were
valid, and the device's peak memory after each point (``memory_stats()["peak_bytes_in_use"]``;
the process's peak RSS on CPU, where there is none), against

- ``num_envs`` 64 .. 65,536 (PPO: ``num_envs`` x 128 steps; GRPO: that many episodes per
  iteration, groups of 8), one seed;
- vmapped seeds 1 .. 1,024 (``jax.vmap`` of ``make_train``) at the default configs.

rejax PPO runs at the same settings when ``--rejax-python`` names a Python with rejax (e.g.
``benchmarks/.venv-rejax/bin/python``, made by ``python -m benchmarks.run``; on an accelerator
it needs a CUDA/TPU build of JAX in that environment); otherwise its column says "not run".
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
ENVS = [64, 256, 1024, 4096, 16384, 65536]
SEEDS = [1, 8, 64, 256, 1024]


def peak_memory_mib() -> tuple[float | None, str]:
    """(MiB, what): the device's peak bytes in use, else the process's peak RSS."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak"
    from benchmarks.measure import maxrss_mib
    return maxrss_mib(), "process peak RSS"


def points(tiny: bool) -> list[dict]:
    """One measurement spec (benchmarks.measure) per row."""
    envs, seeds = ([4], [2]) if tiny else (ENVS, SEEDS)
    T = 50 if tiny else 500
    short = {"env_params": {"max_steps_in_episode": T}} if tiny else {}
    steps = 16 if tiny else 128
    it = 2 if tiny else 4
    out = []
    for n in envs:
        out.append({"axis": "num_envs", "x": n, "algo": "ppo",
                    "overrides": {"num_envs": n, "num_steps": steps, "num_minibatches": 4,
                                  "total_timesteps": it * n * steps}})
        g = min(8, n)
        out.append({"axis": "num_envs", "x": n, "algo": "grpo",
                    "overrides": {"num_groups": n // g, "group_size": g, "num_iterations": it,
                                  "total_timesteps": (it + 1) * n * T, **short}})
    for s in seeds:
        out.append({"axis": "seeds", "x": s, "algo": "ppo", "seeds": s,
                    "overrides": {"num_envs": 4, "num_steps": steps,
                                  "total_timesteps": (2 if tiny else 10) * 4 * steps}})
        out.append({"axis": "seeds", "x": s, "algo": "grpo", "seeds": s,
                    "overrides": {"num_iterations": 2 if tiny else 10,
                                  "total_timesteps": (3 if tiny else 11) * 32 * T,
                                  **({"num_groups": 2, "group_size": 2} if tiny else {}),
                                  **short}})
    if tiny:   # the smoke test: one point of each axis (PPO envs, GRPO seeds)
        out = [p for p in out if (p["axis"], p["algo"]) in (("num_envs", "ppo"),
                                                            ("seeds", "grpo"))]
    return out


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


def run(tiny: bool, compiler_options=None, rejax_python: str | None = None) -> list[dict]:
    from benchmarks.measure import measure_train
    rows = []
    for p in points(tiny):
        spec = {"kind": "train", "algo": p["algo"], "env": "CartPole-v1",
                "overrides": p["overrides"], "seeds": p.get("seeds", 1),
                "compiler_options": compiler_options}
        r = measure_train(spec)
        mem, what = peak_memory_mib()
        row = {**p, "sps": r["sps"], "compile_s": r["compile_s"], "run_s": r["run_s"],
               "valid_frac": r["valid_frac"], "peak_mib": mem, "memory": what}
        if p["algo"] == "ppo" and rejax_python:
            rx = run_rejax(rejax_python, p)
            if rx:
                row["rejax_sps"] = rx.get("sps")
                row["rejax_compile_s"] = rx.get("compile_s")
        rows.append(row)
        print(f"  {p['algo']} {p['axis']}={p['x']}: {row['sps']:,.0f} steps/s, compile "
              f"{row['compile_s']:.1f} s, valid {row['valid_frac']:.2f}, {what} {mem:.0f} MiB",
              flush=True)
    return rows


def markdown(rows, info: dict, command: str) -> str:
    def f(v, spec):
        return "not run" if v is None else format(v, spec)
    lines = ["# Accelerator benchmark: CartPole-v1 throughput against num_envs and vmapped seeds",
             "", f"`{command}`; valid env steps per second of the compiled training program "
             "(compile excluded). Peak memory is the device's peak bytes in use after the point "
             "(the process's peak RSS where the device reports none).", ""]
    for axis, title in (("num_envs", "num_envs (one seed)"), ("seeds", "vmapped seeds")):
        lines += [f"## {title}", "",
                  "| algo | " + axis + " | steps/s | compile (s) | run (s) | valid fraction "
                  "| peak memory (MiB) | rejax PPO steps/s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["axis"] != axis:
                continue
            rx = f(r.get("rejax_sps"), ",.0f") if r["algo"] == "ppo" else ""
            lines.append(f"| {r['algo']} | {r['x']:,} | {r['sps']:,.0f} | {r['compile_s']:.1f} "
                         f"| {r['run_s']:.2f} | {r['valid_frac']:.3f} | {r['peak_mib']:.0f} "
                         f"| {rx} |")
        lines.append("")
    lines += ["PureJaxRL's headline for comparison: 2,048 CartPole PPO agents in about 98 s on an "
              "A100 (its setting, not re-measured here).", "", "Machine:", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke size: PPO at num_envs 4, GRPO at 2 seeds")
    p.add_argument("--out", help="markdown to write (default benchmarks/accelerator.md; with "
                   "--tiny only when given)")
    p.add_argument("--rejax-python", help="a Python with rejax installed, to run rejax PPO too")
    a = p.parse_args(argv)
    from benchmarks.measure import machine
    info = machine()
    print(info, flush=True)
    t = time.perf_counter()
    rows = run(a.tiny, {"xla_backend_optimization_level": 0} if a.tiny else None,
               a.rejax_python)
    info["benchmark_wall_s"] = f"{time.perf_counter() - t:.0f}"
    cmd = "python -m benchmarks.accelerator" + (" --tiny" if a.tiny else "")
    md = markdown(rows, info, cmd)
    out = a.out or (None if a.tiny else str(HERE / "accelerator.md"))
    if out:
        Path(out).write_text(md)
        with open(os.path.splitext(out)[0] + ".json", "w") as fh:
            json.dump({"rows": rows, "machine": info}, fh, indent=1)
        print(f"wrote {out}")
    else:
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
