"""The GRPO-family objectives side by side (``objectives.yaml``, ``study: objectives``), run by
``python -m experiments.run objectives [--tiny] [--seeds S] [--out DIR]``.

Every case (a ``loss_type``, or an ``advantage`` estimator with the grpo loss) on every task:
text tasks start from their SFT warm start (``text_studies.warm_start``, seed 0) and train
``num_iterations`` GRPO iterations; environment tasks train from scratch for their
``total_timesteps`` env steps. Each case runs its seeds vmapped in one compiled program
(``text_studies.train_seeds``) and keeps every iteration's metrics:

* score: text, the sampled training accuracy (and, at the end, the held-out greedy accuracy,
  ``evaluate_text``); environments, the mean return of the episodes that ended in the
  iteration;
* ``entropy`` (the policy's mean entropy over the trained tokens or steps);
* length: ``completions/mean_length`` (tokens, EOS included) or ``episode_length``;
* clipped fraction: ``clip_ratio/region_mean`` (the PPO-clip types and gmpo's log-space clip),
  ``cispo_clip_ratio`` (cispo's capped share); sapo and vespo clip nothing (no value).

Per seed (``per_seed``): ``final`` is the mean score at the end (the last 10% of its
iterations; environments: of its env steps), ``mean`` the mean over training (the area under
the learning curve, a measure of speed; environments: weighted by env steps), and
``first``/``last`` of entropy and length their means over the first and last 10% of its
iterations; the table shows means over seeds with 95% bootstrap CIs (``text_studies.summary``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from experiments.text_studies import (_ci, _plt, _save, _smooth, start_params, summary,
                                      train_seeds, warm_start)

CURVES = ("score", "entropy", "length", "clipped")


def _case_name(cfg) -> str:
    """The case's label: its ``loss_type``, or its estimator when not the default."""
    if cfg.advantage != "grpo":
        return f"{cfg.advantage} (grpo loss)"
    return cfg.loss_type + (f", clip_eps_high={cfg.clip_eps_high}"
                            if cfg.loss_type == "cispo" and cfg.clip_eps_high is not None else "")


def curves(metrics, text: bool, loss_type: str) -> dict:
    """{curve: [S, I] float} of one case's metrics ({name: [S, I]}); NaN where an iteration has
    no value (no finished episode, or a run past its env-step budget; the clipped fraction of
    sapo and vespo, which clip nothing)."""
    f = lambda k: np.asarray(metrics[k], np.float64)
    score = f("accuracy") if text else f("episode_return")
    clip_key = next((k for k in ("cispo_clip_ratio", "clip_ratio/region_mean") if k in metrics),
                    None)       # sapo and vespo on text log none
    clipped = (f(clip_key) if clip_key and loss_type not in ("sapo", "vespo")
               else np.full_like(score, np.nan))
    ran = ~np.isnan(f("episode_return"))       # an iteration that collected episodes
    out = {"score": score, "entropy": f("entropy"),
           "length": f("completions/mean_length") if text else f("episode_length"),
           "clipped": clipped, "env_steps": f("env_steps"),
           "episodes": np.nan_to_num(f("episodes"))}
    for k in ("entropy", "length", "clipped"):
        out[k] = np.where(ran, out[k], np.nan)
    return out


