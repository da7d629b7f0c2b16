"""Three studies of language-model GRPO, each from ``experiments/NAME.yaml`` with a ``study:`` key,
run by ``python -m experiments.run NAME [--tiny] [--seeds S] [--out DIR]``:

* ``passk`` (``text_passk.yaml``): does GRPO teach new answers or sharpen old ones? pass@k,
  k = 1..64, of the SFT start, of GRPO from it and of continued SFT from it given the same
  compute, on the same held-out prompts, for each task.
* ``length`` (``text_length.yaml``): the length bias of the loss aggregations (Dr. GRPO):
  ``loss_type`` x ``scale_rewards`` on a task whose answers may carry ignored filler
  (``filler=K``), tracking the mean length of correct and of wrong completions.
* ``kl`` (``text_kl.yaml``): the KL estimators k1/k2/k3 x beta: accuracy, the exact per-token
  KL(pi || pi_ref) on held-out prompts against each estimator's value over training, and each
  estimator's gradient bias against the exact KL's gradient on a fixed batch.

A study YAML::

    title: ...                        # heading of the results section
    study: passk                      # passk | length | kl
    seeds: 8                          # GRPO seeds, vmapped (keys split(key(base_seed), S))
    model: {width: 64}                # _TextFields shared by the SFT start and GRPO
    sft: {num_steps: 150}             # SFTConfig fields of the warm start (seed 0)
    grpo: {num_iterations: 100}       # GRPOConfig fields shared by every case
    tasks: [{name: ..., env: text:addition, env_kwargs: {digits: 2}, sft: {...}, grpo: {...}}]
    grid: {loss_type: [grpo, dapo]}   # the cases (crossed), length, kl and objectives
    cases: [{loss_type: cispo, clip_eps_high: 5.0}, {advantage: grpo_passk}]   # a list of
                                      # cases, crossed with grid (length, kl, objectives)
    eval: {prompts: 256, samples: 64, every: 10}
    tiny: {sft: {...}, grpo: {...}, eval: {...}}    # merged in for --tiny

The ``objectives`` study (``objectives.yaml``, ``experiments.objectives``) also takes
environment tasks (a gymnax ``env``: no warm start, no ``model``/``sft``; only the task's own
``grpo`` fields apply, the top-level ones being the text tasks').

Every config is built, so validated, before anything runs; ``--tiny`` then runs only the
first case. Each task gets one SFT warm start
(``jaxgrpo.sft``, seed 0, into a temporary run folder); GRPO starts from it (``init_from``,
which also makes it the reference policy) with every seed vmapped in one compiled call.
Held-out prompts are ``jaxgrpo.text.heldout_prompts(task, prompts, seed=0)``, the same for every
arm. CIs are 95% percentile bootstraps over seeds. Writes ``OUT/NAME.json`` (every number),
``OUT/NAME.md`` (the table) and ``OUT/NAME.png``, and, for a full run into experiments/results,
replaces the ``NAME`` block of experiments/README.md.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.common import code_version, machine, update_readme

STUDIES = ("passk", "length", "kl", "objectives")
KEYS = ("title", "study", "seeds", "base_seed", "model", "sft", "grpo", "tasks", "grid", "cases",
        "eval", "tiny")
TASK_KEYS = ("name", "env", "env_kwargs", "sft", "grpo")
EVAL_KEYS = ("prompts", "samples", "every", "grad_prompts")
EVAL_DEFAULTS = {"prompts": 256, "samples": 64, "every": 10, "grad_prompts": 64}


def _merge(a: dict, b: dict) -> dict:
    """``a`` updated by ``b``, mappings merged key by key."""
    out = dict(a)
    for k, v in (b or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _fail(name, msg):
    raise ValueError(f"{name}.yaml: {msg}")


@dataclasses.dataclass
class Task:
    name: str
    sft: object                # SFTConfig of the warm start
    grpo: object               # GRPOConfig without init_from (set once the start exists)
    cases: list                # [(label, GRPOConfig)] the grid's cases (one, "", for passk)


def load(name: str, spec: dict, tiny: bool = False) -> tuple[dict, list[Task]]:
    """Validate a study spec (already read from YAML) -> (spec with defaults, tasks). Builds
    every config, so a wrong field or value stops here with one message naming it."""
    from jaxgrpo.config import GRPOConfig, SFTConfig
    from jaxgrpo.checks import unknown_field
    from jaxgrpo.grids import expand_grid

    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        _fail(name, f"unknown key {unknown[0]!r}; keys: {', '.join(KEYS)}")
    if spec.get("study") not in STUDIES:
        _fail(name, f"study: must be one of {', '.join(STUDIES)}, got {spec.get('study')!r}")
    if tiny:
        spec = _merge(spec, spec.get("tiny") or {})
    seeds = spec.get("seeds", 8)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        _fail(name, f"seeds: must be an int >= 1, got {seeds!r}")
    ev = spec.get("eval") or {}
    bad = sorted(set(ev) - set(EVAL_KEYS))
    if bad:
        _fail(name, f"eval: unknown key {bad[0]!r}; keys: {', '.join(EVAL_KEYS)}")
    ev = {**EVAL_DEFAULTS, **ev}
    for k, v in ev.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            _fail(name, f"eval: {k} must be an int >= 1, got {v!r}")
    spec = {**spec, "seeds": seeds, "eval": ev}
    tasks_spec = spec.get("tasks")
    if not isinstance(tasks_spec, list) or not tasks_spec:
        _fail(name, "tasks: must be a non-empty list")
    if spec["study"] in ("length", "kl") and len(tasks_spec) != 1:
        _fail(name, f"tasks: the {spec['study']} study takes one task, got {len(tasks_spec)}")
    if spec["study"] == "passk" and (spec.get("grid") or spec.get("cases")):
        _fail(name, "grid: the passk study has no grid (its arms are SFT, GRPO, continued SFT)")
    explicit = spec.get("cases") or [{}]
    if not isinstance(explicit, list) or not all(isinstance(c, dict) for c in explicit):
        _fail(name, "cases: must be a list of mappings")
    grid = [{**g, **c} for g in (expand_grid(spec.get("grid")) if spec.get("grid") else [{}])
            for c in explicit]
    tasks = []
    for i, t in enumerate(tasks_spec):
        if not isinstance(t, dict) or "name" not in t or "env" not in t:
            _fail(name, f"tasks[{i}]: must be a mapping with 'name' and 'env'")
        bad = sorted(set(t) - set(TASK_KEYS))
        if bad:
            _fail(name, f"tasks[{i}]: unknown key {bad[0]!r}; keys: {', '.join(TASK_KEYS)}")
        text = str(t["env"]).startswith("text:")
        if not text and spec["study"] != "objectives":
            _fail(name, f"tasks[{i}] ({t['name']}): the {spec['study']} study takes text tasks "
                  f"(env 'text:NAME'), got {t['env']!r}")
        if not text and "sft" in t:
            _fail(name, f"tasks[{i}] ({t['name']}): an environment task has no sft warm start")
        task = {"env": t["env"], "env_kwargs": t.get("env_kwargs") or {},
                **((spec.get("model") or {}) if text else {})}
        grpo_fields = (_merge(spec.get("grpo") or {}, t.get("grpo") or {}) if text
                       else t.get("grpo") or {})
        sft_fields = _merge(spec.get("sft") or {}, t.get("sft") or {})
        try:
            for cls, fields in ((SFTConfig, sft_fields), (GRPOConfig, grpo_fields)):
                wrong = sorted(set(fields) - {f.name for f in dataclasses.fields(cls) if f.init})
                if wrong:
                    raise ValueError(unknown_field(wrong[0], cls))
            sft = SFTConfig(**task, **sft_fields) if text else None
            if text:
                grpo = GRPOConfig(**task, total_timesteps=10**9, **grpo_fields)
                if grpo.num_iterations is None:
                    raise ValueError("grpo: num_iterations must be given")
            else:
                grpo = GRPOConfig(**task, **grpo_fields)
            cases = [(", ".join(f"{k}={v}" for k, v in g.items()), grpo.replace(**g))
                     for g in grid]
        except (TypeError, ValueError) as e:
            _fail(name, f"tasks[{i}] ({t['name']}): {e}")
        tasks.append(Task(t["name"], sft, grpo, cases[:1] if tiny else cases))
    return spec, tasks


# ----------------------------------------------------------------------------- shared steps

def warm_start(task: Task, folder: Path) -> Path:
    """The task's SFT warm start (seed 0) trained into ``folder`` (a run folder)."""
    from jaxgrpo import sft
    sft(task.sft, folder, progress=False)
    return folder


