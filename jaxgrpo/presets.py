"""Per-environment settings that learn: the config fields (beyond the class defaults) and the
budget for GRPO and PPO on the environments the docs use, each with the result it reaches.

    jaxgrpo.preset("ppo", "Pendulum-v1")                  # a PPOConfig
    jaxgrpo.preset("grpo", "Acrobot-v1", lr=1e-3)          # fields given here override it
    jaxgrpo train --algo ppo --preset Pendulum-v1          # the same from the command line
    preset: Pendulum-v1                                    # ... or in a config / sweep YAML

``target`` is what the preset is claimed to reach: the mean over 8 seeds of each seed's mean
return over 100 sampled-action evaluation episodes (``jaxgrpo.evaluate``) after the budget.
``python -m experiments.presets`` measures every preset (8 seeds) and writes the table in
docs/presets.md; tests/test_presets.py checks that the table was measured on the settings
below.
"""
from __future__ import annotations

import difflib
from typing import Any, NamedTuple

from .config import config_class


class Preset(NamedTuple):
    algo: str
    env: str
    fields: dict            # config fields beyond the class defaults, total_timesteps included
    target: float           # mean evaluation return over 8 seeds it reaches (>=)
    note: str = ""          # what the settings are and where they come from


_PRESETS = [
    Preset("grpo", "CartPole-v1", {"total_timesteps": 300_000}, 475.0,
           "the defaults: 4 same-start groups x 8 episodes, lr 3e-3"),
    Preset("ppo", "CartPole-v1", {"total_timesteps": 500_000}, 475.0,
           "the defaults: PureJaxRL's CartPole settings"),
    Preset("grpo", "Acrobot-v1", {"lr": 1e-3, "total_timesteps": 500_000}, -90.0,
           "lr 1e-3: a gentler step for the stream's groups, which are trained up to a few "
           "updates after they were sampled"),
    Preset("ppo", "Acrobot-v1", {"total_timesteps": 500_000}, -90.0,
           "the defaults"),
    Preset("grpo", "Pendulum-v1",
           {"group_mode": "state", "num_groups": 16, "branch_horizon": 20, "branch_every": 5,
            "gamma": 0.95, "total_timesteps": 4_000_000}, -175.0,
           "state groups: every 5th state of 16 trajectories branches 8 ways for 20 steps "
           "(Pendulum's episodes all last 200 steps, so episode groups compare whole-episode "
           "luck); gamma 0.95 as in the PPO preset"),
    Preset("ppo", "Pendulum-v1",
           {"num_envs": 16, "num_steps": 256, "lr": 3e-4, "gamma": 0.95, "update_epochs": 10,
            "num_minibatches": 32, "ent_coef": 0.0, "reward_transform": "scale(0.1)",
            "total_timesteps": 750_000}, -175.0,
           "the usual continuous-control settings (16 envs x 256 steps, lr 3e-4, gamma 0.95, "
           "10 epochs x 32 minibatches, no entropy bonus) with rewards scaled by 0.1 for the "
           "critic"),
    Preset("grpo", "DeepSea-bsuite",
           {"env_kwargs": {"size": 10}, "group_mode": "state", "group_size": 16,
            "branch_horizon": 10, "reward_transform": "clip(0, 1)", "total_timesteps": 300_000},
           0.9,
           "size 10; state groups branch 16 ways at every state, so the one rewarding action "
           "sequence is found; rewards clipped at 0 so the move penalty does not teach "
           "'stay left'"),
    Preset("ppo", "DeepSea-bsuite",
           {"env_kwargs": {"size": 10}, "reward_transform": "clip(0, 1)",
            "total_timesteps": 300_000}, 0.9,
           "size 10; rewards clipped at 0 (without the clip, 3 of 4 seeds tried settled on "
           "'stay left' within 1M steps)"),
    Preset("grpo", "Breakout-MinAtar", {"lr": 1e-3, "total_timesteps": 65_536}, 2.5,
           "the defaults with lr 1e-3; a short budget (the CNN is slow on a CPU, and episode "
           "groups wait for their longest episode), of which the default iteration count "
           "uses about 37k steps; returns still rise at its end"),
    Preset("ppo", "Breakout-MinAtar",
           {"num_envs": 64, "num_steps": 128, "lr": 5e-4, "num_minibatches": 8,
            "total_timesteps": 131_072}, 3.0,
           "64 envs x 128 steps, lr 5e-4, 8 minibatches; a short budget (the CNN is slow on a "
           "CPU): returns still rise at its end"),
]

PRESETS: dict[tuple[str, str], Preset] = {(p.algo, p.env): p for p in _PRESETS}


def names() -> list[str]:
    """``["grpo/CartPole-v1", ...]``."""
    return [f"{a}/{e}" for a, e in PRESETS]


def get(algo: str, env: str) -> Preset:
    """The preset of ``algo`` on ``env``; ``ValueError`` (starting ``preset:``) if none."""
    try:
        return PRESETS[(algo, env)]
    except KeyError:
        have = sorted(e for a, e in PRESETS if a == algo)
        close = difflib.get_close_matches(str(env), have, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"preset: no {algo} preset for {env!r}{hint}; {algo} presets: "
                         f"{', '.join(have) or 'none'}") from None


def preset_fields(algo: str, env: str) -> dict:
    """The config fields of the preset (``env`` included), as a dict for the config class."""
    return {"env": env, **get(algo, env).fields}


def preset(algo: str = "grpo", env: str = "CartPole-v1", **overrides: Any):
    """The config of the preset of ``algo`` on ``env``, with ``overrides`` applied."""
    return config_class(algo)(**{**preset_fields(algo, env), **overrides})
