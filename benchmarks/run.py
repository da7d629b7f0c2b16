"""jaxgrpo benchmarks: throughput, peers, the critic's cost, scaling.

    python -m benchmarks.run                         # everything -> benchmarks/README.md, results.json, *.png
    python -m benchmarks.run --tiny --no-peers       # smoke: tiny budgets, seconds after compile
    python -m benchmarks.run --parts throughput,critic --repeats 5
    python -m benchmarks.run --setup-peers           # only create the peer venvs
    python -m benchmarks.run --parts throughput,peers,critic --out-dir benchmarks/machines/DATE
                                                     # another machine's table, kept beside
    python -m benchmarks.run --render [--out-dir D]  # rewrite D/README.md from D/results.json
                                                     # (and D/text_vs_trl_pretrained.json)

Every measurement runs in a fresh subprocess (``python -m benchmarks.measure``), so compile
times are cold and the peak RSS is that measurement's own. Steps/s is *valid* env steps (real
transitions; GRPO's padding after an episode ended is not counted) divided by the wall time of
the compiled training program, compile excluded. Peers (rejax, Stable-Baselines3) run in their
own virtual environments, created here on first use (``benchmarks/.venv-rejax``,
``benchmarks/.venv-sb3``, git-ignored), with pinned versions.

Parts (``--parts``, comma-separated; default all):
- ``throughput``: GRPO and PPO (default configs) on CartPole-v1, Acrobot-v1, Breakout-MinAtar,
  and GRPO collecting on-policy (``on_policy=True``) on CartPole.
- ``peers``: CartPole PureJaxRL configuration (4 envs x 128 steps, 4 epochs x 4 minibatches,
  64x64 tanh): rejax PPO, SB3 PPO, jaxgrpo PPO, jaxgrpo GRPO at matched steps per update
  (4 lanes x 128 steps) and at its defaults; steps/s and the wall time to a mean training
  return of 475 over 8 vmapped seeds.
- ``critic``: GRPO (no critic) against PPO at matched batch: steps/s, time per phase
  (collect / score / learn) and parameter + Adam bytes.
- ``scaling``: GRPO (stream collector, ``num_envs`` = L lanes, L / 8 groups of 8) against PPO
  (``num_envs`` = L) at L = 64 .. 4,096 lanes, one seed from scratch per point: valid env
  steps/s, the valid fraction and GRPO's staleness, on CartPole-v1 and Acrobot-v1 (GRPO and
  PPO) and Breakout-MinAtar (GRPO); 1, 16 and 64 seeds of the default configs vmapped against
  the same seeds one after the other (``jax.lax.map``, one compiled program); PNG plots.
- ``text``: language-model GRPO against TRL's GRPOTrainer (``python -m benchmarks.text_vs_trl``
  in its own process, TRL in ``benchmarks/.venv-trl``; ``--no-peers``: jaxgrpo only): completion
  tokens/s of whole iterations, the learn phase's share of the matmul rate, generation against
  ``max_new_tokens`` -> text_vs_trl.md and .json in the out-dir.
- ``text-pretrained``: the same against TRL on a random 32k-vocabulary Llama checkpoint that
  both load, full fine-tuning and LoRA (``python -m benchmarks.text_vs_trl --pretrained``, about
  15 minutes on 2 cores; ``--no-peers``: jaxgrpo only, transformers and torch in this Python
  build the checkpoint) -> text_vs_trl_pretrained.md and .json in the out-dir. The README's
  subsection on it is rendered from the out-dir's text_vs_trl_pretrained.json, also when the
  script ran on its own.
- ``analysis``: the three stand-alone analyses, each in its own process:
  ``python -m benchmarks.where_time_goes`` (ablations, op counts, XLA options, lane-pool
  simulation -> where_time_goes.md), ``python -m benchmarks.sweep_scaling`` (vmapped vs
  sequential seeds in ``jaxgrpo.sweep`` -> sweep_scaling.md) and ``python -m
  benchmarks.vmap_ceiling`` (the learn phase's arithmetic alone, seeds vmapped vs sequential
  -> vmap_ceiling.md). Skipped with ``--tiny``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTS = ("throughput", "peers", "critic", "scaling", "text", "text-pretrained", "analysis")
ENVS = ("CartPole-v1", "Acrobot-v1", "Breakout-MinAtar")
TARGET = 475.0

# Peer environments: pinned versions that work together (rejax 0.1.3 needs gymnax < 1.0: its
# PPO unpacks gymnax 0.x's 5-tuple step). jax/flax/optax are pinned to the same versions as
# this project's environment so that the rejax comparison measures the libraries, not JAX.
REJAX_PINS = ["rejax==0.1.3", "gymnax==0.0.9", "jax=={jax}", "jaxlib=={jax}", "flax=={flax}",
              "optax=={optax}", "distrax==0.1.9", "chex==0.1.92"]
SB3_PINS_FIRST = ["torch==2.13.0"]          # the CPU wheel first, so pip never pulls a CUDA one
SB3_PINS = ["stable-baselines3==2.9.2", "gymnasium==1.4.0", "torch==2.13.0"]

# The "matched" GRPO: the stream collector with PPO's 4 lanes x 128 steps, so every update
# trains 512 steps as PPO's does (fewer while the pipeline fills at the start of a run: a group
# is trained once its 8 members have ended). Measured and reported each run ("steps/update").
GRPO_MATCHED = {"num_envs": 4}
GRPO_MATCHED_NAME = "jaxgrpo GRPO matched (4 lanes x 128 steps)"


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------- subprocesses

def run_json(cmd, timeout=3600, env=None) -> dict:
    """Run ``cmd``; return the JSON after its ``RESULT `` line (raise with the output if none)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            out = json.loads(line[len("RESULT "):])
            out["process_wall_s"] = time.perf_counter() - t
            return out
    raise RuntimeError(f"{' '.join(map(str, cmd[:3]))} failed (rc {p.returncode}):\n"
                       f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")


IN_PROCESS = False   # tiny mode: measure in this process (one JAX import, shared compiles)


def measure(spec, timeout=3600, path=None) -> dict:
    """One measurement; ``path``: a folder holding another ``jaxgrpo`` package to measure
    instead of the installed one (a prototype), put first on PYTHONPATH."""
    if path:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(path), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        # (python -c puts the working directory first on sys.path, ahead of PYTHONPATH)
        cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(path)!r}); "
               "import jaxgrpo; from benchmarks.measure import main; "
               "main(sys.argv[1:])", json.dumps(spec)]
        return run_json(cmd, timeout, env=env)
    if IN_PROCESS:
        from benchmarks import measure as M
        out = M.KINDS[spec.get("kind", "train")](json.loads(json.dumps(spec)))
        out["load_avg"] = loadavg()
        return out
    return run_json([sys.executable, "-m", "benchmarks.measure", json.dumps(spec)], timeout)


def repeated(spec, repeats) -> list[dict]:
    """``repeats`` fresh processes, keys 0..repeats-1."""
    return [measure({**spec, "key": k}) for k in range(repeats)]


def stats(rows, key) -> dict:
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def loadavg() -> float:
    return os.getloadavg()[0]


