"""Learning targets, 8 seeds vmapped in one call each.

core (defaults plus the budget; GRPO's last iteration may end past the budget, by less than
one iteration: the table's "max env steps used" column gives the steps each target took):
    GRPO CartPole-v1 >= 475 with a 300k-step budget
    GRPO Acrobot-v1  >= -100 with a 500k-step budget
    GRPO CartPole-v1 with the on-policy collector (on_policy=True) >= 475 with a 300k-step budget
    PPO  CartPole-v1 >= 475 with a 500k-step budget
groups (group_mode="state", settings and budgets below):
    GRPO CartPole-v1 >= 475
    GRPO DeepSea-bsuite size 10 >= 0.9 on at least 6 of 8 seeds

"final return" = mean return of 100 sampled-action evaluation episodes of each seed's final
policy (jaxgrpo.evaluate), averaged over seeds; also shown: the training return of the last
iteration that ran. Writes experiments/targets_SUITE.md and the same table into
docs/results.md (between its ``targets_SUITE`` markers).

    python -m experiments.targets core
    python -m experiments.targets groups
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import jaxgrpo
from experiments.common import bootstrap_ci, last_valid, machine, train_and_evaluate

SUITES = {
    "core": [
        ("GRPO", jaxgrpo.GRPOConfig(env="CartPole-v1", total_timesteps=300_000), 475.0),
        ("GRPO", jaxgrpo.GRPOConfig(env="Acrobot-v1", total_timesteps=500_000), -100.0),
        ("GRPO on-policy (comparison)", jaxgrpo.GRPOConfig(env="CartPole-v1", on_policy=True,
                                                           total_timesteps=300_000), 475.0),
        ("PPO", jaxgrpo.PPOConfig(env="CartPole-v1", total_timesteps=500_000), 475.0),
    ],
    "groups": [
        # lr 1e-3, not the default 3e-3: at 3e-3 one of these 8 seeds reached 500 and then
        # oscillated (mean 467, after the collectors' random streams changed in 6189c99)
        ("GRPO state", jaxgrpo.GRPOConfig(
            env="CartPole-v1", group_mode="state", group_size=4, branch_every=20,
            branch_horizon=100, lr=1e-3, total_timesteps=2_000_000), 475.0),
        ("GRPO state", jaxgrpo.GRPOConfig(
            env="DeepSea-bsuite", env_kwargs={"size": 10}, group_mode="state", group_size=16,
            branch_horizon=10, reward_transform="clip(0, 1)", total_timesteps=300_000), 0.9),
        ("GRPO episode (comparison)", jaxgrpo.GRPOConfig(
            env="DeepSea-bsuite", env_kwargs={"size": 10}, group_size=16,
            reward_transform="clip(0, 1)", total_timesteps=300_000), 0.9),
    ],
}
PER_SEED = {"DeepSea-bsuite": 6}   # target met when this many seeds reach it (else: the mean)


def settings(cfg) -> str:
    """The env and the fields that differ from the config class's defaults."""
    default = type(cfg)(env=cfg.env, env_kwargs=cfg.env_kwargs)
    keep = [f for f in cfg.__dataclass_fields__                 # private: bookkeeping
            if f not in ("env", "env_kwargs") and not f.startswith("_")]
    diff = {f: getattr(cfg, f) for f in keep
            if getattr(cfg, f) != getattr(default, f) or f == "total_timesteps"}
    diff = {k: getattr(v, "__name__", v) for k, v in diff.items()}
    kw = f" {dict(cfg.env_kwargs)}" if cfg.env_kwargs else ""
    return f"{cfg.env}{kw}: " + ", ".join(f"{k}={v!r}" for k, v in diff.items())


def main(suite: str = "core", seeds: int = 8):
    out = Path(__file__).resolve().parent / f"targets_{suite}.md"
    rows = []
    for name, cfg, target in SUITES[suite]:
        ev, m, compile_s, run_s = train_and_evaluate(cfg, seeds, 100)
        mean, lo, hi = bootstrap_ci(ev)
        steps = np.asarray(m["env_steps"])[:, -1]
        need = PER_SEED.get(cfg.env)
        met = (ev >= target).sum() >= need if need else mean >= target
        row = (f"| {name} | {settings(cfg)} | {int(steps.max()):,} | "
               f"{mean:.2f} [{lo:.2f}, {hi:.2f}] | {ev.min():.2f} | {(ev >= target).sum()}/{seeds} | "
               f"{np.mean(last_valid(m['episode_return'])):.2f} | {target:g} | "
               f"{'yes' if met else 'NO'} | {compile_s:.1f} | {run_s:.1f} |")
        print(row, flush=True)
        rows.append(row)
    table = (f"`python -m experiments.targets {suite}`, {seeds} seeds vmapped in one call; "
             f"machine: {machine()}.\n\n"
             "| algo | env: settings beyond the defaults | max env steps used (of 8 seeds) | "
             "final return, mean [95% CI] | worst seed | seeds >= target | "
             "last-iteration train return | target | met | compile s | run s |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    with open(out, "w") as f:
        f.write(f"# Learning targets: {suite}\n\n{table}")
    page = Path(__file__).resolve().parent.parent / "docs" / "results.md"
    if page.is_file():
        marker = f"targets_{suite}"
        text = re.sub(rf"<!-- {marker}:begin -->.*?<!-- {marker}:end -->",
                      lambda _: f"<!-- {marker}:begin -->\n{table}<!-- {marker}:end -->",
                      page.read_text(), flags=re.S)
        page.write_text(text)


if __name__ == "__main__":
    import sys
    main(*(sys.argv[1:2] or ["core"]))
