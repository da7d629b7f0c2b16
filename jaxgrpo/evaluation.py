"""The evaluator: returns of a trained policy's episodes, greedy or sampled, on gymnax envs and
text tasks alike.

- ``returns_fn(config)(params, key, n, greedy)``: one policy's ``n`` episode returns (env:
  undiscounted returns from fresh resets; text: the verifier's rewards of completions of ``n``
  held-out prompts).
- ``evaluate(config, state, key, n, greedy)``: their mean, for params with any leading batch
  axes (seeds of a vmapped run), one compiled call.
- ``seed_returns(config, params [S, ...], key, n, modes)``: every seed's returns per mode, the
  seeds one after another (``lax.map``) to bound memory; what ``jaxgrpo eval`` reports.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .config import is_text
from .rollout import collect_episodes
from .text.evaluation import completion_scores, heldout_prompts
from .train import TrainState, algorithm, make_policy


def returns_fn(config):
    """``f(params, key, num_episodes, greedy=False) -> [num_episodes]`` float32 returns of one
    policy (``params`` without batch axes; jittable, ``num_episodes`` and ``greedy`` static).
    greedy: the mode of the action distribution (text: greedy decoding) instead of samples."""
    algo = algorithm(config)
    env = algo.make_env(config)
    policy = algo.make_policy(config, env)
    if is_text(config.env):
        temperature = getattr(config, "temperature", 1.0)

        def text_returns(params, key, num_episodes, greedy=False):
            prompts = heldout_prompts(env, num_episodes)
            _, reward = completion_scores(policy, env, params, prompts, key, 1, temperature,
                                          greedy=greedy)
            return reward[:, 0]
        return text_returns

    def env_returns(params, key, num_episodes, greedy=False):
        rollout, _ = collect_episodes(policy, *env, params, key, num_episodes, 1, greedy=greedy)
        ep_return = jnp.sum(jnp.where(rollout.mask, rollout.reward, 0.0), axis=0)
        # (the where keeps XLA from fusing the two sums of a mean into one: same bits as
        # the EpisodeStats mean training reports)
        return jnp.where(jnp.any(rollout.mask, axis=0), ep_return, 0.0)
    return env_returns


def evaluate(config, train_state, key, num_episodes: int = 100, greedy: bool = False):
    """Mean return of ``num_episodes`` episodes of the trained policy.

    ``train_state`` (a TrainState or its params) may carry leading batch axes (e.g. from
    ``vmap`` over seeds): the result then has those axes, ``[num_seeds]`` for a seed-vmapped
    run, each batch element with its own key split from ``key``.
    """
    params = train_state.params if isinstance(train_state, TrainState) else train_state
    ref = jax.eval_shape(make_policy(config).init, jax.random.key(0))
    extra = jax.tree.leaves(params)[0].ndim - jax.tree.leaves(ref)[0].ndim
    returns = returns_fn(config)
    fn = lambda p, k: jnp.mean(returns(p, k, num_episodes, greedy))
    for _ in range(extra):
        fn = jax.vmap(fn)
    lead = jax.tree.leaves(params)[0].shape[:extra]
    keys = jax.random.split(key, math.prod(lead)).reshape(lead) if extra else key
    return jax.jit(fn)(params, keys)


def seed_returns(config, params, key, num_episodes: int,
                 modes: Sequence[str] = ("greedy", "sampled")) -> dict:
    """Returns of ``num_episodes`` episodes per seed and mode, in one compiled call: ``params``
    with a leading seed axis ``[S, ...]``, ``key`` a single key -> ``{mode: [S, num_episodes]}``
    NumPy (``"greedy"``: the mode of the action distribution, ``"sampled"``: samples)."""
    returns = returns_fn(config)

    def one(args):
        p, k = args
        return {mode: returns(p, km, num_episodes, mode == "greedy")
                for mode, km in zip(modes, jax.random.split(k, len(modes)))}

    S = jax.tree.leaves(params)[0].shape[0]
    keys = jax.random.split(key, S)
    r = jax.block_until_ready(jax.jit(lambda p, k: jax.lax.map(one, (p, k)))(params, keys))
    return {m: np.asarray(v) for m, v in r.items()}