def mean_of(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


# ----------------------------------------------------------------------------- peer venvs

def _venv_python(path: Path) -> Path:
    return path / "bin" / "python"


def ensure_venv(path: Path, groups: list[list[str]]) -> Path:
    """Create ``path`` with the pinned packages (installed group by group, in order); reuse it
    when its marker says the same pins are installed."""
    marker = path / "pins.json"
    if marker.exists() and json.loads(marker.read_text()) == groups and _venv_python(path).exists():
        return _venv_python(path)
    log(f"creating {path.relative_to(ROOT)} ({', '.join(p for g in groups for p in g)}) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
    py = _venv_python(path)
    for g in groups:
        subprocess.run([str(py), "-m", "pip", "install", "-q", *g], check=True)
    marker.write_text(json.dumps(groups))
    return py


def rejax_python() -> Path:
    import flax
    import jax
    import optax
    pins = [p.format(jax=jax.__version__, flax=flax.__version__, optax=optax.__version__)
            for p in REJAX_PINS]
    return ensure_venv(HERE / ".venv-rejax", [pins])


def sb3_python() -> Path:
    return ensure_venv(HERE / ".venv-sb3", [SB3_PINS_FIRST, SB3_PINS])


# ----------------------------------------------------------------------------- parts

def budgets(tiny: bool) -> dict:
    if tiny:
        return {"throughput": {"CartPole-v1": 4096}, "peer_steps": 4096, "sb3_steps": 1024,
                "curve_steps": 4096, "curve_seeds": 2}
    return {"throughput": {"CartPole-v1": 500_000, "Acrobot-v1": 300_000,
                           "Breakout-MinAtar": 100_000},
            "peer_steps": 500_000, "sb3_steps": 50_000, "curve_steps": 500_000, "curve_seeds": 8}


def tiny_overrides(algo):
    """Tiny mode: small shapes and short episodes (CartPole's time limit cut to 50)."""
    if algo == "grpo":
        return {"num_groups": 2, "group_size": 2, "num_steps": 16,
                "env_params": {"max_steps_in_episode": 50}}
    return {"num_envs": 4, "num_steps": 32}


# Throughput rows beyond the default configs: GRPO's on-policy collector (each iteration runs
# num_groups x group_size fresh episodes and waits for the longest), the stream's comparison.
EXTRA_ROWS = {"CartPole-v1": [("grpo", {"on_policy": True})]}


def part_throughput(a, res):
    out = []
    for env, steps in budgets(a.tiny)["throughput"].items():
        for algo, extra in [("grpo", {}), ("ppo", {})] + EXTRA_ROWS.get(env, []):
            ov = {"total_timesteps": steps, **(tiny_overrides(algo) if a.tiny else {}), **extra}
            spec = {"kind": "train", "algo": algo, "env": env, "overrides": ov,
                    "compiler_options": a.compiler_options}
            rows = repeated(spec, a.repeats)
            row = summarize(algo, env, rows, ov)
            row["label"] = algo.upper() + "".join(f", {k}={v}" for k, v in extra.items())
            row["extra"] = extra
            out.append(row)
            log(f"  {row['label']:20s} {env:16s} {fmt_k(row['sps']['median'])} steps/s "
                f"[{fmt_k(row['sps']['min'])}, {fmt_k(row['sps']['max'])}], compile "
                f"{row['compile_s']['median']:.1f} s, valid {row['valid_frac']:.3f}, "
                f"staleness {fmt_opt(row['staleness_mean'], '.2f')}, "
                f"peak RSS {row['peak_rss_mib']['median']:.0f} MiB, load {loadavg():.1f}")
    res["throughput"] = out


def summarize(algo, env, rows, overrides) -> dict:
    valid = sum(r["valid_steps"] for r in rows)
    sim = sum(r["sim_steps"] for r in rows)
    return {"algo": algo, "env": env, "overrides": overrides, "repeats": len(rows),
            "sps": stats(rows, "sps"), "sim_sps": stats(rows, "sim_sps"),
            "compile_s": stats(rows, "compile_s"), "xla_compile_s": stats(rows, "xla_compile_s"),
            "trace_lower_s": stats(rows, "trace_lower_s"), "run_s": stats(rows, "run_s"),
            "peak_rss_mib": stats(rows, "peak_rss_mib"),
            "rss_after_import_mib": stats(rows, "rss_after_import_mib"),
            "xla_temp_mib": stats(rows, "xla_temp_mib"),
            "valid_frac": valid / sim if sim else None,
            "staleness_mean": mean_of(rows, "staleness_mean"),
            "staleness_max": max((r["staleness_max"] for r in rows
                                  if r.get("staleness_max") is not None), default=None),
            "dropped": sum(r.get("dropped") or 0 for r in rows),
            "valid_steps_per_iter": stats(rows, "valid_steps_per_iter"),
            "final_return": stats(rows, "final_return"), "load_avg": stats(rows, "load_avg"),
            "param_bytes": rows[0]["param_bytes"], "opt_bytes": rows[0]["opt_bytes"],
            "ref_bytes": rows[0]["ref_bytes"], "param_count": rows[0]["param_count"],
            "runs": rows}


def part_peers(a, res):
    b = budgets(a.tiny)
    steps, curve_steps, seeds = b["peer_steps"], b["curve_steps"], b["curve_seeds"]
    ppo_ov = {"total_timesteps": steps, **(tiny_overrides("ppo") if a.tiny else {})}
    grpo_ov = {"total_timesteps": steps, **(tiny_overrides("grpo") if a.tiny else GRPO_MATCHED)}
    grpo_def = {"total_timesteps": steps, **(tiny_overrides("grpo") if a.tiny else {})}
    jx = [("jaxgrpo PPO", "ppo", ppo_ov),
          (GRPO_MATCHED_NAME, "grpo", grpo_ov),
          ("jaxgrpo GRPO default (32 lanes x 128 steps)", "grpo", grpo_def),
          ][:2 if a.tiny else 3]
    jx = [(n, algo, ov, None) for n, algo, ov in jx]
    for vname, vpath in a.variant:   # prototypes of library changes, measured side by side
        jx += [(f"{n} [{vname}]", algo, ov, vpath) for n, algo, ov, _ in jx[:2]]
    out = {"rows": [], "curves": []}
    peers = []
    if not a.no_peers:
        peers = [("rejax PPO", rejax_python(), "rejax_ppo.py", {"total_timesteps": steps}),
                 ("SB3 PPO (torch, 1 thread)", sb3_python(), "sb3_ppo.py",
                  {"total_timesteps": b["sb3_steps"], "threads": 1})]
    # throughput: one seed, fresh process per repeat, systems interleaved per repeat so that
    # a change of machine load hits every system alike
    runs = {name: [] for name, *_ in jx + peers}
    for k in range(a.repeats):
        for name, algo, ov, path in jx:
            runs[name].append(measure({"kind": "train", "algo": algo, "env": "CartPole-v1",
                                       "overrides": ov, "key": k,
                                       "compiler_options": a.compiler_options}, path=path))
        for name, py, script, spec in peers:
            runs[name].append(run_json([str(py), str(HERE / "peers" / script),
                                        json.dumps({**spec, "key": k})]))
        log(f"  peers repeat {k + 1}/{a.repeats}: " + ", ".join(
            f"{n.split(' (')[0]} {fmt_k(r[-1]['sps'])}" for n, r in runs.items()) +
            f" steps/s, load {loadavg():.1f}")
    for name, rows in runs.items():
        out["rows"].append({"name": name, "sps": stats(rows, "sps"),
                            "compile_s": stats(rows, "compile_s"),
                            "peak_rss_mib": stats(rows, "peak_rss_mib"),
                            "steps": rows[0]["valid_steps"],
                            "valid_steps_per_iter": stats(rows, "valid_steps_per_iter"),
                            "load_avg": stats(rows, "load_avg"),
                            "versions": rows[0].get("versions"), "runs": rows})
    # learning curves: `seeds` vmapped seeds, one run each
    for name, algo, ov, path in jx:
        r = measure({"kind": "train", "algo": algo, "env": "CartPole-v1", "seeds": seeds,
                     "overrides": {**ov, "total_timesteps": curve_steps},
                     "compiler_options": a.compiler_options}, path=path)
        out["curves"].append({"name": name, **{k: r.get(k) for k in (
            "sps", "run_s", "valid_steps", "hit_iteration", "hit_steps_per_seed", "hit_time_s",
            "final_return", "best_curve", "load_avg")}})
        log(f"  curve {name}: time to {TARGET:.0f} {r.get('hit_time_s')}, final {r['final_return']:.1f}")
    if peers:
        name, py, script, _ = peers[0]
        r = run_json([str(py), str(HERE / "peers" / script),
                      json.dumps({"total_timesteps": curve_steps, "seeds": seeds})])
        out["curves"].append({"name": name, **{k: r.get(k) for k in (
            "sps", "run_s", "valid_steps", "hit_iteration", "hit_steps_per_seed", "hit_time_s",
            "final_return", "best_curve", "load_avg")}})
        log(f"  curve {name}: time to {TARGET:.0f} {r.get('hit_time_s')}, final {r['final_return']:.1f}")
        # SB3: 8 seeds run one after the other would take ~8 x steps_to_475 / its steps/s; we
        # estimate with jaxgrpo PPO's steps to 475 (same algorithm and hyperparameters)
        sb3 = next(x for x in out["rows"] if x["name"].startswith("SB3"))
        ppo = next(x for x in out["curves"] if x["name"] == "jaxgrpo PPO")
        if ppo.get("hit_steps_per_seed"):
            out["curves"].append({"name": "SB3 PPO (estimate)", "estimate": True,
                                  "hit_steps_per_seed": ppo["hit_steps_per_seed"],
                                  "hit_time_s": seeds * ppo["hit_steps_per_seed"] / sb3["sps"]["median"]})
    res["peers"] = out


def part_critic(a, res):
    steps = budgets(a.tiny)["peer_steps"]
    out = {"phases": [], "memory": []}
    # (name, algo, overrides, iterations trained first, so that GRPO's episodes have
    # mid-training lengths: 51k steps at 512 per iteration, 40 iterations of the larger batches)
    cases = [("PPO (4 envs x 128 steps)", "ppo", tiny_overrides("ppo") if a.tiny else {}, 100),
             ("GRPO matched (4 lanes x 128 steps)", "grpo",
              {**GRPO_MATCHED, **({"num_steps": 16, "env_params": {"max_steps_in_episode": 50}}
                                  if a.tiny else {})}, 100),
             ("GRPO default (32 lanes x 128 steps)", "grpo",
              tiny_overrides("grpo") if a.tiny else {}, 40),
             ("GRPO on-policy (4 groups x 8 episodes)", "grpo",
              {"on_policy": True, **(tiny_overrides("grpo") if a.tiny else {})}, 40)]
    cases = cases[:2] if a.tiny else cases
    for name, algo, ov, pretrain in cases:
        r = measure({"kind": "phases", "algo": algo, "env": "CartPole-v1",
                     "overrides": {"total_timesteps": steps, **ov},
                     "pretrain_iters": 0 if a.tiny else pretrain,
                     "inner": 2 if a.tiny else 8, "reps": 2 if a.tiny else 7,
                     "compiler_options": a.compiler_options})
        r["name"] = name
        out["phases"].append(r)
        log(f"  phases {name}: collect {r['collect_s'] * 1e3:.2f} ms, score "
            f"{r['score_s'] * 1e3:.2f} ms, learn {r['learn_s'] * 1e3:.2f} ms per iteration of "
            f"{r['valid_steps']:.0f} valid steps, load {loadavg():.1f}")
    res["critic"] = out


# ----------------------------------------------------------------------------- scaling

WIDTHS = (64, 256, 1024, 4096)      # lanes: GRPO num_envs (groups of GROUP), PPO num_envs
SEED_COUNTS = (1, 16, 64)           # seeds of the default configs: vmapped and lax.map'ed
GROUP = 8
STEPS = 128                         # num_steps of both algorithms
# Per env: the algorithms measured at every width, repeats (one process per width, the
# algorithms' runs interleaved), the env steps aimed at per point and the fewest iterations.
# Breakout-MinAtar (~10-20k steps/s here) gets half CartPole's steps, and one iteration at
# 4,096 lanes: its GRPO ring holds ~10 blocks of 128 x 4,096 observations of 400 float32
# (7.8 GiB; the process peaks near 13 GiB there).
WIDTH_ENVS = {
    "CartPole-v1": {"algos": ("grpo", "ppo"), "repeats": 3, "steps": 1_000_000, "min_iters": 4},
    "Acrobot-v1": {"algos": ("grpo", "ppo"), "repeats": 1, "steps": 1_000_000, "min_iters": 4},
    "Breakout-MinAtar": {"algos": ("grpo",), "repeats": 1, "steps": 500_000, "min_iters": 1},
}
SEED_STEPS = 100_000                # env steps per seed of the seeds points
TINY_WIDTHS = (8, 16)
TINY_WIDTH_ENVS = {"CartPole-v1": {"algos": ("grpo", "ppo"), "repeats": 2, "steps": 2048,
                                   "min_iters": 2},
                   "Acrobot-v1": {"algos": ("grpo",), "repeats": 1, "steps": 512, "min_iters": 2}}
TINY_SEED_COUNTS = (1, 2)
VALID_TARGET = 0.95                 # GRPO's valid fraction at every width
SEEDS_TARGET = 1.3                  # vmapped / sequential, 16 and 64 GRPO seeds


def width_overrides(algo, width, steps, min_iters, tiny=False) -> dict:
    """The config of one width point: ``width`` lanes stepping ``STEPS`` (tiny: 16) times per
    iteration, ``iterations * width * steps`` env steps (at least ``min_iters`` iterations, so
    that PPO, which runs whole iterations only, gets the same budget)."""
    T = 16 if tiny else STEPS
    its = max(min_iters, -(-steps // (width * T)))
    ov = {"num_envs": width, "num_steps": T, "total_timesteps": its * width * T}
    if algo == "grpo":
        ov.update(num_groups=max(1, width // GROUP), group_size=GROUP)
    if tiny:
        ov["env_params"] = {"max_steps_in_episode": 50}
    return ov


def width_points(widths=None, envs=None, tiny=False, compiler_options=None) -> list[dict]:
    """Train specs (benchmarks.measure) of the width points, in the order they run: per env and
    width, repeat k of every algorithm (keys 0..repeats-1), interleaved. Defaults: WIDTHS and
    WIDTH_ENVS (tiny: TINY_WIDTHS, TINY_WIDTH_ENVS)."""
    widths = (TINY_WIDTHS if tiny else WIDTHS) if widths is None else widths
    envs = (TINY_WIDTH_ENVS if tiny else WIDTH_ENVS) if envs is None else envs
    pts = []
    for env, e in envs.items():
        for w in widths:
            for k in range(e["repeats"]):
                for algo in e["algos"]:
                    pts.append({"kind": "train", "axis": "width", "env": env, "x": w,
                                "algo": algo, "key": k, "label": f"{algo} {env} L={w} key={k}",
                                "overrides": width_overrides(algo, w, e["steps"], e["min_iters"],
                                                             tiny),
                                "compiler_options": compiler_options})
    return pts


def seed_points(counts=SEED_COUNTS, steps=SEED_STEPS, tiny=False, algos=("grpo", "ppo"),
                compiler_options=None, map_counts=None, shard=True) -> list[dict]:
    """Train specs of the seeds points: each algorithm's default config on CartPole-v1 with
    ``steps`` env steps per seed; one seed alone, then each larger count vmapped on one device,
    the same keys one after the other (``seeds_mode`` "map": ``jax.lax.map``) and, with
    ``shard``, vmapped and sharded over the devices as ``jaxgrpo.sweep`` runs them ("shard"; on
    a CPU the process gets one device per core, ``part_scaling``); ``map_counts``: the counts
    measured sequentially too (default all)."""
    pts = []
    for algo in algos:
        ov = {"total_timesteps": steps, **(tiny_overrides(algo) if tiny else {})}
        for n in counts:
            modes = ["single"] if n == 1 else ["vmap"] + (["map"] if (
                map_counts is None or n in map_counts) else []) + (["shard"] if shard else [])
            for mode in modes:
                pts.append({"kind": "train", "axis": "seeds", "env": "CartPole-v1", "x": n,
                            "algo": algo, "seeds": n, "seeds_mode": "vmap" if n == 1 else mode,
                            "mode": mode, "label": f"{algo} seeds={n} {mode}", "overrides": ov,
                            "compiler_options": compiler_options})
    return pts


ROW_KEYS = ("sps", "sim_sps", "valid_frac", "valid_steps", "sim_steps", "compile_s", "run_s",
            "iterations", "staleness_mean", "staleness_max", "dropped", "final_return",
            "peak_rss_mib", "load_avg", "peak_mib", "memory", "devices", "error")


def scaling_tables(points, raw) -> dict:
    """The width and seeds tables from the points and their raw measurements (same order; a
    raw row with ``error`` failed): {"widths": [per env, width, algo], "seeds": [per algo,
    count, mode]}."""
    widths, seeds = {}, []
    for p, r in zip(points, raw):
        r = {k: r.get(k) for k in ROW_KEYS if r.get(k) is not None}
        if p["axis"] == "width":
            widths.setdefault((p["env"], p["x"], p["algo"]), (p, []))[1].append(r)
        else:
            seeds.append({"algo": p["algo"], "seeds": p["x"], "mode": p["mode"],
                          "overrides": p["overrides"], **r})
    out = []
    for (env, w, algo), (p, rows) in widths.items():
        ok = [r for r in rows if "error" not in r]
        valid, sim = sum(r["valid_steps"] for r in ok), sum(r["sim_steps"] for r in ok)
        out.append({"env": env, "width": w, "algo": algo, "overrides": p["overrides"],
                    "repeats": len(ok), "sps": stats(ok, "sps"), "sim_sps": stats(ok, "sim_sps"),
                    "valid_frac": valid / sim if sim else None,
                    "staleness_mean": mean_of(ok, "staleness_mean"),
                    "staleness_max": max((r["staleness_max"] for r in ok
                                          if r.get("staleness_max") is not None), default=None),
                    "dropped": sum(r.get("dropped") or 0 for r in ok),
                    "compile_s": stats(ok, "compile_s"), "run_s": stats(ok, "run_s"),
                    "valid_steps": ok[0]["valid_steps"] if ok else None,
                    "final_return": stats(ok, "final_return"),
                    "peak_rss_mib": ok[0].get("peak_rss_mib") if ok else None,
                    "peak_mib": ok[0].get("peak_mib") if ok else None,
                    "memory": ok[0].get("memory") if ok else None,
                    "error": next((r["error"] for r in rows if "error" in r), None),
                    "runs": rows})
    return {"widths": out, "seeds": seeds}


def width_pairs(sc):
    """{(env, width): {algo: row}} of the width table."""
    pairs = {}
    for r in sc["widths"]:
        pairs.setdefault((r["env"], r["width"]), {})[r["algo"]] = r
    return pairs


def paired_ratios(g, p):
    """GRPO / PPO steps/s per repeat (repeat k of both ran back to back in one process)."""
    return [a["sps"] / b["sps"] for a, b in zip(g["runs"], p["runs"])
            if a.get("sps") and b.get("sps")]


def seed_speedups(sc) -> dict:
    """{(algo, n): {mode: row, "vmap_x": vmapped steps/s / sequential steps/s, "shard_x":
    vmapped-and-sharded steps/s / sequential (None when not measured)}} for each n measured
    vmapped and sequentially."""
    by = {(r["algo"], r["seeds"], r["mode"]): r for r in sc["seeds"]}
    ratio = lambda a, b: a["sps"] / b["sps"] if a and a.get("sps") and b.get("sps") else None
    out = {}
    for (algo, n, mode), v in by.items():
        m, sh = by.get((algo, n, "map")), by.get((algo, n, "shard"))
        if mode == "vmap" and ratio(v, m) is not None:
            out[(algo, n)] = {"vmap": v, "map": m, "shard": sh, "vmap_x": ratio(v, m),
                              "shard_x": ratio(sh, m)}
    return out


def seeds_verdict(d) -> float:
    """The ratio a GRPO seeds target is judged by: vmapped and sharded over the devices (how
    ``jaxgrpo.sweep`` runs seeds; on a CPU, one device per core) when measured, else vmapped
    on one device."""
    return d["vmap_x"] if d["shard_x"] is None else d["shard_x"]


def part_scaling(a, res):
    opts = a.compiler_options
    wp = width_points(tiny=a.tiny, compiler_options=opts)
    from jaxgrpo.cores import usable_cores
    sp = seed_points(counts=TINY_SEED_COUNTS if a.tiny else SEED_COUNTS,
                     steps=4096 if a.tiny else SEED_STEPS, tiny=a.tiny, compiler_options=opts,
                     shard=usable_cores() > 1)     # one core: nothing to spread the seeds over
    # one process per (env, width) and per seeds algorithm: its points compile once each, and
    # the repeats of GRPO and PPO alternate
    groups = {}
    for p in wp + sp:
        groups.setdefault((p["axis"], p["env"], p["x"] if p["axis"] == "width" else p["algo"]),
                          []).append(p)
    points, raw = [], []
    for (axis, env, x), pts in groups.items():
        t = time.perf_counter()
        # the seeds processes: one CPU device per core, for "shard" (the other modes use one)
        cpu = {"cpu_devices": usable_cores()} if axis == "seeds" else {}
        try:
            rows = measure({"kind": "scaling", "points": pts, **cpu})["rows"]
        except (RuntimeError, subprocess.TimeoutExpired) as e:   # e.g. out of memory
            rows = [{"error": str(e)[-400:]}] * len(pts)
            log(f"  FAILED {axis} {env} {x}: {str(e)[-400:]}")
        points += pts
        raw += rows
        for p, r in zip(pts, rows):
            if "error" not in r:
                log(f"  {p['label']:34s} {fmt_k(r['sps'])} steps/s, valid {r['valid_frac']:.3f}, "
                    f"staleness {fmt_opt(r.get('staleness_mean'), '.2f')}, compile "
                    f"{r['compile_s']:.1f} s, run {r['run_s']:.1f} s")
        log(f" scaling {axis} {env} {x}: {time.perf_counter() - t:.0f} s, load {loadavg():.1f}")
    sc = scaling_tables(points, raw)
    sc["settings"] = {"widths": list(TINY_WIDTHS if a.tiny else WIDTHS),
                      "width_envs": TINY_WIDTH_ENVS if a.tiny else WIDTH_ENVS,
                      "seed_counts": list(TINY_SEED_COUNTS if a.tiny else SEED_COUNTS),
                      "seed_steps": 4096 if a.tiny else SEED_STEPS, "group_size": GROUP}
    res["scaling"] = sc
    if a.outdir is not None:
        plot_scaling(sc, a.outdir)


# ----------------------------------------------------------------------------- output

def fmt_k(v):
    if v is None:
        return "n/a"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def fmt_opt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def plot_scaling(sc, outdir: Path):
    """scaling_envs.png: valid env steps/s against lanes (GRPO solid, PPO dashed, one colour per
    env); scaling_seeds.png: all seeds' steps/s against seeds, vmapped and sequential."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    envs = list(dict.fromkeys(r["env"] for r in sc["widths"]))
    for i, env in enumerate(envs):
        for algo, style in (("grpo", "o-"), ("ppo", "s--")):
            pts = sorted((r["width"], r["sps"]["median"]) for r in sc["widths"]
                         if r["env"] == env and r["algo"] == algo and r["sps"]["median"])
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{i}", label=f"{algo.upper()} {env}")
    _save_loglog(fig, ax, "lanes (GRPO num_envs, groups of 8; PPO num_envs), 128 steps each",
                 "valid env steps / s", "steps/s against lanes, one seed from scratch",
                 outdir / "scaling_envs.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, algo in enumerate(dict.fromkeys(r["algo"] for r in sc["seeds"])):
        for modes, style, name in ((("single", "vmap"), "o-", "vmapped"),
                                   (("single", "map"), "x--", "sequential (lax.map)"),
                                   (("single", "shard"), "^:", "vmapped over the devices")):
            pts = sorted((r["seeds"], r["sps"]) for r in sc["seeds"]
                         if r["algo"] == algo and r["mode"] in modes and r.get("sps"))
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{i}", label=f"{algo.upper()} {name}")
    _save_loglog(fig, ax, "seeds (default configs, CartPole-v1)",
                 "valid env steps / s (all seeds)",
                 "steps/s against seeds in one compiled program", outdir / "scaling_seeds.png")


def _save_loglog(fig, ax, xlabel, ylabel, title, path):
    """Log-log axes (x base 2), labels, grid and legend of a scaling plot; saved and closed."""
    import matplotlib.pyplot as plt
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def check_targets(res) -> list[tuple[str, str, str]]:
    """(target, met?, numbers) for the targets in the issue."""
    out = []
    peers = {r["name"]: r for r in res.get("peers", {}).get("rows", [])}
    jp = peers.get("jaxgrpo PPO")
    # the matched GRPO row (its name gives its shape, which changed with the stream collector)
    matched = lambda tag="": next((r for n, r in peers.items() if n.startswith(
        "jaxgrpo GRPO matched") and (n.endswith(f" [{tag}]") if tag else not n.endswith("]"))),
        None)
    gm = matched()
    rx = peers.get("rejax PPO")
    sb = next((r for n, r in peers.items() if n.startswith("SB3")), None)
    med = lambda r: r["sps"]["median"]
    yn = lambda ok: "met" if ok else "NOT met"
    variants = sorted({n[n.index("[") + 1:-1] for n in peers if n.endswith("]")})

    def ratios(tag, ppo, grpo, ppo_label):
        """The three speed-ratio targets of one jaxgrpo package (the library or a variant)."""
        for name, num, den, target, digits in (
                (f"{tag}jaxgrpo PPO >= 1.2x rejax PPO{ppo_label}", ppo, rx, 1.2, 2),
                (f"{tag}jaxgrpo GRPO >= 1.3x jaxgrpo PPO (matched batch)", grpo, ppo, 1.3, 2),
                (f"{tag}jaxgrpo PPO >= 30x SB3 PPO", ppo, sb, 30, 1)):
            if num and den:
                q = med(num) / med(den)
                # repeats are interleaved (repeat k of every system ran back to back): paired
                per = [a["sps"] / b["sps"] for a, b in zip(num.get("runs", []), den.get("runs", []))]
                per = f"; per repeat {', '.join(f'{x:.{digits}f}' for x in per)}" if per else ""
                out.append((name, yn(q >= target),
                            f"{q:.{digits}f}x ({fmt_k(med(num))} vs {fmt_k(med(den))} steps/s"
                            f"{per})"))

    for v in variants:
        ratios(f"[{v}] ", peers.get(f"jaxgrpo PPO [{v}]"), matched(v), "")
    ratios("", jp, gm, " (identical config)")
    if isinstance(res.get("scaling"), dict):    # (a list: the old sweeps, no such targets)
        out += scaling_targets(res["scaling"])
    text = res.get("text") or {}
    for w in text.get("widths", []):
        j, t = w["jax"], w.get("trl")
        if t:
            q = j["tokens_per_s"] / t["tokens_per_s"]
            out.append((f"text, width {w['width']}: jaxgrpo >= 3x TRL completion tokens/s",
                        yn(q >= 3), f"{q:.2f}x ({fmt_k(j['tokens_per_s'])} vs "
                        f"{fmt_k(t['tokens_per_s'])} tokens/s)"))
        share = j["learn_gflops"] / text["matmul_gflops"]
        out.append((f"text, width {w['width']}: learn phase >= 50% of the matmul rate",
                    yn(share >= 0.5), f"{100 * share:.0f}% ({j['learn_gflops']:.0f} of "
                    f"{text['matmul_gflops']:.0f} GFLOP/s)"))
    for r in res.get("throughput", []):
        if r["env"] == "CartPole-v1" and not r.get("extra"):
            c = r["compile_s"]
            out.append((f"{r['algo'].upper()} CartPole compile < 10 s", yn(c["median"] < 10),
                        f"{c['median']:.1f} s [{c['min']:.1f}, {c['max']:.1f}] (trace+lower "
                        f"{r['trace_lower_s']['median']:.1f} s, XLA {r['xla_compile_s']['median']:.1f} s)"))
    return out


def scaling_targets(sc) -> list[tuple[str, str, str]]:
    """The scaling targets: GRPO's valid fraction >= 0.95 at every width of every env, GRPO's
    steps/s >= PPO's at every CartPole width, vmapped GRPO seeds >= 1.3x sequential."""
    out = []
    yn = lambda ok: "met" if ok else "NOT met"
    for env in dict.fromkeys(r["env"] for r in sc["widths"]):
        rows = sorted((r for r in sc["widths"] if r["env"] == env and r["algo"] == "grpo"),
                      key=lambda r: r["width"])
        if not rows:
            continue
        vf = [r["valid_frac"] for r in rows]
        ok = all(v is not None and v >= VALID_TARGET for v in vf)
        out.append((f"GRPO {env}: valid fraction >= {VALID_TARGET} at "
                    f"{', '.join(format(r['width'], ',') for r in rows)} lanes", yn(ok),
                    "; ".join(f"{r['width']:,}: " + ("failed" if v is None else f"{v:.3f}")
                              for r, v in zip(rows, vf)) + " (whole runs from scratch)"))
    pairs = {k: v for k, v in sorted(width_pairs(sc).items())
             if k[0] == "CartPole-v1" and "grpo" in v and "ppo" in v}
    if pairs:
        cells, ok = [], True
        for (env, w), d in pairs.items():
            g, p = d["grpo"]["sps"]["median"], d["ppo"]["sps"]["median"]
            if g is None or p is None:
                cells.append(f"{w:,}: failed")
                ok = False
                continue
            ok &= g >= p
            cells.append(f"{w:,}: {g / p:.2f}x")
        out.append(("GRPO >= PPO valid env steps/s on CartPole-v1 at "
                    f"{', '.join(f'{w:,}' for _, w in pairs)} lanes", yn(ok),
                    "; ".join(cells) + " (medians of the repeats)"))
    for (algo, n), d in sorted(seed_speedups(sc).items()):
        if algo == "grpo":
            v, m, sh = d["vmap"], d["map"], d["shard"]
            one = f"{d['vmap_x']:.2f}x ({fmt_k(v['sps'])} vs {fmt_k(m['sps'])} steps/s)"
            out.append((f"{n} vmapped GRPO seeds >= {SEEDS_TARGET}x the same seeds sequential "
                        "(lax.map)", yn(seeds_verdict(d) >= SEEDS_TARGET),
                        one + " on one device" if sh is None else
                        f"{d['shard_x']:.2f}x vmapped over {sh.get('devices', '?')} devices, "
                        f"as jaxgrpo.sweep runs them ({fmt_k(sh['sps'])} vs {fmt_k(m['sps'])} "
                        f"steps/s); vmapped on one device {one}"))
    return out


SCALING_PROCESSES = ("one process per env and width, the repeats of GRPO and PPO alternating "
                     "(keys 0..n-1); one process per algorithm for the seeds")


def scaling_markdown(sc, images=True, processes=SCALING_PROCESSES,
                     memory="the process's peak RSS after GRPO's first run (it runs first)",
                     ceiling=None) -> list[str]:
    """The scaling section's lines: the width table and the seeds table. ``processes``: how
    the points were spread over processes; ``memory``: what the peak memory column is;
    ``ceiling``: the link to vmap_ceiling.md (none: not mentioned)."""
    L = []
    if images:
        L += ["![steps/s against lanes](scaling_envs.png) "
              "![steps/s against seeds](scaling_seeds.png)", ""]
    set_ = sc.get("settings", {})
    L += ["### Lanes: GRPO and PPO at the same number of parallel envs", "",
          f"GRPO: the stream collector, `num_envs` = L lanes, `num_groups` = L / {GROUP}, "
          f"`group_size` {GROUP}; PPO: `num_envs` = L; both {STEPS} steps per lane per iteration "
          "(`num_steps`), 4 epochs x 4 minibatches, their other settings the defaults. Each "
          "point: one seed trained from scratch for the env steps shown (whole iterations, the "
          "same for both), compile excluded; " + processes + "; medians [min, max] over "
          "repeats. valid: valid env steps / "
          "simulated steps over the whole run (>= 0.95 is the target). staleness: GRPO's "
          "`staleness/mean` (updates between sampling a step and training it) averaged over the "
          "iterations, and the run's `staleness/max`. dropped: steps the ring overwrote before "
          "they were trained. Peak memory: " + memory + ". While a run fills its pipeline "
          "(a group is trained once its last member has ended) GRPO's first iterations train "
          "fewer steps than they simulate and count no staleness, so the shortest runs (the "
          "widest points: a few iterations of 128 steps, against Acrobot's 500-step early "
          "episodes) are mostly fill.",
          "", "| env | lanes | env steps | repeats | GRPO steps/s | PPO steps/s | GRPO / PPO "
          "| GRPO >= PPO | GRPO valid | GRPO staleness mean, max | dropped | compile s "
          "GRPO, PPO | GRPO peak memory MiB |",
          "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for (env, w), d in width_pairs(sc).items():
        g, p = d.get("grpo"), d.get("ppo")

        def sps(r):
            if r is None:
                return "not run"
            s = r["sps"]
            if s["median"] is None:
                return "failed"
            return (f"{fmt_k(s['median'])} [{fmt_k(s['min'])}, {fmt_k(s['max'])}]"
                    if s["n"] > 1 else fmt_k(s["median"]))
        ratio = verdict = "-"
        if g and p and g["sps"]["median"] and p["sps"]["median"]:
            q = g["sps"]["median"] / p["sps"]["median"]
            per = paired_ratios(g, p)
            ratio = f"{q:.2f}x" + (f" ({', '.join(f'{x:.2f}' for x in per)})"
                                   if len(per) > 1 else "")
            verdict = "met" if q >= 1 else "NOT met"
        first = g or p
        vf = g and g["valid_frac"]
        mem = first.get("peak_rss_mib") if g else None
        if g and g.get("peak_mib") is not None:
            mem = g["peak_mib"]
        L.append(f"| {env} | {w:,} | {fmt_opt(first.get('valid_steps'), ',.0f')} | "
                 f"{first['repeats']} | {sps(g)} | {sps(p)} | {ratio} | {verdict} | "
                 + ("-" if not g else "failed" if vf is None else
                    f"{vf:.3f} {'met' if vf >= VALID_TARGET else 'NOT met'}") + " | "
                 + (f"{fmt_opt(g['staleness_mean'], '.2f')}, {fmt_opt(g['staleness_max'], '.0f')}"
                    if g else "-") + f" | {fmt_opt(g and g['dropped'], ',.0f')} | "
                 f"{fmt_opt(g and g['compile_s']['median'], '.1f')}, "
                 f"{fmt_opt(p and p['compile_s']['median'], '.1f')} | {fmt_opt(mem, ',.0f')} |")
    errs = [r for r in sc["widths"] if r.get("error")]
    if errs:
        L += [""] + [f"Failed: {r['algo'].upper()} {r['env']} at {r['width']:,} lanes: "
                     f"`{r['error'].strip().splitlines()[-1][:200]}`" for r in errs]
    sp = seed_speedups(sc)
    if sc["seeds"]:
        steps = set_.get("seed_steps")
        sharded = any(r["mode"] == "shard" for r in sc["seeds"])
        devices = next((r.get("devices") for r in sc["seeds"] if r["mode"] == "shard"), None)
        L += ["", "### Seeds: vmapped against one after the other", "",
              "Each algorithm's default config on CartPole-v1 (GRPO: 32 lanes, groups of 8, "
              "stream collector; PPO: 4 envs), "
              + (f"{steps:,} env steps per seed, " if steps else "")
              + "seed keys `split(key(0), n)`. sequential: `jit(lambda keys: lax.map(train, "
              "keys))`, the runs one after the other in one compiled program; vmapped: "
              "`jit(vmap(train))` over the n keys on one device"
              + ("; over the devices: the same vmapped runs sharded over the process's "
                 f"{devices or '?'} devices (`shard_map`, as `jaxgrpo.sweep` runs them; on a "
                 "CPU the seeds process starts with one device per core, "
                 "`jaxgrpo.use_cpu_cores`)" if sharded else "")
              + ". steps/s: valid env steps of all seeds per second of the run, compile "
              "excluded; one run each. Target: GRPO's seeds vmapped >= "
              f"{SEEDS_TARGET}x sequential"
              + (" (judged over the devices)" if sharded else "") + "."
              + (" What vmapping can buy on one device at each default config's minibatch size "
                 "on this machine, the learn phase's arithmetic alone: "
                 f"[vmap_ceiling.md]({ceiling})." if ceiling else ""),
              "", "| algo | seeds | sequential steps/s | vmapped steps/s | vmapped / sequential "
              + ("| over the devices steps/s | over the devices / sequential " if sharded else "")
              + f"| >= {SEEDS_TARGET}x | run s sequential, vmapped{', over' if sharded else ''}"
              f" | compile s sequential, vmapped{', over' if sharded else ''} | valid | "
              "staleness mean | final return |",
              "|---|---:|---:|---:|---:|" + ("---:|---:|" if sharded else "")
              + "---|---:|---:|---:|---:|---:|"]
        x = lambda q: "-" if q is None else f"{q:.2f}x"
        for r in sc["seeds"]:
            algo, n = r["algo"], r["seeds"]
            if r["mode"] in ("map", "shard"):
                continue
            if r.get("error"):
                L.append(f"| {algo.upper()} | {n} | | failed |" + " |" * (9 if sharded else 7))
                continue
            d = sp.get((algo, n), {"vmap": r, "map": None, "shard": None, "vmap_x": None,
                                   "shard_x": None})
            v, m, sh = d["vmap"], d["map"], d["shard"]
            single = r["mode"] == "single"
            q = None if d["vmap_x"] is None else seeds_verdict(d)
            runs = [m, v] + ([sh] if sharded else [])
            cell = lambda key, spec: ", ".join(fmt_opt(a and a.get(key), spec) for a in runs)
            L.append(f"| {algo.upper()} | {n} | "
                     + ("(the same run)" if single else fmt_k(m and m.get("sps")) if m
                        else "not run") + f" | {fmt_k(v['sps'])} | {x(d['vmap_x'])} | "
                     + (f"{fmt_k(sh and sh.get('sps')) if sh else '-'} | {x(d['shard_x'])} | "
                        if sharded else "")
                     + ("-" if q is None or algo != "grpo" else
                        "met" if q >= SEEDS_TARGET else "NOT met") + " | "
                     f"{cell('run_s', '.1f')} | {cell('compile_s', '.1f')} | "
                     f"{fmt_opt(v.get('valid_frac'), '.3f')} | "
                     f"{fmt_opt(v.get('staleness_mean'), '.2f')} | "
                     f"{fmt_opt(v.get('final_return'), '.1f')} |")
    return L + [""]


def markdown(res, outdir: Path | None = None) -> str:
    """The README of ``res``; links to benchmarks/' hand-written and generated companions are
    relative to ``outdir`` (where the README goes; default benchmarks/)."""
    m = res["machine"]
    rel = Path(os.path.relpath(HERE, outdir)) if outdir is not None else Path(".")
    link = lambda name: (rel / name).as_posix()
    cmd = "python -m benchmarks.run"
    if outdir is not None and Path(outdir).resolve() != HERE:
        parts = res.get("parts", list(PARTS))
        cmd += ("" if list(parts) == list(PARTS) else f" --parts {','.join(parts)}") + \
            f" --out-dir {os.path.relpath(outdir, ROOT)}"
    L = ["# jaxgrpo benchmarks", "",
         f"Generated by `{cmd}` (raw numbers in `results.json`); do not edit by "
         "hand. Steps/s: valid env steps (real transitions) per second of the compiled training "
         "program, compile excluded; median [min, max] over fresh processes, one run each.", "",
         f"**Machine:** {m['cpu']}"
         + (f" (CPU flags: {', '.join(m['isa']) or 'none of those checked'})"
            if m.get("isa") is not None else "") +
         f", {m['cores']} cores, {m['device']}; Python {m['python']}, "
         f"jax {m['jax']}, flax {m['flax']}, optax {m['optax']}, gymnax {m['gymnax']}. "
         f"Load average (1 min) {res['load_start']:.1f} at start, {res['load_end']:.1f} at end. "
         + "".join(f"Parts {', '.join(m['parts'])} measured in a later run (load {m['load_start']:.1f}). "
                   for m in res.get("merged", [])) +
         f"(other work was running on this shared machine: absolute numbers are noisy, "
         f"ratios measured side by side are the more reliable). "
         f"{'TINY MODE (smoke test budgets, numbers meaningless).' if res['tiny'] else ''}", "",
         f"Where the time goes and what would close the remaining gaps: [FINDINGS.md]({link('FINDINGS.md')}) "
         "(hand-written, from the numbers here and in the generated "
         f"[where_time_goes.md]({link('where_time_goes.md')}), "
         f"[sweep_scaling.md]({link('sweep_scaling.md')}) and "
         f"[vmap_ceiling.md]({link('vmap_ceiling.md')}), "
         "which the `analysis` part regenerates). Rows in brackets, "
         "if any, measure a prototype copy of the package (`--variant NAME=PATH`); a variant's "
         "GRPO target row divides by that variant's own PPO.", ""]
    if res.get("targets"):
        L += ["## Targets", "", "| target | status | measured |", "|---|---|---|"]
        L += [f"| {t} | {s} | {n} |" for t, s, n in res["targets"]]
        L += [""]
    if res.get("throughput"):
        L += ["## Throughput (default configs)", "",
              "| algo | env | env steps | steps/s | compile s | peak RSS MiB | XLA temp MiB "
              "| valid/simulated | staleness | final return | params (+Adam) bytes | load |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["throughput"]:
            s, c, p = r["sps"], r["compile_s"], r["peak_rss_mib"]
            L.append(f"| {r.get('label', r['algo'].upper())} | {r['env']} | "
                     f"{r['overrides']['total_timesteps']:,} | "
                     f"{fmt_k(s['median'])} [{fmt_k(s['min'])}, {fmt_k(s['max'])}] | "
                     f"{c['median']:.1f} [{c['min']:.1f}, {c['max']:.1f}] | "
                     f"{p['median']:.0f} [{p['min']:.0f}, {p['max']:.0f}] | "
                     f"{r['xla_temp_mib']['median']:.2f} | {r['valid_frac']:.3f} | "
                     f"{fmt_opt(r.get('staleness_mean'), '.2f')} | "
                     f"{r['final_return']['median']:.1f} | {r['param_bytes']:,} (+{r['opt_bytes']:,}) | "
                     f"{r['load_avg']['median']:.1f} |")
        L += ["", f"{res['throughput'][0]['repeats']} repeats per row (seeds 0..n-1). Peak RSS: "
              "`ru_maxrss` of the measuring process (includes the Python/JAX baseline of about "
              f"{res['throughput'][0]['rss_after_import_mib']['median']:.0f} MiB after import, "
              "and the compiler's peak). XLA temp: the compiled program's scratch buffers "
              "(`compiled.memory_analysis()`). valid/simulated: sum of valid env steps / sum of "
              "simulated steps over all runs (GRPO's default stream collector starts a lane's "
              "next episode as soon as its episode ends; `on_policy=True` keeps stepping a "
              "batch until its longest episode ends, its finished lanes idling; PPO never "
              "pads). staleness: GRPO's `staleness/mean` (updates between sampling a step and "
              "training it) averaged over iterations; 0 on-policy. The stream runs "
              "ceil(budget / (num_envs x num_steps)) iterations and on-policy GRPO runs while "
              "the env steps used are below the budget, so their step counts end a little "
              "above it.", ""]
    pe = res.get("peers")
    if pe:
        jp = next((r for r in pe["rows"] if r["name"] == "jaxgrpo PPO"), None)
        L += ["## Peers: CartPole-v1, PureJaxRL configuration", "",
              "4 envs x 128 steps per update, 4 epochs x 4 minibatches, 64x64 tanh actor and "
              "critic, lr 2.5e-4, one seed per process; systems interleaved per repeat.", "",
              "| system | env steps | steps/s | vs jaxgrpo PPO | compile s | peak RSS MiB | steps/update |",
              "|---|---:|---:|---:|---:|---:|---:|"]
        for r in pe["rows"]:
            s = r["sps"]
            ratio = s["median"] / jp["sps"]["median"] if jp else float("nan")
            spu = r["valid_steps_per_iter"]["median"] if r["valid_steps_per_iter"]["n"] else 512
            comp = r["compile_s"]["median"]
            L.append(f"| {r['name']} | {int(r['steps']):,} | {fmt_k(s['median'])} [{fmt_k(s['min'])}, "
                     f"{fmt_k(s['max'])}] | {ratio:.3f} | {'-' if comp is None else f'{comp:.1f}'} | "
                     f"{r['peak_rss_mib']['median']:.0f} | {spu:.0f} |")
        L += ["", "Time to a mean training return of 475 over 8 seeds (one run with the seeds "
              "vmapped, 500k steps per seed; compile excluded):", "",
              "| system | steps per seed to 475 | wall s to 475 | 8-seed run steps/s | final return |",
              "|---|---:|---:|---:|---:|"]
        for c in pe["curves"]:
            t = c.get("hit_time_s")
            hs = c.get("hit_steps_per_seed")
            L.append(f"| {c['name']} | {'-' if hs is None else f'{hs:,.0f}'} | "
                     f"{'not reached' if t is None else f'{t:.1f}'} | "
                     f"{'-' if c.get('sps') is None else fmt_k(c['sps'])} | "
                     f"{'-' if c.get('final_return') is None else format(c['final_return'], '.1f')} |")
        L += ["", "How: per iteration, each seed's training return (jaxgrpo: mean return of the "
              "episodes that ended in the iteration, carried forward through iterations where "
              "none ended; rejax: a gymnax `LogWrapper`'s `returned_episode_returns` averaged "
              "over the 4 envs) is averaged across the 8 seeds; the first iteration where that "
              "mean is >= 475 is the hit. Its wall time = (env steps of all seeds up to and "
              "including that iteration) / (the 8-seed run's total env steps) x the run's wall "
              "time, i.e. the run's average steps/s is assumed to hold throughout. SB3 is an "
              "estimate: 8 sequential runs of jaxgrpo PPO's steps-to-475 (same algorithm and "
              "hyperparameters) at SB3's measured steps/s.", ""]
        vers = [r for r in pe["rows"] if r.get("versions")]
        if vers:
            L += ["Peer versions: " + "; ".join(
                f"{r['name']}: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items())
                for r in vers) + ".", ""]
    cr = res.get("critic")
    if cr:
        L += ["## What no critic buys (GRPO vs PPO)", "",
              "One iteration's phases, each jitted alone and timed inside a `lax.scan` (params "
              "and env carry after a short training, so GRPO episodes have mid-training "
              "lengths; the stream's collect includes scoring the groups that ended and taking "
              "the oldest scored steps from its ring). valid steps: steps simulated by lanes "
              "running an episode; trained: the samples the learn phase trains:", "",
              "| case | valid steps / iter | trained / iter | collect ms | score ms | learn ms "
              "| us / valid step (collect, score, learn) |", "|---|---:|---:|---:|---:|---:|---|"]
        for r in cr["phases"]:
            u = r["us_per_valid_step"]
            L.append(f"| {r['name']} | {r['valid_steps']:.0f} | "
                     f"{fmt_opt(r.get('trained_steps'), '.0f')} | {r['collect_s'] * 1e3:.2f} | "
                     f"{r['score_s'] * 1e3:.2f} | {r['learn_s'] * 1e3:.2f} | "
                     f"{u['collect']:.2f}, {u['score']:.2f}, {u['learn']:.2f} |")
        mem = {r["algo"]: r for r in res.get("throughput", [])
               if r["env"] == "CartPole-v1" and not r.get("extra")}
        if mem:
            L += ["", "Parameter and optimizer memory (CartPole, float32, from the TrainState "
                  "pytrees; Adam keeps two moments per parameter):", "",
                  "| algo | parameters | param bytes | Adam bytes | reference policy bytes | total |",
                  "|---|---:|---:|---:|---:|---:|"]
            for algo, r in sorted(mem.items()):
                tot = r["param_bytes"] + r["opt_bytes"] + r["ref_bytes"]
                L.append(f"| {algo.upper()} | {r['param_count']:,} | {r['param_bytes']:,} | "
                         f"{r['opt_bytes']:,} | {r['ref_bytes']:,} | {tot:,} |")
        L += [""]
    sc = res.get("scaling")
    if isinstance(sc, dict):
        L += ["## Scaling: lanes and seeds", ""] + scaling_markdown(
            sc, ceiling=link("vmap_ceiling.md"))
    elif sc:   # a results.json of the old scaling sweeps (envs, group size, seeds)
        L += ["## Scaling", "", "This results.json holds the scaling sweeps of an older "
              "version of this script (lockstep GRPO episodes); `python -m benchmarks.run "
              "--parts scaling --merge` measures the current ones.", ""]
    if res.get("text"):
        t = res["text"]
        L += ["## Language-model GRPO against TRL", "",
              f"`{t['command']}` (the `text` part); the full table, settings and the generation "
              f"scaling are in [text_vs_trl.md](text_vs_trl.md) beside this page. "
              f"TRL: {t.get('trl_versions', 'not run')}; matmul rate {t['matmul_gflops']:.0f} GFLOP/s.", "",
              "| width | jaxgrpo tokens/s | TRL tokens/s | ratio | learn phase share of matmul rate |",
              "|---:|---:|---:|---:|---:|"]
        for w in t["widths"]:
            j, tr = w["jax"], w.get("trl")
            ratio = f"{j['tokens_per_s'] / tr['tokens_per_s']:.2f}x" if tr else "-"
            L.append(f"| {w['width']} | {fmt_k(j['tokens_per_s'])} "
                     f"| {fmt_k(tr['tokens_per_s']) if tr else 'not run'} | {ratio} |"
                     f" {100 * j['learn_gflops'] / t['matmul_gflops']:.0f}% |")
        L += [""]
    if res.get("text_pretrained"):
        if not res.get("text"):
            L += ["## Language-model GRPO against TRL", ""]
        L += pretrained_markdown(res["text_pretrained"])
    if res.get("notes"):
        L += ["## Notes", "", res["notes"], ""]
    return "\n".join(L)


PRETRAINED_JSON = "text_vs_trl_pretrained.json"


def pretrained_markdown(tp: dict) -> list[str]:
    """The README's subsection on ``python -m benchmarks.text_vs_trl --pretrained`` from its
    JSON (``tp``: that script's ``res``, written beside the README as text_vs_trl_pretrained.json):
    the checkpoint and the work, then one row per variant (full fine-tuning, LoRA) with
    tokens/s of both sides, their ratio and peak RSS."""
    a, c = tp["settings"], tp["config"]
    n = tp["variants"][0]["jax"]["params"]
    emb = c["vocab_size"] * c["hidden_size"]
    tied = c.get("tie_word_embeddings", False)
    trl = next((v["trl"] for v in tp["variants"] if v.get("trl")), None)
    gc = ("" if trl is None or "gradient_checkpointing" not in trl else
          f" (gradient checkpointing {'on' if trl['gradient_checkpointing'] else 'off'})")
    load = (f"load average (1 min) {tp['loadavg_start'][0]:.1f} at the start and "
            f"{tp['loadavg_end'][0]:.1f} at the end" if "loadavg_end" in tp else
            "load average not recorded in its JSON")
    v = c["vocab_size"]
    mega = lambda x: f"{x / 1e6:.1f}M" if x >= 1e6 else f"{x:,}"
    L = ["### On a pretrained-shaped checkpoint "
         f"({f'{v // 1000}k' if v % 1000 == 0 else f'{v:,}'} vocabulary), full fine-tuning "
         "and LoRA", "",
         f"`{tp['command']}` (the `text-pretrained` part) on {tp['machine']}: both sides load "
         "one Hugging Face checkpoint folder, a random `LlamaForCausalLM` built here with "
         f"transformers (vocabulary {c['vocab_size']:,}, hidden {c['hidden_size']}, "
         f"{c['num_hidden_layers']} layers, {c['num_attention_heads']} query / "
         f"{c['num_key_value_heads']} key-value heads, SwiGLU {c['intermediate_size']}, "
         f"{'tied' if tied else 'untied'} embeddings: {mega(n)} parameters, "
         f"{mega(emb)} of them in the embedding" + ("" if tied else " and as many in the "
         "output head") + ") and a character-level `tokenizers` tokenizer padded to that "
         f"vocabulary; {a['prompts']} prompts x {a['group_size']} completions of "
         f"{a['new_tokens']} tokens per iteration, a Python exact-match reward, one optimizer "
         f"step per generation, beta 0, float32; LoRA rank {a['lora_rank']}, alpha "
         f"{a['lora_alpha']:g} on q, k, v, o, gate, up, down (TRL: peft). Each configuration "
         "in its own process (peak RSS = its VmHWM), alternating, medians of "
         f"{a['repeats']} repeats; {load}. Settings and per-repeat numbers: "
         "[text_vs_trl_pretrained.md](text_vs_trl_pretrained.md). "
         f"TRL: {tp.get('trl_versions', 'not run')}{gc}.", "",
         "| | jaxgrpo tokens/s | TRL tokens/s | ratio (target >= 2x) "
         "| peak RSS MiB: jaxgrpo, TRL |", "|---|---:|---:|---:|---:|"]
    names = {"full": "full fine-tuning", "lora": f"LoRA (rank {a['lora_rank']})"}
    for row in tp["variants"]:
        j, t = row["jax"], row.get("trl")
        ratio = f"{j['tokens_per_s'] / t['tokens_per_s']:.2f}x" if t else "-"
        t_rss = f"{t['peak_rss_mib']:.0f}" if t else "-"
        L.append(f"| {names.get(row['variant'], row['variant'])} | {fmt_k(j['tokens_per_s'])} "
                 f"| {fmt_k(t['tokens_per_s']) if t else 'not run'} | {ratio} "
                 f"| {j['peak_rss_mib']:.0f}, {t_rss} |")
    return L + [""]


def part_text(a, res):
    cmd = [sys.executable, "-m", "benchmarks.text_vs_trl"] + ["--tiny"] * a.tiny \
        + ["--no-trl"] * a.no_peers
    with tempfile.TemporaryDirectory() as tmp:
        out = (a.outdir if a.outdir is not None else Path(tmp)) / "text_vs_trl.md"
        log(f"[text] {' '.join(cmd[1:])} --out {out}")
        subprocess.run(cmd + ["--out", str(out)], cwd=ROOT, check=True)
        res["text"] = json.loads(out.with_suffix(".json").read_text())


def part_text_pretrained(a, res):
    """``python -m benchmarks.text_vs_trl --pretrained`` (``--tiny``: its smoke size, which runs
    no TRL; ``--no-peers``: ``--no-trl``) -> text_vs_trl_pretrained.md and .json in the out-dir."""
    cmd = [sys.executable, "-m", "benchmarks.text_vs_trl", "--pretrained"] + ["--tiny"] * a.tiny \
        + ["--no-trl"] * a.no_peers
    with tempfile.TemporaryDirectory() as tmp:
        out = (a.outdir if a.outdir is not None else Path(tmp)) / PRETRAINED_JSON
        out = out.with_suffix(".md")
        log(f"[text-pretrained] {' '.join(cmd[1:])} --out {out}")
        subprocess.run(cmd + ["--out", str(out)], cwd=ROOT, check=True)
        res["text_pretrained"] = json.loads(out.with_suffix(".json").read_text())


def with_pretrained(res, outdir: Path | None) -> dict:
    """``res`` with ``text_pretrained`` from the out-dir's text_vs_trl_pretrained.json when
    there is one (the script also runs on its own, ``python -m benchmarks.text_vs_trl
    --pretrained``, and writes only that file): the file beside the README wins."""
    if outdir is not None and (Path(outdir) / PRETRAINED_JSON).exists():
        res["text_pretrained"] = json.loads((Path(outdir) / PRETRAINED_JSON).read_text())
    return res


def part_analysis(a, res):
    if a.tiny:
        log("[analysis] skipped in tiny mode")
        return
    done = []
    for mod in ("benchmarks.where_time_goes", "benchmarks.sweep_scaling",
                "benchmarks.vmap_ceiling"):
        log(f"[analysis] python -m {mod}")
        subprocess.run([sys.executable, "-m", mod], cwd=ROOT, check=True)
        done.append(mod)
    res["analysis"] = {"date": time.strftime("%Y-%m-%d %H:%M"), "modules": done}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="smoke mode: tiny budgets, 1 repeat")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    p.add_argument("--no-peers", action="store_true", help="skip rejax and SB3 (no venvs needed)")
    p.add_argument("--repeats", type=int, help="fresh-process repeats per measurement (default 3; tiny 1)")
    p.add_argument("--out-dir", help="where README.md, results.json and the PNGs go (default "
                   "benchmarks/; tiny mode writes only when given)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                   help="also measure the jaxgrpo package found in PATH (a prototype copy: "
                   "PATH/jaxgrpo) in the peers part, rows labelled [NAME]")
    p.add_argument("--merge", action="store_true",
                   help="start from the out-dir's results.json and replace only the parts run")
    p.add_argument("--setup-peers", action="store_true", help="create the peer venvs and exit")
    p.add_argument("--render", action="store_true",
                   help="measure nothing: rewrite the out-dir's README.md (and its targets) from its "
                   "results.json and, if there, its text_vs_trl_pretrained.json")
    a = p.parse_args(argv)
    if a.setup_peers:
        log(rejax_python(), sb3_python())
        return 0
    if a.render:
        outdir = Path(a.out_dir) if a.out_dir else HERE
        src = outdir / "results.json"
        if not src.exists():
            p.error(f"--render: no results.json in {outdir}")
        res = with_pretrained(json.loads(src.read_text()), outdir)
        res["targets"] = check_targets(res)     # verdicts follow this code's reading of the numbers
        (outdir / "README.md").write_text(markdown(res, outdir))
        log(f"wrote {outdir / 'README.md'}")
        return 0
    a.variant = [tuple(v.split("=", 1)) for v in a.variant]
    if any(len(v) != 2 for v in a.variant):
        p.error("--variant: expected NAME=PATH")
    parts = [s.strip() for s in a.parts.split(",") if s.strip()]
    bad = [s for s in parts if s not in PARTS]
    if bad:
        p.error(f"--parts: unknown {bad[0]!r}; choose from {PARTS}")
    a.repeats = a.repeats or (1 if a.tiny else 3)
    # tiny: a faster, less optimizing XLA backend (compile time is most of a smoke run)
    a.compiler_options = {"xla_backend_optimization_level": 0} if a.tiny else None
    global IN_PROCESS
    IN_PROCESS = a.tiny
    outdir = Path(a.out_dir) if a.out_dir else (None if a.tiny else HERE)
    a.outdir = outdir
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
    res = {}
    if a.merge and outdir is not None and (outdir / "results.json").exists():
        res = json.loads((outdir / "results.json").read_text())
        res["merged"] = res.get("merged", []) + [{"parts": parts, "date": time.strftime("%Y-%m-%d %H:%M"),
                                                  "load_start": loadavg()}]
    else:
        res = {"tiny": a.tiny, "parts": parts, "repeats": a.repeats, "load_start": loadavg(),
               "date": time.strftime("%Y-%m-%d %H:%M")}
    res["machine"] = measure({"kind": "machine"})
    t0 = time.perf_counter()
    for part in PARTS:
        if part in parts:
            log(f"[{part}] load {loadavg():.1f}")
            globals()[f"part_{part.replace('-', '_')}"](a, res)
    with_pretrained(res, outdir)
    res["targets"] = check_targets(res)
    res["load_end"] = loadavg()
    res["wall_s"] = res.get("wall_s", 0) * bool(a.merge) + time.perf_counter() - t0
    md = markdown(res, outdir)
    if outdir is not None:
        # the pretrained comparison lives in its own JSON beside (with_pretrained reads it)
        kept = {k: v for k, v in res.items() if k != "text_pretrained"}
        (outdir / "results.json").write_text(json.dumps(kept, indent=1, default=str))
        (outdir / "README.md").write_text(md)
    for t, s, n in res["targets"]:
        log(f"{s:8s} {t}: {n}")
    log(f"done in {res['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
