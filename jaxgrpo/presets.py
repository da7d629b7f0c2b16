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

from typing import Any, NamedTuple


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
        raise ValueError(f"preset: no {algo} preset for {env!r}; {algo} presets: "
                         f"{', '.join(have) or 'none'}") from None


def preset_fields(algo: str, env: str) -> dict:
    """The config fields of the preset (``env`` included), as a dict for the config class."""
    return {"env": env, **get(algo, env).fields}


def preset(algo: str = "grpo", env: str = "CartPole-v1", **overrides: Any):
    """The config of the preset of ``algo`` on ``env``, with ``overrides`` applied."""
    from .config import config_class
    return config_class(algo)(**{**preset_fields(algo, env), **overrides})
