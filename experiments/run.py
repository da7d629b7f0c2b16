"""Run one experiment: ``python -m experiments.run NAME [--tiny] [--seeds S] [--out DIR]``.

An experiment is ``experiments/NAME.yaml``::

    title: Group size                 # heading of the results section
    seeds: 8                          # seeds per case (key s = split(key(base_seed), S)[s])
    threshold: {CartPole-v1: 475}     # optional: env steps until a seed's return reaches it
    at_episodes: 1000                 # optional: each seed's return after this many episodes
    x: [env_steps]                    # curve x axes: env_steps, episodes, wall_s
    columns: [final, threshold, wall] # table columns (also: at_episodes, threshold_time, cost,
                                      # staleness: the mean of metric staleness/mean)
    vs: group_size                    # optional: also plot final return against this field
    clock: true                       # per-iteration wall clock (a host callback per iteration;
                                      # needed for x: wall_s and at_episodes); default: off,
                                      # only each run's total seconds
    tiny: {hidden_sizes: [16]}        # optional overrides for --tiny (the smoke test's size,
                                      # which also cuts total_timesteps to 2 iterations)
    arms:                             # each arm: a base config and the cases varied from it
      - name: GRPO same-start
        algo: grpo                    # grpo | ppo
        env: CartPole-v1              # ... any config field
        grid: {group_size: [2, 4]}    # crossed (itertools.product order)
        cases: [{beta: 0.0}, {beta: 0.04, ref_sync_every: 10}]   # a list, crossed with grid

A case whose config equals an earlier case's (the defaults that several arms share) reuses its
runs. Every case is validated before anything is compiled (a wrong field or value stops the run with
one message naming it). Cases that differ only in dynamic hyperparameters (``config.hparams()``:
lr, beta, gamma, clip_eps, ...) share one compilation. Each seed runs on its own (no vmap: on
CPU a vmapped GRPO batch moves at the pace of its longest episode). Each run's wall time is
measured around the compiled call; with ``clock: true`` every iteration is also timed by a host
callback (``wall_s``, callback cost included).

Per case and seed it keeps every iteration's metrics. A seed's final return is the
episode-weighted mean training return over its iterations in the last 10% of its env steps;
thresholds and "return at N episodes" read the mean over the last 32 finished episodes
(``rolling_return``). Writes ``experiments/results/NAME.csv`` (one row per case x seed x
iteration), ``NAME.json`` (per run: compile and run seconds, memory, steps), ``NAME.md`` (the
table: mean and 95% percentile-bootstrap CI over seeds) and ``NAME.png`` (mean over seeds
against each x axis, shaded 95% Student-t CI of the mean), and replaces the ``NAME`` block of
experiments/README.md.
A YAML with a ``study:`` key is a language-model study instead (``experiments.text_studies``:
pass@k, length bias, KL estimators), with its own keys; the options below mean the same.
``--tiny`` validates every case, then runs the first case of the first arm (``--tiny
--all-arms``: of every arm) with 1 seed for two iterations into ``--out`` (default: a
temporary folder; experiments/ is left alone). ``--replot`` rebuilds the table, plots and
README block from the saved CSV without training.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from experiments import objectives, text_studies
from experiments.common import bootstrap_ci, code_version, machine, update_readme
from jaxgrpo import compiled
from jaxgrpo.checks import unknown_field
from jaxgrpo.config import config_class
from jaxgrpo.configio import yaml_loader
from jaxgrpo.grids import expand_grid, grid_configs
from jaxgrpo.rundir import RENAMED_METRICS
from jaxgrpo.runs import build_train

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = ("title", "seeds", "base_seed", "threshold", "at_episodes", "x", "columns", "tiny", "arms",
        "vs", "clock")
ARM_KEYS = ("name", "grid", "cases")
X_AXES = ("env_steps", "episodes", "wall_s")
COLUMNS = ("final", "threshold", "threshold_time", "at_episodes", "wall", "cost", "staleness")


@dataclasses.dataclass
class Case:
    arm: str
    arm_index: int
    label: str          # what varies within the arm, "" for the arm's base config
    config: object

    @property
    def name(self) -> str:
        return f"{self.arm} ({self.label})" if self.label else self.arm


def _fail(path, msg):
    raise ValueError(f"{os.path.basename(path)}: {msg}")


def read(path):
    """The YAML at ``path`` (ValueError if it cannot be read)."""
    import yaml
    try:
        with open(path) as f:
            return yaml.load(f, Loader=yaml_loader())
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from None


def is_study(path) -> bool:
    """Whether ``path`` is a text study (a ``study:`` key; ``experiments.text_studies``)."""
    spec = read(path)
    return isinstance(spec, dict) and "study" in spec


def load(path, tiny: bool = False) -> tuple[dict, list[Case]]:
    """Read and validate an experiment YAML -> (spec, cases). Nothing is compiled."""
    spec = read(path)
    if not isinstance(spec, dict):
        _fail(path, "must be a YAML mapping")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        _fail(path, f"unknown key {unknown[0]!r}; keys: {', '.join(KEYS)}")
    if not isinstance(spec.get("arms"), list) or not spec["arms"]:
        _fail(path, "arms: must be a non-empty list")
    for k, allowed in (("x", X_AXES), ("columns", COLUMNS)):
        for v in spec.get(k, []):
            if v not in allowed:
                _fail(path, f"{k}: unknown {v!r}; one of {', '.join(allowed)}")
    seeds = spec.get("seeds", 8)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        _fail(path, f"seeds: must be an int >= 1, got {seeds!r}")
    if "threshold_time" in spec.get("columns", []) and not spec.get("clock"):
        _fail(path, "columns: threshold_time needs 'clock: true'")
    if "at_episodes" in spec.get("columns", []) and not isinstance(spec.get("at_episodes"), int):
        _fail(path, "columns: at_episodes needs an int 'at_episodes' key")
    if not spec.get("clock") and ("wall_s" in spec.get("x", [])
                                  or "at_episodes" in spec.get("columns", [])):
        _fail(path, "x: wall_s and columns: at_episodes need 'clock: true' (per-iteration times)")
    tiny_over = spec.get("tiny") or {}
    cases = []
    for i, arm in enumerate(spec["arms"]):
        if not isinstance(arm, dict) or "name" not in arm:
            _fail(path, f"arms[{i}]: must be a mapping with a 'name'")
        fields = {k: v for k, v in arm.items() if k not in ARM_KEYS}
        algo = fields.pop("algo", "grpo")
        try:
            cls = config_class(algo)
            wrong = sorted(set(fields) - {f.name for f in dataclasses.fields(cls) if f.init})
            if wrong:
                raise ValueError(unknown_field(wrong[0], cls))
            base = cls(**fields)
        except TypeError as e:
            _fail(path, f"arms[{i}] ({arm['name']}): {e}")
        except ValueError as e:
            _fail(path, f"arms[{i}] ({arm['name']}): {e}")
        explicit = arm.get("cases") or [{}]
        if not isinstance(explicit, list) or not all(isinstance(c, dict) for c in explicit):
            _fail(path, f"arms[{i}] ({arm['name']}): cases: must be a list of mappings")
        for g in expand_grid(arm.get("grid")):
            for c in explicit:
                change = {**g, **c}
                try:
                    _, (cfg,) = grid_configs(base, {k: [v] for k, v in change.items()})
                    cfg = _tiny(cfg.replace(**tiny_over)) if tiny else cfg
                except ValueError as e:
                    _fail(path, f"arms[{i}] ({arm['name']}): {e}")
                label = ", ".join(f"{k}={v}" for k, v in {**g, **c}.items())
                cases.append(Case(arm["name"], i, label, cfg))
    if spec.get("vs") is not None and not all(hasattr(c.config, spec["vs"]) for c in cases):
        _fail(path, f"vs: {spec['vs']!r} is not a field of every case's config")
    return spec, cases


def _tiny(config):
    """``config`` cut to two iterations."""
    if config.algo == "grpo":
        return config.replace(total_timesteps=2 * config.max_steps_per_iteration,
                              num_iterations=2)
    return config.replace(total_timesteps=2 * config.num_envs * config.num_steps)


# ----------------------------------------------------------------------------- running

def _hparams(config) -> dict:
    return {k: jnp.float32(v) for k, v in config.hparams().items()}


class _Compiled:
    """One compiled ``train(key, hparams)`` per static config, with a per-iteration clock, kept
    in ``jaxgrpo.compiled``'s cache. One instance per process (``COMPILED``): experiments run
    in one process share programs."""

    def __init__(self):
        self.clock = []

    def _tick(self, i, metrics):
        self.clock.append((int(i), time.perf_counter()))

    def _build(self, config, key, clock):
        train = build_train(config, callback=self._tick if clock else None)
        t0 = time.perf_counter()
        fn = jax.jit(train).lower(key, _hparams(config)).compile()
        mem = fn.memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", float("nan")) if mem else float("nan")
        st = jax.eval_shape(train.init, key)
        nbytes = lambda t: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(t))
        return dict(fn=fn, compile_s=time.perf_counter() - t0, temp_bytes=temp,
                    params_bytes=nbytes(st.params), opt_bytes=nbytes(st.opt_state))

    def get(self, config, key, clock=False):
        sk = ("experiments", compiled.static_key(config), id(self) if clock else None)
        shared = sk in compiled.CACHE   # with an earlier case: no compile
        c, _ = compiled.cached(sk, lambda: self._build(config, key, clock))
        return {**c, "compile_s": 0.0} if shared else c

    def run(self, config, key, clock=False):
        """-> (metrics {name: [I]} as numpy, wall_s [I], info)."""
        c = self.get(config, key, clock)
        self.clock = []
        t0 = time.perf_counter()
        _, metrics = c["fn"](key, _hparams(config))
        metrics = jax.tree.map(np.asarray, jax.block_until_ready(metrics))
        total = time.perf_counter() - t0
        wall = np.full(len(metrics["env_steps"]), np.nan)
        for i, t in self.clock:
            wall[i] = t - t0
        wall[-1] = total
        return metrics, wall, {**{k: v for k, v in c.items() if k != "fn"}, "run_s": total}


COMPILED = _Compiled()


def run_cases(spec, cases, seeds) -> list[dict]:
    """Every case x seed: ``{"case", "seed", "metrics", "wall_s", "info"}``."""
    comp = COMPILED
    keys = jax.random.split(jax.random.key(spec.get("base_seed", 0)), seeds)
    out, done = [], {}
    for n, case in enumerate(cases):
        t0 = time.perf_counter()
        same = done.get(repr(case.config))   # a config already run (e.g. the default in each arm)
        for s in range(seeds):
            if same is not None:
                out.append({**out[same * seeds + s], "case": n})
                continue
            m, wall, info = comp.run(case.config, keys[s], bool(spec.get("clock")))
            out.append({"case": n, "seed": s, "metrics": m, "wall_s": wall, "info": info})
        done.setdefault(repr(case.config), n)
        print(f"[{n + 1}/{len(cases)}] {case.name} {case.config.env}: "
              f"{time.perf_counter() - t0:.1f} s" + (f" (same config as case {same + 1})"
                                                      if same is not None else ""), flush=True)
    return out


# ----------------------------------------------------------------------------- analysis

def frame(cases, results):
    """Tidy pandas frame: case, arm, label, env, seed, iteration, cumulative episodes, wall_s and
    every metric. GRPO iterations skipped after the env-step budget are dropped."""
    import pandas as pd

    parts = []
    for r in results:
        case, m = cases[r["case"]], r["metrics"]
        df = pd.DataFrame({k: v.astype(np.float64) if v.dtype.kind == "f" else v
                           for k, v in m.items() if v.ndim == 1})
        df.insert(0, "iteration", np.arange(len(df)))
        df["episodes"] = np.cumsum(np.nan_to_num(m["episodes"]))
        df["wall_s"] = r["wall_s"]
        df.insert(0, "seed", r["seed"])
        df.insert(0, "env", case.config.env + (f" {dict(case.config.env_kwargs)}"
                                               if case.config.env_kwargs else ""))
        df.insert(0, "label", case.label)
        df.insert(0, "arm", case.arm)
        df.insert(0, "case", r["case"])
        last = df["iteration"] == len(df) - 1   # holds the total run time
        parts.append(df[~np.isnan(df["episode_return"]) | (df["iteration"] == 0) | last])
    return pd.concat(parts, ignore_index=True)


WINDOW = 32   # episodes in the rolling mean that thresholds and "return at N episodes" read


def rolling_return(n, ret, k=WINDOW):
    """Episode-weighted mean return of the last >= ``k`` finished episodes at each iteration.

    n: [I] episodes finished in each iteration; ret: [I] their mean return. Iteration i averages
    the fewest most recent iterations holding >= k episodes; NaN while fewer than k have
    finished. (PPO finishes ~1 CartPole episode per iteration near 500, GRPO 32: a threshold
    on single iterations would favour the algorithm with fewer episodes per iteration.)"""
    cum_n, cum_r = np.cumsum(n), np.cumsum(n * ret)
    first = np.searchsorted(cum_n, cum_n - k, side="right")    # window = (first - 1, i]
    base_n = np.where(first > 0, cum_n[np.maximum(first - 1, 0)], 0.0)
    base_r = np.where(first > 0, cum_r[np.maximum(first - 1, 0)], 0.0)
    count = cum_n - base_n
    return np.where(cum_n >= k, (cum_r - base_r) / np.maximum(count, 1), np.nan)


def seed_summary(df, threshold=None, at_episodes=None) -> dict:
    """One seed's frame -> ``final`` (episode-weighted mean return over the iterations in the
    last 10% of its env steps), ``to_threshold`` (env steps at the first iteration whose
    rolling mean over the last 32 episodes reaches ``threshold``; NaN if never),
    ``at_episodes`` (that rolling mean at the first iteration with ``at_episodes`` finished
    episodes; NaN if the run finished fewer) and ``wall_at_episodes`` (its wall-clock s)."""
    wall = float(df["wall_s"].max()) if len(df) else np.nan
    df = df[~np.isnan(df["episode_return"])]
    steps = df["env_steps"].to_numpy(np.float64)
    ret = df["episode_return"].to_numpy(np.float64)
    ep = df["episodes"].to_numpy(np.float64)
    n = np.diff(np.concatenate([[0.0], ep])) if len(ep) else ep
    out = {"final": np.nan, "steps": np.nan, "wall": np.nan}
    if len(ret):
        last = steps >= 0.9 * steps[-1]
        w = np.maximum(n[last], 1e-9)
        out.update(final=float(np.sum(w * ret[last]) / np.sum(w)), steps=float(steps[-1]),
                   wall=wall)
    roll = rolling_return(n, ret)
    if threshold is not None:
        hit = np.nonzero(roll >= threshold)[0]
        out["to_threshold"] = float(steps[hit[0]]) if len(hit) else np.nan
        out["episodes_to_threshold"] = float(ep[hit[0]]) if len(hit) else np.nan
        out["wall_to_threshold"] = float(df["wall_s"].to_numpy()[hit[0]]) if len(hit) else np.nan
    if at_episodes is not None:
        reach = np.nonzero(ep >= at_episodes)[0]
        out["at_episodes"] = float(roll[reach[0]]) if len(reach) else np.nan
        out["wall_at_episodes"] = (float(df["wall_s"].to_numpy()[reach[0]]) if len(reach)
                                   else np.nan)
    return out


def _ci(x, fmt="{:.1f}") -> str:
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    if not len(x):
        return "-"
    mean, lo, hi = bootstrap_ci(x)
    return f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def table(spec, cases, df, results) -> str:
    """The markdown table; ``results``: the per case x seed records of the sidecar JSON
    (``case``, ``seed``, ``info``, ``env_steps``, ``simulated``), used by the cost columns."""
    cols = spec.get("columns") or ["final", "threshold", "wall"]
    thr = spec.get("threshold") or {}
    head = ["arm", "case", "env", "env steps per seed"]
    if "final" in cols:
        head.append("final return, mean [95% CI]")
    if "at_episodes" in cols:
        head += [f"return at {spec['at_episodes']} episodes", f"wall s to {spec['at_episodes']} episodes"]
    if "threshold" in cols:
        head += ["seeds reaching threshold", "env steps to threshold (seeds reaching)"]
    if "threshold_time" in cols:
        head += ["episodes to threshold", "wall s to threshold"]
    if "wall" in cols:
        head.append("run s per seed")
    if "staleness" in cols:
        head.append("staleness (updates), mean [95% CI]")
    if "cost" in cols:
        head += ["us per env step", "us per simulated step", "valid/simulated", "compile s",
                 "params + Adam bytes", "XLA temp MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, case in enumerate(cases):
        sub = df[df["case"] == n]
        if sub.empty:
            continue
        env = sub["env"].iloc[0]
        t = thr.get(case.config.env)
        per = [seed_summary(g, t, spec.get("at_episodes")) for _, g in sub.groupby("seed")]
        get = lambda k: [p.get(k, np.nan) for p in per]
        steps = np.asarray(get("steps"), float)
        row = [case.arm, case.label or "-", env,
               f"{int(np.nanmean(steps)):,}" if (~np.isnan(steps)).any() else "-"]
        if "final" in cols:
            small = np.nanmax(np.abs(np.asarray(get("final"), float)), initial=0.0) < 10
            row.append(_ci(get("final"), "{:.2f}" if small else "{:.1f}"))
        if "at_episodes" in cols:
            reached = int(np.sum(~np.isnan(np.asarray(get("at_episodes"), float))))
            note = "" if reached == len(per) else f" ({reached}/{len(per)} seeds got there)"
            row += [_ci(get("at_episodes")) + note, _ci(get("wall_at_episodes"), "{:.2f}")]
        if "threshold" in cols:
            hits = np.asarray(get("to_threshold"), float)
            ok = hits[~np.isnan(hits)]
            row += ["-" if t is None else f"{len(ok)}/{len(per)} (>= {t:g})",
                    "-" if t is None or not len(ok) else _ci(ok, "{:,.0f}")]
        if "threshold_time" in cols:
            row += [_ci(get("episodes_to_threshold"), "{:,.0f}"),
                    _ci(get("wall_to_threshold"), "{:.2f}")]
        if "wall" in cols:
            row.append(_ci(get("wall"), "{:.2f}"))
        if "staleness" in cols:   # per seed: the mean over its iterations ("-" if not logged)
            row.append(_ci(sub.groupby("seed")["staleness/mean"].mean(), "{:.2f}")
                       if "staleness/mean" in sub else "-")
        if "cost" in cols:
            rs = [r for r in results if r["case"] == n]
            valid = np.array([r["env_steps"] for r in rs])
            sim = np.array([r["simulated"] for r in rs])
            run_s = np.array([r["info"]["run_s"] for r in rs])
            info = rs[0]["info"]
            row += [_ci(1e6 * run_s / valid, "{:.2f}"), _ci(1e6 * run_s / sim, "{:.2f}"),
                    f"{valid.sum() / sim.sum():.3f}",
                    f"{info['compile_s']:.1f}" if info["compile_s"] > 0 else "shared",
                    f"{info['params_bytes']:,} + {info['opt_bytes']:,}",
                    f"{info['temp_bytes'] / 2**20:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _simulated(m) -> np.ndarray:
    """Simulated env steps per iteration: valid steps / valid fraction (PPO: = valid)."""
    valid = np.diff(np.concatenate([[0.0], np.nan_to_num(m["env_steps"])]))
    frac = np.nan_to_num(m["valid_frac"], nan=1.0)
    return np.where(valid > 0, valid / np.maximum(frac, 1e-9), 0.0)


def plot(spec, cases, df, path):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.stats import t as student_t

    xs = spec.get("x") or ["env_steps"]
    envs = list(dict.fromkeys(df["env"]))
    fig, axes = plt.subplots(len(xs), len(envs), figsize=(5.2 * len(envs), 3.6 * len(xs)),
                             squeeze=False)
    for r, xname in enumerate(xs):
        for c, env in enumerate(envs):
            ax = axes[r, c]
            for n, case in enumerate(cases):
                sub = df[(df["case"] == n) & (df["env"] == env)]
                sub = sub[~np.isnan(sub["episode_return"])]
                if sub.empty:
                    continue
                hi = sub.groupby("seed")[xname].max().min()   # the x every seed reached
                grid = np.linspace(0, hi, 100)
                with warnings.catch_warnings():   # x points some seeds have not reached
                    warnings.simplefilter("ignore", RuntimeWarning)
                    ys = np.stack([np.interp(grid, g[xname].to_numpy(), g["episode_return"].to_numpy(),
                                             left=np.nan) for _, g in sub.groupby("seed")])
                    mean = np.nanmean(ys, 0)
                    k = (~np.isnan(ys)).sum(0)   # seeds with data at each x
                    half = (student_t.ppf(0.975, np.maximum(k - 1, 1)) * np.nanstd(ys, 0, ddof=1)
                            / np.sqrt(np.maximum(k, 1)))
                    half = np.where(k >= 2, half, np.nan)
                line, = ax.plot(grid, mean, label=case.name, lw=1.2)
                ax.fill_between(grid, mean - half, mean + half, color=line.get_color(),
                                alpha=0.15, lw=0)
            ax.set_xlabel({"env_steps": "env steps", "episodes": "episodes",
                           "wall_s": "wall-clock s (compile excluded)"}[xname])
            ax.set_ylabel("training episode return")
            ax.set_title(env, fontsize="medium")
            ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small",
               bbox_to_anchor=(0.5, 0.0))
    rows = -(-len(labels) // 4)
    fig.tight_layout(rect=(0, 0.045 * rows + 0.03 / len(xs), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_vs(spec, cases, df, path):
    """Final return (mean and 95% bootstrap CI over seeds) against the field ``spec["vs"]``,
    one line per arm, one panel per env."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    field = spec["vs"]
    envs = list(dict.fromkeys(df["env"]))
    fig, axes = plt.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        arms = {}
        for n, case in enumerate(cases):
            sub = df[(df["case"] == n) & (df["env"] == env)]
            if sub.empty:
                continue
            final = [seed_summary(g)["final"] for _, g in sub.groupby("seed")]
            arms.setdefault(case.arm, []).append((getattr(case.config, field), *bootstrap_ci(final)))
        for arm, pts in arms.items():
            x, m, lo, hi = map(np.asarray, zip(*sorted(pts)))
            ax.errorbar(x, m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=arm)
        if field in ("group_size",):
            ax.set_xscale("log", base=2)
        ax.set_xlabel(field)
        ax.set_ylabel("final return (95% CI)")
        ax.set_title(env, fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.split("\n")[0])
    p.add_argument("name", help="experiment: experiments/NAME.yaml (or a path to a YAML)")
    p.add_argument("--tiny", action="store_true",
                   help="smoke size: 1 seed, 2 iterations, the first case of the first arm")
    p.add_argument("--all-arms", action="store_true", help="with --tiny: the first case of every arm")
    p.add_argument("--seeds", type=int, help="override the YAML's seeds")
    p.add_argument("--out", help="output folder (default experiments/results; --tiny: a temp dir)")
    p.add_argument("--replot", action="store_true",
                   help="rebuild table, plots and README block from OUT/NAME.csv (no training)")
    args = p.parse_args(argv)
    path = args.name if args.name.endswith((".yaml", ".yml")) else os.path.join(HERE, f"{args.name}.yaml")
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        if is_study(path):
            # (study, table, plot) of every study kind: text_studies' own and the objectives'
            studies = {**text_studies.RUN,
                       "objectives": (objectives.study, objectives.table, objectives.plot)}
            return text_studies.main(name, read(path), args, studies)
        spec, cases = load(path, tiny=args.tiny)
        if args.seeds is not None and args.seeds < 1:
            raise ValueError(f"--seeds: must be >= 1, got {args.seeds}")
    except ValueError as e:
        print(f"experiments.run: error: {e}", file=sys.stderr)
        return 2
    seeds = args.seeds or (1 if args.tiny else spec.get("seeds", 8))
    if args.tiny:
        firsts = {}
        for c in cases:
            firsts.setdefault(c.arm_index if args.all_arms else 0, c)
        cases = list(firsts.values())
    out = args.out or (tempfile.mkdtemp(prefix=f"exp_{name}_") if args.tiny and not args.replot
                       else os.path.join(HERE, "results"))
    os.makedirs(out, exist_ok=True)
    csv, info_path = os.path.join(out, f"{name}.csv"), os.path.join(out, f"{name}.json")
    t0 = time.time()
    if args.replot:
        import pandas as pd
        missing = [p_ for p_ in (csv, info_path) if not os.path.exists(p_)]
        if missing:
            print(f"experiments.run: error: --replot: {missing[0]} does not exist (run the "
                  f"experiment first{'; with --tiny give --out' if args.tiny else ''})",
                  file=sys.stderr)
            return 2
        df = pd.read_csv(csv).rename(columns=RENAMED_METRICS)   # CSVs from before a rename
        df["label"] = ["" if isinstance(v, float) else v for v in df["label"]]   # NaN = ""
        with open(info_path) as f:
            results = json.load(f)
        meta = results[0].get("meta", {}) if results else {}
    else:
        commit = code_version()   # the code that runs, read before it runs
        print(f"{name}: {len(cases)} cases x {seeds} seeds -> {out}", flush=True)
        results = run_cases(spec, cases, seeds)
        df = frame(cases, results)
        df.to_csv(csv, index=False)
        meta = {"commit": commit, "seeds": seeds, "seconds": round(time.time() - t0),
                "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}
        results = [{"case": r["case"], "seed": r["seed"], "info": r["info"],
                    "env_steps": float(r["metrics"]["env_steps"][-1]),
                    "simulated": float(np.sum(_simulated(r["metrics"]))), "meta": meta}
                   for r in results]
        with open(info_path, "w") as f:
            json.dump(results, f, default=float)
    tab = table(spec, cases, df, results)
    plot(spec, cases, df, os.path.join(out, f"{name}.png"))
    figs = f"![{name}]({{rel}}/{name}.png)"
    if spec.get("vs"):
        plot_vs(spec, cases, df, os.path.join(out, f"{name}_vs.png"))
        figs = f"![{name}]({{rel}}/{name}_vs.png)\n" + figs
    cmd = f"python -m experiments.run {name}" + (" --tiny" if args.tiny else "")
    rel = os.path.relpath(out, HERE)
    block = (f"`{cmd}` (commit {meta.get('commit', '?')}, {meta.get('seeds', seeds)} seeds, "
             f"{meta.get('seconds', '?')} s in all, {meta.get('date', '?')}).  \n"
             f"Machine: {meta.get('machine', '?')}.\n\n{tab}\n\n" + figs.format(rel=rel)
             + f"\n\nRaw: [{name}.csv]({rel}/{name}.csv) (every iteration of every seed).")
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(f"# {spec.get('title', name)}\n\n{block}\n")
    if not args.tiny and args.out is None:
        update_readme(os.path.join(HERE, "README.md"), name, block)
    print(tab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
