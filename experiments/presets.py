"""Measure every preset of ``jaxgrpo.presets``: 8 seeds vmapped in one compiled call, then 100
sampled-action evaluation episodes per seed (``jaxgrpo.evaluate``).

    python -m experiments.presets                        # all: results/presets.json, docs/presets.md
    python -m experiments.presets --only ppo/Pendulum-v1 # re-measure some, keep the others
    python -m experiments.presets --tiny --out DIR       # smoke size (2 seeds, tiny budget)

A preset meets its row when the mean over seeds of the evaluation return is >= its target.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from experiments.common import bootstrap_ci, git_rev, machine, train_and_evaluate
from jaxgrpo import presets

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results" / "presets.json"
PAGE = ROOT / "docs" / "presets.md"


def measure(p: presets.Preset, seeds: int = 8, tiny: bool = False) -> dict:
    """Train preset ``p`` with ``seeds`` seeds (keys ``split(key(0), seeds)``) and evaluate."""
    import jaxgrpo
    cfg = jaxgrpo.preset(p.algo, p.env)
    if tiny:
        small = ({"total_timesteps": 2 * cfg.num_envs * cfg.num_steps} if p.algo == "ppo"
                 else {"total_timesteps": 2_000, "num_iterations": 2})
        cfg = cfg.replace(**small)
    ev, m, compile_s, run_s = train_and_evaluate(cfg, seeds, 10 if tiny else 100)
    mean, lo, hi = bootstrap_ci(ev)
    steps = np.asarray(m["env_steps"])[:, -1]
    return {"algo": p.algo, "env": p.env, "fields": p.fields, "target": p.target,
            "note": p.note, "seeds": seeds, "eval_per_seed": [float(x) for x in ev],
            "mean": mean, "ci95": [lo, hi], "worst": float(ev.min()),
            "met": bool(mean >= p.target), "env_steps_max": float(steps.max()),
            "compile_s": round(compile_s, 1), "run_s": round(run_s, 1)}


def render(results: dict, meta: dict) -> str:
    """The markdown table of docs/presets.md."""
    rows = ["| algo | env | settings beyond the defaults | budget (env steps used, max of seeds) "
            "| target | eval return, mean [95% CI] | worst seed | met | compile s | run s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for p in presets.PRESETS.values():
        r = results.get(f"{p.algo}/{p.env}")
        fields = {k: v for k, v in p.fields.items() if k != "total_timesteps"}
        settings = ", ".join(f"`{k}={v!r}`" for k, v in fields.items()) or "(the defaults)"
        budget = f"{p.fields['total_timesteps']:,}"
        if r is None:
            rows.append(f"| {p.algo.upper()} | {p.env} | {settings} | {budget} | "
                        f"{p.target:g} | not measured | | | | |")
            continue
        lo, hi = r["ci95"]
        rows.append(f"| {p.algo.upper()} | {p.env} | {settings} | {budget} "
                    f"({r['env_steps_max']:,.0f}) | >= {p.target:g} | {r['mean']:.2f} "
                    f"[{lo:.2f}, {hi:.2f}] | {r['worst']:.2f} | {'yes' if r['met'] else 'NO'} | "
                    f"{r['compile_s']:.1f} | {r['run_s']:.1f} |")
    join = lambda k: ", ".join(map(str, meta[k]))
    return (f"`python -m experiments.presets`, {join('seeds')} seeds each; "
            f"machine: {join('machine')}.\n\n"
            + "\n".join(rows) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", metavar="ALGO/ENV", help=f"of {presets.names()}")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--tiny", action="store_true", help="smoke size; needs --out")
    ap.add_argument("--out", type=Path, help="folder for presets.json and presets.md "
                                             "(default: the repository's)")
    args = ap.parse_args(argv)
    names = args.only or presets.names()
    unknown = sorted(set(names) - set(presets.names()))
    if unknown:
        ap.error(f"--only: no preset {unknown[0]!r}; presets: {', '.join(presets.names())}")
    if args.tiny and args.out is None:
        ap.error("--tiny writes smoke results: give --out DIR")
    results_path = RESULTS if args.out is None else args.out / "presets.json"
    page = PAGE if args.out is None else args.out / "presets.md"
    doc = json.loads(results_path.read_text()) if results_path.is_file() else {"results": {}}
    results = doc["results"]
    for name in names:
        algo, env = name.split("/", 1)
        r = measure(presets.get(algo, env), seeds=args.seeds, tiny=args.tiny)
        print(f"{name}: eval {r['mean']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}], "
              f"target {r['target']:g}: {'met' if r['met'] else 'NOT met'} "
              f"(compile {r['compile_s']} s, run {r['run_s']} s)", flush=True)
        results[name] = {**r, "commit": git_rev(), "date": time.strftime("%Y-%m-%d"),
                         "machine": machine()}
    results = {n: results[n] for n in presets.names() if n in results}
    meta = {k: sorted({r[k] for r in results.values()}) for k in ("commit", "date", "machine")}
    meta["seeds"] = sorted({r["seeds"] for r in results.values()})
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    table = render(results, meta)
    if page.is_file():
        text = re.sub(r"<!-- presets:begin -->.*?<!-- presets:end -->",
                      lambda _: f"<!-- presets:begin -->\n{table}<!-- presets:end -->",
                      page.read_text(), flags=re.S)
    else:
        text = f"<!-- presets:begin -->\n{table}<!-- presets:end -->\n"
    page.write_text(text)
    print(f"wrote {results_path}, {page}")
    return 0 if all(r["met"] for r in results.values()) or args.tiny else 1


if __name__ == "__main__":
    sys.exit(main())