def start_params(run_dir):
    """The warm start's params (seed 0), as JAX arrays."""
    import jax
    from jaxgrpo.runs import load_run
    return jax.tree.map(lambda x: jax.numpy.asarray(x[0]), load_run(run_dir).state.params)


def train_seeds(config, seeds: int, base_seed: int = 0, segments=None):
    """``config`` trained with ``seeds`` seeds vmapped in one compiled program -> (TrainState
    [S], metrics {name: [S, I]}, run seconds, compile seconds). With ``segments`` (a function
    ``segments(state, iteration)``), training runs in chunks of ``eval.every`` iterations given
    as ``segments.every`` and calls it after each (and before the first)."""
    import jax

    from jaxgrpo.runs import build_train
    train = build_train(config)     # init_from read from its run folder
    keys = jax.random.split(jax.random.key(base_seed), seeds)
    if segments is None:
        t0 = time.perf_counter()
        compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
        t1 = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(keys))
        return state, jax.tree.map(np.asarray, metrics), time.perf_counter() - t1, t1 - t0
    every, n = segments.every, config.num_iterations
    state = jax.jit(jax.vmap(train.init))(keys)
    run = {}
    parts, run_s, compile_s = [], 0.0, 0.0
    segments(state, 0)
    done = 0
    while done < n:
        k = min(every, n - done)
        if k not in run:
            t0 = time.perf_counter()
            run[k] = jax.jit(jax.vmap(lambda s, k=k: train.run(s, None, k))).lower(state).compile()
            compile_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        state, m = jax.block_until_ready(run[k](state))
        run_s += time.perf_counter() - t0
        parts.append(jax.tree.map(np.asarray, m))
        done += k
        segments(state, done)
    metrics = {key: np.concatenate([p[key] for p in parts], axis=1) for key in parts[0]}
    return state, metrics, run_s, compile_s