def per_seed(c: dict, text: bool, frac: float = 0.1) -> dict:
    """Per-seed summaries [S] of a case's curves (``curves``), over each seed's scored
    iterations (NaN for a seed with none): ``final`` score (text: the mean over the last
    ``frac`` of them; environments: the episode-weighted mean return over the iterations in the
    last ``frac`` of the seed's env steps), ``mean`` score over training (text: over
    iterations; environments: weighted by each iteration's env steps, the area under the
    return-against-env-steps curve over its length), ``entropy_first``/``_last`` and
    ``length_first``/``_last`` (means over the first / last ``frac`` of the scored
    iterations) and ``clipped`` (the mean over all)."""
    score = np.asarray(c["score"], np.float64)
    out = {k: [] for k in ("final", "mean", "entropy_first", "entropy_last", "length_first",
                           "length_last", "clipped")}
    for s in range(score.shape[0]):
        ok = np.nonzero(~np.isnan(score[s]))[0]
        if not len(ok):
            for v in out.values():
                v.append(np.nan)
            continue
        w = max(1, int(round(frac * len(ok))))
        y = score[s, ok]
        if text:
            out["final"].append(float(np.mean(y[-w:])))
            out["mean"].append(float(np.mean(y)))
        else:
            steps = np.asarray(c["env_steps"], np.float64)[s]
            used = np.diff(np.concatenate([[0.0], steps]))[ok]
            n = np.asarray(c["episodes"], np.float64)[s, ok]
            last = steps[ok] >= (1 - frac) * steps[ok[-1]]
            out["final"].append(float(np.sum(n[last] * y[last]) / max(np.sum(n[last]), 1e-9)))
            out["mean"].append(float(np.sum(used * y) / max(np.sum(used), 1e-9)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for k in ("entropy", "length"):
                x = np.asarray(c[k], np.float64)[s]
                out[f"{k}_first"].append(float(np.nanmean(x[ok[:w]])))
                out[f"{k}_last"].append(float(np.nanmean(x[ok[-w:]])))
            out["clipped"].append(float(np.nanmean(np.asarray(c["clipped"], np.float64)[s])))
    return {k: np.asarray(v) for k, v in out.items()}


def mean_curve(c: dict, key: str, text: bool, points: int = 100):
    """(x, mean over seeds of ``c[key]``, 5-iteration running mean per seed): text, against
    the iteration; environments, against env steps, each seed's curve interpolated at
    ``points`` env steps up to the fewest any seed used (seeds differ in steps per
    iteration)."""
    y = np.asarray(c[key], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if text:
            return np.arange(1, y.shape[1] + 1), _smooth(np.nanmean(y, 0))
        steps = np.asarray(c["env_steps"], np.float64)
        seeds = []
        for s in range(y.shape[0]):
            ok = ~np.isnan(y[s])
            if ok.sum() >= 2:
                seeds.append((steps[s, ok], _smooth(y[s, ok])))
        if not seeds:
            return np.array([]), np.array([])
        top = min(x[-1] for x, _ in seeds)
        grid = np.linspace(min(x[0] for x, _ in seeds), top, points)
        return grid, np.nanmean([np.interp(grid, x, v) for x, v in seeds], 0)


def study(spec, tasks, work: Path) -> dict:
    """Train every case of every task (seeds vmapped) -> {"tasks": [{"task", "env", "text",
    "cases": [{"case", "loss_type", "advantage", "run_s", "compile_s", curves..., "greedy"
    (text)}]}]}."""
    import jax

    from jaxgrpo.text import evaluate_text
    seeds, ev = spec["seeds"], spec["eval"]
    out = []
    for i, t in enumerate(tasks):
        text = t.sft is not None
        start = warm_start(t, work / f"task{i}") if text else None
        base = None
        if text:
            base = evaluate_text(t.sft, jax.tree.map(lambda x: x[None], start_params(start)),
                                 num_prompts=ev["prompts"], num_samples=0)["greedy_accuracy"]
        cases = []
        for label, cfg in t.cases:
            if text:
                cfg = cfg.replace(init_from=str(start))
            state, m, run_s, compile_s = train_seeds(cfg, seeds, spec.get("base_seed", 0))
            c = {"case": _case_name(cfg), "label": label, "loss_type": cfg.loss_type,
                 "advantage": cfg.advantage, "run_s": run_s, "compile_s": compile_s,
                 **{k: v.tolist() for k, v in curves(m, text, cfg.loss_type).items()}}
            if text:
                c["greedy"] = evaluate_text(cfg, state.params, num_prompts=ev["prompts"],
                                            num_samples=0)["greedy_accuracy"]
            cases.append(c)
            print(f"  {t.name}: {c['case']}: {run_s:.1f} s (+{compile_s:.1f} s compile)",
                  flush=True)
        out.append({"task": t.name, "env": t.grpo.env, "env_kwargs": dict(t.grpo.env_kwargs),
                    "text": text, "start_greedy": base, "cases": cases,
                    "budget": (t.grpo.num_iterations if text else t.grpo.total_timesteps)})
    return {"tasks": out}


def table(res, spec) -> str:
    """One markdown table per task: final and mean-over-training score, held-out greedy
    accuracy (text), entropy and length first -> last, clipped fraction, run seconds."""
    parts = []
    for r in res["tasks"]:
        text = r["text"]
        unit = "accuracy %" if text else "return"
        scale = 100.0 if text else 1.0
        head = (f"**{r['task']}** (`{r['env']}`"
                + (f", SFT start held-out greedy {_ci(r['start_greedy'], 100)}%" if text else "")
                + ")\n\n")
        rows = [f"| objective | final {unit} | mean {unit} over training"
                + (" | held-out greedy %" if text else "")
                + " | entropy: first 10% -> last 10% | length: first -> last | clipped fraction"
                  " | run s |",
                "|---|---:|---:|" + ("---:|" if text else "") + "---:|---:|---:|---:|"]
        for c in r["cases"]:
            p = per_seed(c, text)
            fmt = "{:.2f}"
            rows.append(
                f"| {c['case']} | {_ci(summary(p['final']), scale)} "
                f"| {_ci(summary(p['mean']), scale)} "
                + (f"| {_ci(c['greedy'], 100)} " if text else "")
                + f"| {_ci(summary(p['entropy_first']), fmt=fmt)} -> "
                  f"{_ci(summary(p['entropy_last']), fmt=fmt)} "
                + f"| {_ci(summary(p['length_first']), fmt='{:.1f}')} -> "
                  f"{_ci(summary(p['length_last']), fmt='{:.1f}')} "
                + f"| {_ci(summary(p['clipped']), fmt='{:.3f}')} | {c['run_s']:.0f} |")
        parts.append(head + "\n".join(rows))
    return "\n\n".join(parts)


def plot(res, path):
    """A row per task, a column per curve (score, entropy, length, clipped fraction): the mean
    over seeds (``mean_curve``) against iterations (text) or env steps."""
    plt = _plt()
    n = len(res["tasks"])
    fig, axes = plt.subplots(n, 4, figsize=(17, 3.1 * n), squeeze=False)
    titles = {"score": "score", "entropy": "entropy", "length": "length", "clipped":
              "clipped fraction"}
    cmap = plt.get_cmap("tab20")
    for row, r in zip(axes, res["tasks"]):
        for j, c in enumerate(r["cases"]):
            for ax, k in zip(row, CURVES):
                x, mean = mean_curve(c, k, r["text"])
                if not len(mean) or np.all(np.isnan(mean)):
                    continue
                ax.plot(x, mean, color=cmap(j % 20), lw=1.2, label=c["case"],
                        ls="-" if j < 10 else "--")
        unit = "training accuracy" if r["text"] else "training return"
        for ax, k in zip(row, CURVES):
            ax.set(title=f"{r['task']}: {unit if k == 'score' else titles[k]}",
                   xlabel="GRPO iteration" if r["text"] else "env steps")
            ax.title.set_fontsize(8)
    axes[0][0].legend(fontsize=6, loc="lower right", ncol=2)
    _save(fig, path)
