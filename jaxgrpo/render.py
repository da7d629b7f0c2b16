"""GIFs of a policy playing, drawn with gymnax's ``Visualizer``."""
from __future__ import annotations

import importlib.util
import os

from .errors import RunError


GIF_ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0",
            "MountainCarContinuous-v0", "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar",
            "Seaquest-MinAtar", "SpaceInvaders-MinAtar", "Catch-bsuite", "Pong-misc",
            "PointRobot-misc", "MetaMaze-misc", "FourRooms-misc")
_PYGAME_ENVS = GIF_ENVS[:5]


def check_gif(config) -> None:
    """Raise ``RunError`` if ``render_gif`` cannot render this env here (no visualizer in
    gymnax, or classic control without pygame)."""
    if config.env not in GIF_ENVS:
        raise RunError(f"--gif: gymnax has no visualizer for {config.env}; it has "
                       f"{', '.join(GIF_ENVS)}")
    if config.env in _PYGAME_ENVS and importlib.util.find_spec("pygame") is None:
        raise RunError(f"--gif: rendering {config.env} needs pygame: "
                       "pip install 'jaxgrpo[render]'")


def render_gif(config, params, path, key, *, greedy: bool = True, max_steps: int | None = None,
               stride: int = 1) -> dict:
    """Render one episode of the policy ``params`` (one seed, no seed axis) to ``path`` with
    gymnax's ``Visualizer``. A host-side loop of jitted policy and ``env.step`` calls; the
    episode ends at termination, the time limit or ``max_steps``; every ``stride``-th state is
    drawn. Returns ``{"return", "steps", "frames"}``."""
    from gymnax.visualize import Visualizer   # here: it imports matplotlib's pyplot

    check_gif(config)
    for k, v in (("PYGAME_HIDE_SUPPORT_PROMPT", "1"), ("SDL_AUDIODRIVER", "dummy"),
                 ("SDL_VIDEODRIVER", "dummy")):   # headless pygame: no audio/display warnings
        os.environ.setdefault(k, v)
    import matplotlib
    matplotlib.use("Agg")
    # here, not at the top: check_gif runs on the command line before JAX is imported
    import jax
    import numpy as np

    from .envs import env_action, make_env
    from .train import make_policy
    env, env_params = make_env(config)
    policy = make_policy(config)
    act = jax.jit(lambda p, o, k: policy.act(p, o[None], k, greedy)[0][0])
    step = jax.jit(lambda k, s, a: env.step(k, s, env_action(policy.spec, a), env_params))
    key, k_reset = jax.random.split(key)
    obs, state = jax.jit(env.reset)(k_reset, env_params)
    limit = int(env_params.max_steps_in_episode) if max_steps is None else max_steps
    states, returns, total, steps = [state], [0.0], 0.0, 0
    for _ in range(limit):
        key, k_act, k_step = jax.random.split(key, 3)
        action = act(params, obs, k_act)
        obs, next_state, reward, terminated, truncated, _ = step(k_step, state, action)
        total += float(reward)
        steps += 1
        if bool(terminated) or bool(truncated):
            break
        state = next_state
        states.append(state)
        returns.append(total)
    keep = list(range(0, len(states), stride))
    if keep[-1] != len(states) - 1:
        keep.append(len(states) - 1)
    class _Visualizer(Visualizer):
        def update(self, frame):          # title with the env step, not the frame index
            super().update(frame)
            self.ax.set_title(f"{self.env.name}: step {keep[frame]:4d} - return "
                              f"{returns[keep[frame]]:7.2f}", fontsize=15)

    vis = _Visualizer(env, env_params, [states[i] for i in keep],
                      np.array([returns[i] for i in keep]))
    vis.animate(str(path))
    return {"return": total, "steps": steps, "frames": len(keep)}