def summary(per_seed) -> dict:
    """{"per_seed", "mean", "ci95"} of per-seed values (NaNs dropped from the CI)."""
    from jaxgrpo.stats import bootstrap_ci
    per_seed = np.asarray(per_seed, np.float64)
    m, lo, hi = bootstrap_ci(per_seed)
    return {"per_seed": per_seed.tolist(), "mean": m, "ci95": [lo, hi]}


def _ci(s, scale=1.0, fmt="{:.1f}") -> str:
    f = lambda x: fmt.format(scale * x)
    if not np.isfinite(s["mean"]):
        return "-"
    if s["ci95"][0] == s["ci95"][1]:
        return f(s["mean"])
    return f"{f(s['mean'])} [{f(s['ci95'][0])}, {f(s['ci95'][1])}]"


def _window(x, frac=0.1):
    """Per seed: the nanmean of ``x`` [S, I] over the first and over the last ``frac`` of its
    iterations -> (first [S], last [S])."""
    import warnings
    w = max(1, int(round(frac * x.shape[1])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x[:, :w], 1), np.nanmean(x[:, -w:], 1)


def model_flops_per_token(config) -> dict:
    """Compute per sequence token, in units of one forward pass (2 x params FLOPs): a GRPO
    iteration's per-completion cost (generation one forward, each epoch's learn phase a forward
    and a backward, 3 forwards, plus a reference forward when beta > 0) and an SFT step's per
    prompt (3 forwards). Attention's quadratic term is left out (at these lengths it is small)."""
    return {"grpo": 1 + config.update_epochs * (3 + (config.beta > 0)), "sft": 3}


def equal_compute_sft_steps(grpo, sft) -> int:
    """SFT steps (``sft.batch_size`` prompts each) that cost as many model FLOPs as ``grpo``'s
    ``num_iterations`` iterations (``num_groups * group_size`` completions each); prompt plus
    completion length is the same sequence for both."""
    f = model_flops_per_token(grpo)
    per_iteration = grpo.num_groups * grpo.group_size * f["grpo"]
    return max(1, int(round(grpo.num_iterations * per_iteration / (sft.batch_size * f["sft"]))))


# ----------------------------------------------------------------------------- study 1: pass@k

def study_passk(spec, tasks, work: Path) -> dict:
    import dataclasses as dc

    import jax

    from jaxgrpo.text import evaluate_text
    ev, seeds = spec["eval"], spec["seeds"]
    out = []
    for i, t in enumerate(tasks):
        start = warm_start(t, work / f"task{i}")
        grpo = t.grpo.replace(init_from=str(start))
        base = evaluate_text(t.sft, jax.tree.map(lambda x: x[None], start_params(start)),
                             num_prompts=ev["prompts"], num_samples=ev["samples"])
        g_state, g_m, g_s, g_c = train_seeds(grpo, seeds, spec.get("base_seed", 0))
        g_ev = evaluate_text(grpo, g_state.params, num_prompts=ev["prompts"],
                             num_samples=ev["samples"])
        steps = equal_compute_sft_steps(grpo, t.sft)
        cont = dc.replace(t.sft, num_steps=steps, init_from=str(start))
        c_state, c_m, c_s, _ = train_seeds(cont, seeds, spec.get("base_seed", 0))
        c_ev = evaluate_text(cont, c_state.params, num_prompts=ev["prompts"],
                             num_samples=ev["samples"])
        arms = {"SFT start": base, "GRPO": g_ev, "continued SFT": c_ev}
        out.append({"task": t.name, "env": t.grpo.env, "env_kwargs": dict(t.grpo.env_kwargs),
                    "sft_steps": t.sft.num_steps, "grpo_iterations": grpo.num_iterations,
                    "completions_per_iteration": grpo.num_groups * grpo.group_size,
                    "cont_sft_steps": steps, "grpo_run_s": g_s, "cont_sft_run_s": c_s,
                    "grpo_train_accuracy": g_m["accuracy"].tolist(),
                    "arms": {a: {"greedy": e["greedy_accuracy"],
                                 "pass_at_k": {str(k): v for k, v in e["pass_at_k"].items()}}
                             for a, e in arms.items()}})
    return {"tasks": out}


def table_passk(res, spec) -> str:
    ks = [k for k in ("1", "4", "16", "64") if k in res["tasks"][0]["arms"]["GRPO"]["pass_at_k"]]
    rows = ["| task | arm | compute | greedy | " + " | ".join(f"pass@{k}" for k in ks) + " |",
            "|---|---|---|---:|" + "---:|" * len(ks)]
    for r in res["tasks"]:
        compute = {"SFT start": f"{r['sft_steps']} SFT steps",
                   "GRPO": f"+{r['grpo_iterations']} iterations ({r['grpo_run_s']:.0f} s)",
                   "continued SFT": f"+{r['cont_sft_steps']} steps ({r['cont_sft_run_s']:.0f} s)"}
        for arm, a in r["arms"].items():
            rows.append(f"| {r['task']} | {arm} | {compute[arm]} | {_ci(a['greedy'], 100)} | "
                        + " | ".join(_ci(a["pass_at_k"][k], 100) for k in ks) + " |")
    return "\n".join(rows)


def plot_passk(res, path):
    plt = _plt()
    fig, axes = plt.subplots(1, len(res["tasks"]), figsize=(4.4 * len(res["tasks"]), 3.3),
                             squeeze=False)
    for ax, r in zip(axes[0], res["tasks"]):
        for arm, a in r["arms"].items():
            ks = sorted(int(k) for k in a["pass_at_k"])
            mean = np.array([a["pass_at_k"][str(k)]["mean"] for k in ks])
            lo = np.array([a["pass_at_k"][str(k)]["ci95"][0] for k in ks])
            hi = np.array([a["pass_at_k"][str(k)]["ci95"][1] for k in ks])
            ax.plot(ks, mean, marker="o", ms=3, label=arm)
            ax.fill_between(ks, lo, hi, alpha=0.25)
        ax.set(xscale="log", title=r["task"], xlabel="k", ylabel="pass@k (held-out)", ylim=(0, 1.02))
        ax.set_xticks(ks, [str(k) for k in ks])
    axes[0][0].legend(fontsize=7, loc="lower right")
    _save(fig, path)


# ----------------------------------------------------------------------------- study 2: length

def study_length(spec, tasks, work: Path) -> dict:
    from jaxgrpo.text import evaluate_text
    (t,) = tasks
    ev, seeds = spec["eval"], spec["seeds"]
    start = warm_start(t, work / "start")
    import jax
    base = evaluate_text(t.sft, jax.tree.map(lambda x: x[None], start_params(start)),
                         num_prompts=ev["prompts"], num_samples=0)
    out = []
    for label, cfg in t.cases:
        cfg = cfg.replace(init_from=str(start))
        state, m, run_s, compile_s = train_seeds(cfg, seeds, spec.get("base_seed", 0))
        e = evaluate_text(cfg, state.params, num_prompts=ev["prompts"], num_samples=0)
        out.append({"case": label, "loss_type": cfg.loss_type,
                    "scale_rewards": cfg.scale_rewards, "run_s": run_s, "compile_s": compile_s,
                    "greedy": e["greedy_accuracy"],
                    **{k: m[k].tolist() for k in ("accuracy", "completions/mean_length",
                                                   "completions/mean_length_correct",
                                                   "completions/mean_length_wrong")}})
    return {"task": t.name, "env": t.grpo.env, "env_kwargs": dict(t.grpo.env_kwargs),
            "max_new_tokens": t.grpo.task.max_new_tokens, "sft_steps": t.sft.num_steps,
            "sft_greedy": base["greedy_accuracy"]["mean"],
            "iterations": t.grpo.num_iterations, "cases": out}


def table_length(res, spec) -> str:
    rows = ["| loss_type | scale_rewards | held-out greedy | training accuracy (last 10%) "
            "| length, correct: first 10% -> last 10% | length, wrong: first -> last |",
            "|---|---|---:|---:|---:|---:|"]
    for c in res["cases"]:
        _, acc = _window(np.asarray(c["accuracy"]))
        lc0, lc1 = _window(np.asarray(c["completions/mean_length_correct"], float))
        lw0, lw1 = _window(np.asarray(c["completions/mean_length_wrong"], float))
        rows.append(f"| {c['loss_type']} | {c['scale_rewards']} | {_ci(c['greedy'], 100)} "
                    f"| {_ci(summary(acc), 100)} "
                    f"| {_ci(summary(lc0), fmt='{:.2f}')} -> {_ci(summary(lc1), fmt='{:.2f}')} "
                    f"| {_ci(summary(lw0), fmt='{:.2f}')} -> {_ci(summary(lw1), fmt='{:.2f}')} |")
    return "\n".join(rows)


def plot_length(res, path):
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    styles = {"group": "-", "batch": "-.", "none": "--"}
    colors = {lt: f"C{i}" for i, lt in enumerate(dict.fromkeys(c["loss_type"]
                                                             for c in res["cases"]))}
    keys = (("completions/mean_length_correct", "length of correct completions"),
            ("completions/mean_length_wrong", "length of wrong completions"),
            ("accuracy", "training accuracy (sampled)"))
    for ax, (k, title) in zip(axes, keys):
        for c in res["cases"]:
            x = np.asarray(c[k], float)
            with np.errstate(all="ignore"):
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = _smooth(np.nanmean(x, 0))
            ax.plot(np.arange(1, x.shape[1] + 1), mean, color=colors[c["loss_type"]],
                    ls=styles.get(c["scale_rewards"], ":"), lw=1.3,
                    label=f"{c['loss_type']}, scale_rewards={c['scale_rewards']}")
        ax.set(title=title, xlabel="GRPO iteration")
    axes[0].set_ylabel("tokens (EOS included)")
    axes[2].legend(fontsize=6, loc="lower right")
    _save(fig, path)


def _smooth(y, w=5):
    """Running mean over ``w`` iterations (NaNs skipped)."""
    ok = np.isfinite(y)
    k = np.ones(min(w, len(y)))
    num = np.convolve(np.where(ok, y, 0.0), k, "same")
    den = np.convolve(ok.astype(float), k, "same")
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


# ----------------------------------------------------------------------------- study 3: KL

def kl_probe(model, task, temperature, prompts, key, samples: int):
    """``f(params, ref_params)`` -> per-token means over completions sampled from pi (``samples``
    per held-out prompt): ``exact`` (the full-vocabulary KL(pi || pi_ref) at each completion
    position, from the logits), ``k1``/``k2``/``k3`` (``jaxgrpo.losses.kl_estimate`` of the
    sampled tokens, what the loss sees), ``exact_seq`` (exact per-token KLs summed over a
    completion, mean over completions) and ``accuracy`` (sampled). Jittable, vmappable."""
    import jax
    import jax.numpy as jnp

    from jaxgrpo.losses import kl_estimate
    from jaxgrpo.text.evaluation import completion_scores

    rep = jax.tree.map(lambda x: jnp.repeat(x, samples, axis=0), prompts)

    def f(params, ref_params):
        comp, reward = completion_scores(model, task, params, prompts, key, samples, temperature)
        comp = comp.reshape(-1, comp.shape[-1])
        lp, lq, mask = token_logits(model, params, ref_params, rep.tokens, comp, temperature)
        kl_tok = jnp.sum(jnp.exp(lp) * (lp - lq), -1)
        a = comp[..., None]
        lp_a = jnp.take_along_axis(lp, a, -1)[..., 0]
        lq_a = jnp.take_along_axis(lq, a, -1)[..., 0]
        n = jnp.maximum(jnp.sum(mask), 1)
        tok_mean = lambda x: jnp.sum(jnp.where(mask, x, 0.0)) / n
        return {"exact": tok_mean(kl_tok),
                "exact_seq": jnp.mean(jnp.sum(jnp.where(mask, kl_tok, 0.0), 1)),
                **{k: tok_mean(kl_estimate(lp_a, lq_a, k)) for k in ("k1", "k2", "k3")},
                "accuracy": jnp.mean(reward >= 1.0)}

    return f


def token_logits(model, params, ref_params, prompt_tokens, comp, temperature):
    """Temperature-scaled log-softmax of pi and pi_ref at each completion position: (lp [B, M,
    V], lq [B, M, V] (no gradient), mask [B, M], the completion's tokens up to its EOS)."""
    import jax
    import jax.numpy as jnp

    from jaxgrpo.text import PAD
    from jaxgrpo.text.grpo import token_mask
    from jaxgrpo.text.tasks import completion_length
    B, P = prompt_tokens.shape
    M = comp.shape[1]
    tokens = jnp.concatenate([prompt_tokens, comp], 1)
    valid = jnp.concatenate([prompt_tokens != PAD, jnp.ones_like(comp, bool)], 1)
    logp = lambda p: jax.nn.log_softmax(
        model.forward(p, tokens, valid)[:, P - 1:P + M - 1] / temperature)
    mask = token_mask(completion_length(comp), M)
    return logp(params), jax.lax.stop_gradient(logp(ref_params)), mask


def estimator_gradients(model, params, ref_params, prompt_tokens, comp, temperature) -> dict:
    """Flat parameter gradients on one fixed batch (completions ``comp`` [B, M] sampled from pi
    at ``params``), each a token mean over the batch's completion tokens:

    * ``exact``: of sum_a pi(a|s) (log pi(a|s) - log pi_ref(a|s)) at each position s;
    * ``k1``/``k2``/``k3``: of sum_a stop_grad(pi(a|s)) k(a), the estimator's gradient in
      expectation over the sampled token at each position (what the loss follows on average);
    * ``k1_sampled``, ...: of k(a_s) at the sampled tokens (what one batch gives).

    In theory k1's expected gradient is zero, k2's is the exact one, and k3's is the gradient of
    the forward KL(pi_ref || pi) at each position."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from jaxgrpo.losses import kl_estimate

    def grad(per_position):
        def f(p):
            lp, lq, mask = token_logits(model, p, ref_params, prompt_tokens, comp, temperature)
            x = per_position(lp, lq)
            return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
        return ravel_pytree(jax.grad(f)(params))[0]

    take = lambda x: jnp.take_along_axis(x, comp[..., None], -1)[..., 0]
    out = {"exact": grad(lambda lp, lq: jnp.sum(jnp.exp(lp) * (lp - lq), -1))}
    for k in ("k1", "k2", "k3"):
        out[k] = grad(lambda lp, lq, k=k: jnp.sum(jax.lax.stop_gradient(jnp.exp(lp))
                                                  * kl_estimate(lp, lq, k), -1))
        out[f"{k}_sampled"] = grad(lambda lp, lq, k=k: kl_estimate(take(lp), take(lq), k))
    return out


def gradient_bias(model, params, ref_params, prompt_tokens, comp, temperature) -> dict:
    """``estimator_gradients`` summarized: ``{k: {"bias": |E grad_k - exact| / |exact|,
    "cos_sampled": cos(sampled grad_k, exact)}}`` for k1, k2, k3."""
    import jax.numpy as jnp
    g = estimator_gradients(model, params, ref_params, prompt_tokens, comp, temperature)
    norm = jnp.linalg.norm(g["exact"])
    cos = lambda a: jnp.dot(a, g["exact"]) / jnp.maximum(jnp.linalg.norm(a) * norm, 1e-30)
    return {k: {"bias": jnp.linalg.norm(g[k] - g["exact"]) / norm,
                "cos_sampled": cos(g[f"{k}_sampled"])} for k in ("k1", "k2", "k3")}


def study_kl(spec, tasks, work: Path) -> dict:
    import jax

    from jaxgrpo.text import evaluate_text, heldout_prompts
    from jaxgrpo.text.evaluation import completion_scores
    from jaxgrpo.text.grpo import make_policy
    (t,) = tasks
    ev, seeds = spec["eval"], spec["seeds"]
    start = warm_start(t, work / "start")
    ref = start_params(start)
    model, task = make_policy(t.grpo), t.grpo.task
    prompts = heldout_prompts(task, ev["prompts"], seed=0)
    probe = kl_probe(model, task, t.grpo.temperature, prompts, jax.random.key(7), 4)
    probe = jax.jit(jax.vmap(probe, in_axes=(0, None)))
    g_prompts = jax.tree.map(lambda x: x[:ev["grad_prompts"]], prompts)

    def bias_of(params):
        comp, _ = completion_scores(model, task, params, g_prompts, jax.random.key(11), 1,
                                    t.grpo.temperature)
        return gradient_bias(model, params, ref, g_prompts.tokens, comp[:, 0],
                             t.grpo.temperature)

    bias_of = jax.jit(jax.vmap(bias_of))
    out = []
    for label, cfg in t.cases:
        cfg = cfg.replace(init_from=str(start))
        curve = []

        def segments(state, it):
            curve.append({"iteration": it, **jax.tree.map(
                lambda x: np.asarray(x).tolist(), probe(state.params, ref))})

        segments.every = ev["every"]
        state, m, run_s, compile_s = train_seeds(cfg, seeds, spec.get("base_seed", 0), segments)
        e = evaluate_text(cfg, state.params, num_prompts=ev["prompts"], num_samples=0)
        bias = jax.tree.map(lambda x: np.asarray(x).tolist(), bias_of(state.params))
        out.append({"case": label, "kl_estimator": cfg.kl_estimator, "beta": cfg.beta,
                    "run_s": run_s, "compile_s": compile_s, "greedy": e["greedy_accuracy"],
                    "train_kl": m["kl"].tolist(), "accuracy": m["accuracy"].tolist(),
                    "curve": curve, "gradient": bias})
    return {"task": t.name, "env": t.grpo.env, "env_kwargs": dict(t.grpo.env_kwargs),
            "sft_steps": t.sft.num_steps, "iterations": t.grpo.num_iterations,
            "probe_prompts": ev["prompts"], "grad_prompts": ev["grad_prompts"], "cases": out}


def table_kl(res, spec) -> str:
    rows = ["| kl_estimator | beta | held-out greedy | exact KL / token (end) "
            "| its estimate (end, held-out) | E[grad] bias vs exact (k1, k2, k3) "
            "| one-batch grad cosine with exact (k1, k2, k3) |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for c in res["cases"]:
        end = c["curve"][-1]
        g = c["gradient"]
        bias = ", ".join(_ci(summary(g[k]["bias"]), fmt="{:.3f}") for k in ("k1", "k2", "k3"))
        cos = ", ".join(_ci(summary(g[k]["cos_sampled"]), fmt="{:.2f}")
                        for k in ("k1", "k2", "k3"))
        rows.append(f"| {c['kl_estimator']} | {c['beta']} | {_ci(c['greedy'], 100)} "
                    f"| {_ci(summary(end['exact']), fmt='{:.4f}')} "
                    f"| {_ci(summary(end[c['kl_estimator']]), fmt='{:.4f}')} | {bias} | {cos} |")
    return "\n".join(rows)


def plot_kl(res, path):
    plt = _plt()
    betas = sorted({c["beta"] for c in res["cases"]})
    fig, axes = plt.subplots(1, len(betas) + 1, figsize=(4.3 * (len(betas) + 1), 3.3))
    colors = {k: f"C{i}" for i, k in enumerate(("k1", "k2", "k3"))}
    for ax, b in zip(axes, betas):
        for c in (c for c in res["cases"] if c["beta"] == b):
            it = [p["iteration"] for p in c["curve"]]
            k = c["kl_estimator"]
            ax.plot(it, [np.mean(p["exact"]) for p in c["curve"]], color=colors[k],
                    label=f"{k}: exact KL")
            ax.plot(it, [np.mean(p[k]) for p in c["curve"]], color=colors[k], ls="--",
                    label=f"{k}: its estimate")
        ax.set(title=f"beta = {b}", xlabel="GRPO iteration", ylabel="KL per token (held-out)")
        ax.legend(fontsize=6)
    ax = axes[-1]
    for c in res["cases"]:
        x = [p for p in c["curve"][-1]["exact"]]
        for k in ("k1", "k2", "k3"):
            ax.scatter(x, c["gradient"][k]["bias"], color=colors[k], s=8,
                       label=k if c is res["cases"][0] else None)
    ax.set(title="gradient bias at the final policies", xlabel="exact KL per token",
           ylabel="|E grad - exact grad| / |exact grad|")
    ax.legend(fontsize=7)
    _save(fig, path)


# ----------------------------------------------------------------------------- output

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


RUN = {"passk": (study_passk, table_passk, plot_passk),
       "length": (study_length, table_length, plot_length),
       "kl": (study_kl, table_kl, plot_kl)}


def describe(spec, tasks) -> str:
    """One line per task: what was run, at which sizes."""
    lines = []
    for t in tasks:
        g, s = t.grpo, t.sft
        if s is None:    # an environment task
            lines.append(f"{t.name}: GRPO {g.total_timesteps:,} env steps, {g.num_groups} "
                         f"groups x {g.group_size} episodes per iteration"
                         f"{', on-policy' if g.on_policy else ''}")
            continue
        lines.append(f"{t.name} (`{g.env}` {dict(g.env_kwargs) or ''}): SFT start {s.num_steps} "
                     f"steps x {s.batch_size} prompts; GRPO {g.num_iterations} iterations x "
                     f"{g.num_groups} prompts x {g.group_size} completions, lr {g.lr}, "
                     f"{g.num_layers} layers x {g.width} wide")
    return "; ".join(lines)


def save_results(path: Path, res: dict) -> None:
    """A study's raw results as gzip-compressed JSON: every seed's curve over every iteration
    (the objectives study's environment tasks run thousands of iterations: 118 MB as indented
    JSON, under 1 MB compressed)."""
    path.write_bytes(gzip.compress(json.dumps(res, separators=(",", ":"),
                                              default=float).encode(), mtime=0))


def load_results(path: Path) -> dict:
    """What ``save_results`` wrote."""
    return json.loads(gzip.decompress(path.read_bytes()))


def main(name, raw_spec, args, studies=None) -> int:
    """``experiments.run``'s entry for a study YAML (``study:`` key). ``studies``: the
    (study, table, plot) functions of each study kind (default ``RUN``, this module's;
    ``experiments.run`` adds the objectives study's)."""
    try:
        spec, tasks = load(name, raw_spec, tiny=args.tiny)
        if args.seeds is not None and args.seeds < 1:
            raise ValueError(f"--seeds: must be >= 1, got {args.seeds}")
    except ValueError as e:
        print(f"experiments.run: error: {e}", file=sys.stderr)
        return 2
    if args.seeds:
        spec["seeds"] = args.seeds
    out = Path(args.out or (tempfile.mkdtemp(prefix=f"exp_{name}_") if args.tiny
                            else os.path.join(os.path.dirname(__file__), "results")))
    out.mkdir(parents=True, exist_ok=True)
    study, table, plot = (studies or RUN)[spec["study"]]
    res_path = out / f"{name}.json.gz"
    if args.replot:
        if not res_path.exists():
            print(f"experiments.run: error: --replot: {res_path} does not exist",
                  file=sys.stderr)
            return 2
        res = load_results(res_path)
    else:
        commit, t0 = code_version(), time.time()
        print(f"{name}: {spec['study']} study, {spec['seeds']} seeds -> {out}", flush=True)
        with tempfile.TemporaryDirectory() as work:
            res = study(spec, tasks, Path(work))
        res["meta"] = {"commit": commit, "seeds": spec["seeds"],
                       "seconds": round(time.time() - t0), "date": time.strftime("%Y-%m-%d %H:%M"),
                       "machine": machine(), "setup": describe(spec, tasks),
                       "eval": spec["eval"]}
        save_results(res_path, res)
    meta = res["meta"]
    tab = table(res, spec)
    plot(res, out / f"{name}.png")
    cmd = f"python -m experiments.run {name}" + (" --tiny" if args.tiny else "")
    rel = os.path.relpath(out, os.path.dirname(os.path.abspath(__file__)))
    block = (f"`{cmd}` (commit {meta['commit']}, {meta['seeds']} seeds, {meta['seconds']} s in "
             f"all, {meta['date']}).  \nMachine: {meta['machine']}.  \nSetup: {meta['setup']}; "
             f"held-out evaluation on {meta['eval']['prompts']} prompts; [95% bootstrap CI over "
             f"seeds].\n\n{tab}\n\n![{name}]({rel}/{name}.png)\n\nRaw: [{name}.json.gz]({rel}/{name}.json.gz).")
    (out / f"{name}.md").write_text(f"# {spec.get('title', name)}\n\n{block}\n")
    if not args.tiny and args.out is None:
        update_readme(os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md"),
                      name, block)
    print(tab)
    return 0
