"""The tables the commands print: a training run's result, an evaluation (returns, or a
text run's accuracy and pass@k). Each returns the text; the commands print it."""
from __future__ import annotations


def result_table(summary: dict, out) -> str:
    """What ``jaxgrpo train`` prints: a header line, each seed's final return and env steps,
    the mean with its 95% CI, a note when the run used far less than its budget, the times."""
    fmt = lambda x: "nan" if x is None else f"{x:.2f}"
    fr = summary["final_return"]
    text = str(summary["env"]).startswith("text:")
    what = ("final acc." if summary["algo"] == "sft" else "final reward") if text else \
        "final return"
    steps = ("prompts" if summary["algo"] == "sft" else "tokens") if text else "env steps"
    budget = summary["total_timesteps"]
    if summary["complete"]:
        state = "done"
    else:
        state = (f"stopped at iteration {summary['iterations_done']}/{summary['iterations']}; "
                 f"continue with jaxgrpo train --resume {out}")
    lines = [f"{summary['algo'].upper()} {summary['env']}, {summary['seeds']} seed(s), "
             f"{budget:,}-step budget: {state}",
             f"  {'seed':>4}  {what:>12}  {steps:>10}"]
    for s, (r, n) in enumerate(zip(fr["per_seed"], summary["env_steps_by_seed"])):
        lines.append(f"  {s:>4}  {fmt(r):>12}  {n:>10,.0f}")
    ci = fr["ci95"]
    lines.append(f"  {'mean':>4}  {fmt(fr['mean']):>12}  {summary['env_steps_per_seed']:>10,.0f}"
                 f"   95% CI of the mean over seeds: [{fmt(ci[0])}, {fmt(ci[1])}]")
    used = summary["env_steps_per_seed"]
    if summary["complete"] and used < 0.9 * budget:
        if summary["algo"] == "ppo":
            lines.append(f"  note: used {used:,.0f} of the {budget:,}-step budget per seed: PPO "
                         f"runs whole iterations of num_envs x num_steps steps, and "
                         f"{summary['iterations']} fit in the budget")
        elif summary.get("num_iterations") is not None:   # the default count fits the budget
            lines.append(f"  note: used {used:,.0f} of the {budget:,}-step budget per seed: the "
                         f"run ended after its {summary['iterations']} iterations "
                         f"(num_iterations={summary['num_iterations']}); raise num_iterations "
                         "(--set num_iterations=N) or leave it unset to use the rest")
    lines.append({"final return": "  (final return: each seed's training return in its last "
                                  "iteration)",
                  "final reward": "  (final reward: each seed's mean verifier reward of its "
                                  "last iteration's completions)",
                  "final acc.": "  (final accuracy: each seed's last training batch, greedy "
                                "by teacher forcing)"}[what])
    lines.append(f"compile {summary['compile_seconds']:.1f} s, run {summary['run_seconds']:.1f} s "
                 f"({(summary['steps_per_second'] or 0):,.0f} env steps/s, all seeds"
                 + (f" over {summary['seed_devices']} devices"
                    if summary.get("seed_devices", 1) > 1 else "") + "); "
                 f"wrote {out}")
    return "\n".join(lines)


def _pm(x: dict) -> str:
    return f"{x['mean']:>9.2f} +- {x['std']:<6.2f}"


def eval_table(res: dict, seeds: int, episodes: int) -> str:
    """What ``jaxgrpo eval`` prints for a gymnax run (``res``: ``runs.evaluate_run``'s)."""
    g, m = res["greedy"], res["sampled"]
    lines = [f"{episodes} episodes per seed and mode; return mean +- std over episodes",
             f"{'seed':>6}  {'greedy':>18}  {'sampled':>18}"]
    for s in range(seeds):
        lines.append(f"{s:>6}  {_pm(g['per_seed'][s])}  {_pm(m['per_seed'][s])}")
    lines.append(f"{'all':>6}  {_pm(g)}  {_pm(m)}")
    lines.append(f"95% bootstrap CI of the mean over seeds: greedy [{g['ci95'][0]:.2f}, "
                 f"{g['ci95'][1]:.2f}], sampled [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]")
    return "\n".join(lines)


def _pct(x) -> str:
    return f"{100 * x:6.1f}%"


def text_eval_table(res: dict, seeds: int, prompts: int, samples: int) -> str:
    """What ``jaxgrpo eval`` prints for a text run (``res``: ``evaluate_text``'s): held-out
    greedy accuracy and pass@k per seed, then seed 0's greedy completions of a few prompts."""
    ks = list(res["pass_at_k"])
    acc, passk = res["greedy_accuracy"], res["pass_at_k"]
    lines = [f"{prompts} held-out prompts; pass@k from {samples} completions per prompt "
             f"at temperature {res['temperature']:g} (unbiased estimator)",
             f"{'seed':>6}  {'greedy':>7}  " + "  ".join(f"{'pass@' + str(k):>8}" for k in ks)]
    for s in range(seeds):
        lines.append(f"{s:>6}  {_pct(acc['per_seed'][s])}  " + "  ".join(
            f"{_pct(passk[k]['per_seed'][s]):>8}" for k in ks))
    lines.append(f"{'mean':>6}  {_pct(acc['mean'])}  " + "  ".join(
        f"{_pct(passk[k]['mean']):>8}" for k in ks))
    lo, hi = acc["ci95"]
    lines.append(f"95% bootstrap CI of the mean greedy accuracy over seeds: [{100 * lo:.1f}%, "
                 f"{100 * hi:.1f}%]")
    lines.append("seed 0, greedy:")
    for ex in res["examples"]:
        mark = "ok" if ex["reward"] >= 1.0 else "wrong"
        lines.append(f"  {ex['prompt']}{ex['completion']}   ({mark})")
    return "\n".join(lines)


def sft_accuracy_line(res: dict, prompts: int) -> str:
    """The held-out greedy accuracy ``jaxgrpo sft`` prints at the end (per seed; the mean)."""
    acc = res["greedy_accuracy"]
    return (f"held-out greedy accuracy ({prompts} prompts): "
            + ", ".join(f"{100 * a:.1f}%" for a in acc["per_seed"])
            + (f"; mean {100 * acc['mean']:.1f}%" if len(acc["per_seed"]) > 1 else ""))
