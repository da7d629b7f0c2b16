"""Does a run train the budget it was asked for? For each case, ``total_timesteps`` against the
env steps the run reached (``metrics["env_steps"]`` after its last iteration) and the steps of
one iteration: the run ends within one iteration of its budget when
``|reached - total_timesteps| < one iteration`` (GRPO runs iterations while steps remain, so it
ends at or past the budget; PPO runs ``total_timesteps // (num_envs * num_steps)`` whole
iterations, as PureJaxRL does, so it ends at or below it).

"one iteration" is the most env steps a single iteration of this run took (``max`` of the
per-iteration increments of ``env_steps``), and, in brackets, the most one iteration could take
(``max_steps_per_iteration`` for GRPO; ``num_envs * num_steps`` for PPO).

Each case trains one seed (``jax.random.key(0)``) from Python: ``jax.jit(jaxgrpo.make_train(
config))``, defaults plus the env and the budget (a text task's steps are completion tokens).
Writes experiments/results/budgets.md.

    python -m experiments.budgets            # the cases of issue 33 (a few minutes on 2 cores)
    python -m experiments.budgets --tiny     # Catch-bsuite at 3k only (seconds)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

import jaxgrpo
from experiments.common import code_version, machine

BUDGETS = (("Catch-bsuite", 20_000), ("CartPole-v1", 100_000), ("Acrobot-v1", 100_000),
           ("Breakout-MinAtar", 50_000), ("text:addition", 20_000))
TINY = (("Catch-bsuite", 3_000),)
OUT = Path(__file__).parent / "results" / "budgets.md"


def configs(env, total):
    """(label, config) of GRPO (stream and on-policy collectors) and PPO on ``env``; a text
    task: GRPO (on-policy; its steps are completion tokens)."""
    if env.startswith("text:"):
        return (("GRPO", jaxgrpo.GRPOConfig(env=env, total_timesteps=total)),)
    return (("GRPO stream", jaxgrpo.GRPOConfig(env=env, total_timesteps=total)),
            ("GRPO on-policy", jaxgrpo.GRPOConfig(env=env, total_timesteps=total,
                                                  on_policy=True)),
            ("PPO", jaxgrpo.PPOConfig(env=env, total_timesteps=total)))


def measure(config) -> dict:
    """Train ``config`` (one seed); the budget's numbers and the seconds."""
    t = time.perf_counter()
    _, metrics = jax.block_until_ready(jax.jit(jaxgrpo.make_train(config))(jax.random.key(0)))
    steps = np.asarray(metrics["env_steps"], np.float64)
    per_iter = np.diff(steps, prepend=0.0)
    most = (config.max_steps_per_iteration if config.algo == "grpo"
            else config.num_envs * config.num_steps)
    reached, one = int(steps[-1]), int(per_iter.max())
    return {"reached": reached, "one": one, "most": int(most),
            "iterations": f"{int(np.sum(per_iter > 0))}/{len(steps)}",
            "within": abs(reached - config.total_timesteps) < one,
            "seconds": time.perf_counter() - t}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="Catch-bsuite 3k only; writes nothing")
    args = p.parse_args(argv)
    rows = ["| algo | env | total_timesteps | env steps reached | one iteration (at most) | "
            "iterations run/scanned | within one iteration | seconds |",
            "|---|---|---:|---:|---:|---:|---|---:|"]
    print(rows[0], rows[1], sep="\n", flush=True)
    for env, total in TINY if args.tiny else BUDGETS:
        for label, config in configs(env, total):
            r = measure(config)
            rows.append(f"| {label} | {env} | {total:,} | {r['reached']:,} | {r['one']:,} "
                        f"({r['most']:,}) | {r['iterations']} | "
                        f"{'yes' if r['within'] else '**no**'} | {r['seconds']:.1f} |")
            print(rows[-1], flush=True)
    if not args.tiny:
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(f"`python -m experiments.budgets` (code {code_version()}, {machine()}, "
                       "1 seed each, compile included in seconds)\n\n" + "\n".join(rows) + "\n")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
