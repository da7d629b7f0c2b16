"""Language-model GRPO learning targets: SFT warm start, then GRPO with 8 seeds vmapped,
against continued SFT for the same wall time.

    python -m experiments.text_targets            # all cases -> results/text_targets.{json,md,png}
    python -m experiments.text_targets --only sort  # rerun the cases whose name starts so,
                                                    # keeping the others' saved results
    python -m experiments.text_targets --tiny     # smoke size, to a temporary folder

Per case: one SFT run (seed 0) into a run folder, as ``jaxgrpo sft`` writes it; its held-out
greedy accuracy on 1000 prompts; then GRPO from it (``init_from``) with 8 seeds in one compiled
call (keys ``split(key(0), 8)``; vmapped on an accelerator, one after another with ``lax.map``
on a CPU, as ``jaxgrpo train --seeds 8`` runs them there: ``vmap_size="auto"``), and a
continued-SFT arm (``SFTConfig(init_from=...)``, 8 seeds the same way, fresh prompts) given as
many steps as fit in the GRPO arm's measured run time; both arms are evaluated on the same
held-out prompts (``jaxgrpo.text.evaluate_text``: greedy accuracy, mean over seeds with a 95%
bootstrap CI). Seconds exclude compilation.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent

# name, env, env_kwargs, SFT steps, GRPO iterations (None: the defaults, GRPO's from its
# total_timesteps budget); other settings are the defaults
CASES = [
    ("addition (defaults: 3 digits)", "text:addition", {}, None, None),
    ("addition, 2 digits", "text:addition", {"digits": 2, "leading_zeros": False}, 300, 200),
    ("sort, 8 digits", "text:sort", {"length": 8}, 70, 120),
]
SEEDS = 8


def _seeds(train):
    """``train(key)`` over a batch of keys, batched as a sweep's ``vmap_size="auto"`` does:
    vmapped on an accelerator, one after another (``lax.map``) on a CPU."""
    import jax

    from jaxgrpo.sweeps import resolve_vmap_size
    if resolve_vmap_size("auto", jax.default_backend()) == 1:
        return lambda keys: jax.lax.map(train, keys)
    return jax.vmap(train)


def _timed(fn, *args):
    import jax
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, t1 - t0, time.perf_counter() - t1


def run_case(name, env, env_kwargs, sft_steps, grpo_iters, workdir, seeds=SEEDS, prompts=1000):
    import jax
    import numpy as np

    from jaxgrpo.config import GRPOConfig, SFTConfig
    from jaxgrpo.runs import build_train, load_run
    from jaxgrpo import sft
    from jaxgrpo.text import evaluate_text

    out = Path(workdir) / name.split()[0]
    sft_cfg = SFTConfig(env=env, env_kwargs=env_kwargs,
                        **({} if sft_steps is None else {"num_steps": sft_steps}))
    s = sft(sft_cfg, out, progress=False)
    base = evaluate_text(sft_cfg, load_run(out).state.params, num_prompts=prompts,
                         num_samples=0)["greedy_accuracy"]
    keys = jax.random.split(jax.random.key(0), seeds)

    grpo_cfg = GRPOConfig(env=env, env_kwargs=env_kwargs, init_from=str(out),
                          **({} if grpo_iters is None else
                             {"num_iterations": grpo_iters, "total_timesteps": 10**9}))
    (g_state, g_m), g_compile, g_run = _timed(_seeds(build_train(grpo_cfg)), keys)
    ran = np.isfinite(np.asarray(g_m["accuracy"])[0])   # iterations past the budget are NaN
    g_acc = evaluate_text(grpo_cfg, g_state.params, num_prompts=prompts, num_samples=0)

    # continued SFT: as many steps as fit in the GRPO arm's run time, at the SFT run's speed
    # for the same seeds (measured on a short run first)
    cont = lambda n: SFTConfig(env=env, env_kwargs=env_kwargs, num_steps=n, init_from=str(out))
    _, _, probe = _timed(_seeds(build_train(cont(20))), keys)
    steps = max(1, int(g_run / (probe / 20)))
    (c_state, c_m), _, c_run = _timed(_seeds(build_train(cont(steps))), keys)
    c_acc = evaluate_text(cont(steps), c_state.params, num_prompts=prompts, num_samples=0)
    return {"case": name, "env": env, "env_kwargs": env_kwargs, "sft_steps": sft_cfg.num_steps,
            "sft_seconds": s["run_seconds"], "seeds": seeds, "sft_greedy": base["mean"],
            "grpo_iterations": int(ran.sum()), "grpo_compile_s": g_compile, "grpo_run_s": g_run,
            "grpo_greedy": g_acc["greedy_accuracy"],
            "grpo_train_accuracy": np.asarray(g_m["accuracy"])[:, ran].tolist(),
            "cont_sft_steps": steps, "cont_sft_run_s": c_run,
            "cont_sft_greedy": c_acc["greedy_accuracy"],
            "examples": g_acc["examples"][:3], "commit": _rev()}


def _rev():
    from experiments.common import git_rev
    return git_rev()


def _ci(g):
    return f"{100 * g['mean']:.1f}% [{100 * g['ci95'][0]:.1f}, {100 * g['ci95'][1]:.1f}]"


def table(results, header) -> str:
    rows = [header, "",
            "| case | SFT steps (s) | SFT greedy | GRPO iterations (s, all seeds) | GRPO greedy "
            "| continued SFT steps (s, all seeds) | continued-SFT greedy |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['case']} | {r['sft_steps']} ({r['sft_seconds']:.0f}) "
                    f"| {100 * r['sft_greedy']:.1f}% | {r['grpo_iterations']} "
                    f"({r['grpo_run_s']:.0f}) | {_ci(r['grpo_greedy'])} "
                    f"| {r['cont_sft_steps']} ({r['cont_sft_run_s']:.0f}) "
                    f"| {_ci(r['cont_sft_greedy'])} |")
    return "\n".join(rows) + "\n"


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        acc = np.asarray(r["grpo_train_accuracy"])          # [seeds, iterations]
        x = np.arange(1, acc.shape[1] + 1)
        mean = acc.mean(0)
        half = 1.96 * acc.std(0, ddof=1) / np.sqrt(acc.shape[0]) if acc.shape[0] > 1 else 0
        ax.plot(x, mean, label="GRPO (sampled, training)")
        ax.fill_between(x, mean - half, mean + half, alpha=0.3)
        ax.axhline(r["sft_greedy"], color="gray", ls="--", label="SFT start (greedy)")
        ax.axhline(r["grpo_greedy"]["mean"], color="C0", ls=":", label="GRPO end (greedy)")
        ax.axhline(r["cont_sft_greedy"]["mean"], color="C1", ls=":",
                   label="continued SFT end (greedy)")
        ax.set(title=r["case"], xlabel="GRPO iteration", ylabel="accuracy", ylim=(0, 1))
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def publish(md):
    """The table into experiments/README.md, README.md and docs/language-models.md (between
    their ``<!-- text_targets:begin/end -->`` markers), with the plot beside it."""
    from experiments.common import update_readme
    root = HERE.parent
    for page, png in ((HERE / "README.md", "results/text_targets.png"),
                      (root / "README.md", "experiments/results/text_targets.png"),
                      (root / "docs" / "language-models.md",
                       "../experiments/results/text_targets.png")):
        update_readme(page, "text_targets", md + f"\n![GRPO on text tasks]({png})\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="smoke size, results to a temp folder")
    p.add_argument("--out", help="results folder (default: experiments/results; with --tiny a "
                                 "temporary folder)")
    p.add_argument("--publish", action="store_true",
                   help="only copy results/text_targets.md into the READMEs and docs page")
    p.add_argument("--only", metavar="PREFIX",
                   help="rerun only the cases whose name starts with PREFIX; the other rows "
                        "come from the saved results/text_targets.json")
    a = p.parse_args(argv)
    if a.publish:
        publish((HERE / "results" / "text_targets.md").read_text())
        return 0
    if a.tiny:
        with tempfile.TemporaryDirectory() as tmp:     # a smoke run never touches results/
            return _run(a, p, [("sort, 4 digits", "text:sort", {"length": 4}, 5, 2)], 2, 16,
                        Path(a.out or tmp))
    return _run(a, p, CASES, SEEDS, 1000, Path(a.out or HERE / "results"))


def _run(a, p, all_cases, seeds, prompts, out) -> int:
    from experiments.common import machine
    out.mkdir(parents=True, exist_ok=True)
    cases, saved = all_cases, {}
    if a.only:
        cases = [c for c in all_cases if c[0].startswith(a.only)]
        if not cases:
            p.error(f"--only {a.only!r} matches no case; cases: {[c[0] for c in all_cases]}")
        path = out / "text_targets.json"
        saved = {r["case"]: r for r in json.loads(path.read_text())} if path.exists() else {}
        missing = [c[0] for c in all_cases if c not in cases and c[0] not in saved]
        if missing:
            p.error(f"--only: {out / 'text_targets.json'} has no saved results for {missing}")
    with tempfile.TemporaryDirectory() as tmp:
        for c in cases:       # saved as each case ends, so a later failure loses nothing
            saved[c[0]] = run_case(*c, tmp, seeds=seeds, prompts=prompts)
            (out / "text_targets.json").write_text(
                json.dumps([saved[k[0]] for k in all_cases if k[0] in saved], indent=1))
    results = [saved[c[0]] for c in all_cases]
    header = (f"`python -m experiments.text_targets`, machine: {machine()}; "
              f"greedy accuracy on {prompts} held-out prompts, mean over {seeds} seeds "
              "[95% bootstrap CI]; seconds exclude compilation.")
    md = table(results, header)
    (out / "text_targets.md").write_text(md)
    plot(results, out / "text_targets.png")
    if not a.tiny:
        publish(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
