"""``make_train(config) -> train(key, hparams=None) -> (TrainState, metrics)``.

One iteration is collect -> score -> learn; the whole run is one ``lax.scan`` over
iterations, jittable and vmappable over keys and hparams.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import grpo, ppo
from .config import is_text
from .envs import action_spec, make_env, obs_shape
from .networks import Policy
from .rollout import (collect_branches, collect_episodes, collect_segments, init_pool,
                      reset_segments)
from .update import learn


class TrainState(NamedTuple):
    """params: ``{"actor", ["critic"]}``; ref_params: the reference actor (GRPO) or None;
    env_carry: what the envs carry between iterations: PPO's ``SegmentCarry``, GRPO's
    ``EpisodePool`` with ``max_ahead`` > 0, else None; env_steps: valid env steps simulated so
    far; iteration: iterations run so far."""

    params: Any
    opt_state: Any
    ref_params: Any
    key: jax.Array
    iteration: jax.Array
    env_steps: jax.Array
    env_carry: Any


def make_policy(config):
    """The policy of a config: ``networks.Policy`` for gymnax envs, a ``text.Transformer``
    for text tasks (both with ``init(key) -> params``)."""
    if is_text(config.env):
        from .text.grpo import make_policy as text_policy
        return text_policy(config)
    env, env_params = make_env(config)
    return Policy(config, action_spec(env, env_params), obs_shape(env, env_params),
                  with_critic=config.algo == "ppo")


def resolve_hparams(config, hparams=None) -> dict:
    """The config's defaults overridden by ``hparams`` (any subset); unknown names raise."""
    hp = config.hparams()
    if hparams is not None:
        unknown = set(hparams) - set(hp)
        if unknown:
            raise ValueError(f"hparams: {sorted(unknown)[0]!r} is not a dynamic hyperparameter of "
                             f"{type(config).__name__}; those are {sorted(hp)}")
        hp.update({k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()})
        if (getattr(config, "clip_eps_high", 0.0) is None and "clip_eps" in hparams
                and "clip_eps_high" not in hparams):
            hp["clip_eps_high"] = hp["clip_eps"]      # a symmetric clip range stays symmetric
    return hp


def clipped_adam(lr, max_grad_norm, warmup_steps=0, eps=1e-8):
    """Adam after global-norm gradient clipping, on one flat parameter vector (a few large
    kernels per step instead of many tiny ones). ``lr``: a number or a schedule of the update
    count; ``warmup_steps`` > 0 scales it linearly from 1/warmup_steps to 1 over the first
    updates (Adam's first steps move every parameter by about lr whatever the gradient's
    size, which noisy policy gradients turn into a large random step)."""
    if warmup_steps:
        base = lr
        lr = lambda count: ((base(count) if callable(base) else base)
                            * jnp.minimum(1.0, (count + 1) / warmup_steps))
    return optax.flatten(optax.chain(optax.clip_by_global_norm(max_grad_norm),
                                     optax.adam(lr, eps=eps)))


def scan_iterations(step, state, num_iterations, callback=None, callback_every=1):
    """``lax.scan`` of ``step(state) -> (state, metrics)`` over ``num_iterations`` iterations,
    calling ``callback(i, metrics)`` on the host after every ``callback_every``-th iteration
    and the last one (see ``make_train``). -> (state, metrics stacked [num_iterations])."""
    def body(s, i):
        s, metrics = step(s)
        if callback is not None:
            report = (i % callback_every == callback_every - 1) | (i == num_iterations - 1)
            jax.lax.cond(report, lambda: jax.debug.callback(callback, i, metrics), lambda: None)
        return s, metrics

    return jax.lax.scan(body, state, jnp.arange(num_iterations))


def make_train(config, callback=None, callback_every=1):
    """Build the pure training function for a GRPOConfig or PPOConfig.

    callback: optional host function ``callback(i, metrics)`` called from inside the compiled
    loop (``jax.debug.callback``) after every ``callback_every``-th iteration and the last one,
    with ``i`` the iteration's index within the current ``run`` call and ``metrics`` that
    iteration's metric dict (scalars). Under ``vmap`` it is called once per batch element.
    Meant for progress bars; the default (None) adds nothing to the program.

    Returns ``train(key, hparams=None) -> (TrainState, metrics)``; every entry of ``metrics``
    has shape ``[config.iterations]`` (one row per iteration). GRPO iterations run while the
    valid env steps used are below ``total_timesteps`` (so the last one may end past it, as in
    PPO libraries' ``learn(total_timesteps)``); the rows of the iterations after that are NaN
    and their ``env_steps`` stays put.

    ``train`` also carries ``train.init(key, hparams)`` and ``train.run(state, hparams, n)``
    (for checkpoint/resume and chunked runs), ``train.policy``, ``train.num_iterations`` and
    ``train.optimizer(hparams) -> optax transformation`` (the one the update uses).

    Text tasks (``env="text:NAME"``) run the same loop with ``jaxgrpo.text.grpo``'s collect,
    score and loss: an episode is a completion, ``env_steps`` counts completion tokens.
    ``SFTConfig`` gets ``jaxgrpo.text.sft.make_train``'s loop, with the same interface.
    """
    if config.algo == "sft":
        from .text.sft import make_train as make_sft_train
        return make_sft_train(config, callback, callback_every)
    text = is_text(config.env)
    if text:
        from .runs import init_params
        from .text import grpo as text_grpo
        env = env_params = None
        task = config.task
        start_params = init_params(config)      # None, or the params of config.init_from
    else:
        env, env_params = make_env(config)
    policy = make_policy(config)
    is_grpo = config.algo == "grpo"
    algo = text_grpo if text else grpo if is_grpo else ppo
    n_iter = config.iterations
    pooled = is_grpo and config.max_ahead > 0
    if is_grpo:
        chunk = config.chunk_size
    else:
        batch_size = config.num_envs * config.num_steps
        chunk = batch_size // config.num_minibatches

    def optimizer(hp):
        lr = hp["lr"]
        if not is_grpo and config.anneal_lr:
            per_iter = config.update_epochs * config.num_minibatches
            lr = lambda count: hp["lr"] * (1.0 - (count // per_iter) / n_iter)
        return clipped_adam(lr, hp["max_grad_norm"], getattr(config, "warmup_steps", 0),
                            eps=1e-5)

    def init(key, hp) -> TrainState:
        key, k_init, k_env = jax.random.split(key, 3)
        params = policy.init(k_init)
        if text and start_params is not None:
            params = jax.tree.map(jnp.asarray, start_params)
        if not is_grpo:
            carry = reset_segments(env, env_params, k_env, config.num_envs)
        elif pooled:
            carry = init_pool(policy, env, env_params, params, k_env, config.num_groups,
                              config.group_size, config.max_ahead,
                              same_start=config.group_mode == "episode")
        else:
            carry = None
        return TrainState(params, optimizer(hp).init(params), params if is_grpo else None, key,
                          jnp.int32(0), jnp.float32(0), carry)

    def budget_left(state):
        """GRPO's budget rule: an iteration runs while fewer than ``total_timesteps`` valid env
        steps have been used (the last one may end past it, by less than one iteration)."""
        return state.env_steps < config.total_timesteps

    def collect_grpo(params, key, active, carry, hp):
        """-> (rollout, stats, carry)."""
        if text:
            return (*text_grpo.collect(policy, task, params, key, config.num_groups,
                                       config.group_size, hp["temperature"], active), None)
        if config.group_mode == "state":
            return (*collect_branches(policy, env, env_params, params, key, config.num_groups,
                                      config.group_size, config.branch_every,
                                      config.branch_horizon, active=active,
                                      share_env_noise=config.share_env_noise), None)
        out = collect_episodes(policy, env, env_params, params, key, config.num_groups,
                               config.group_size, active=active,
                               same_start=config.group_mode == "episode",
                               share_env_noise=config.share_env_noise, pool=carry)
        return out if pooled else (*out, None)

    def iteration(state: TrainState, hp):
        key, k_col, k_learn = jax.random.split(state.key, 3)
        if is_grpo:
            # also checked here, not only by run's cond: under vmap that cond is a select that
            # runs this branch for every run, and a spent run must then simulate nothing
            active = budget_left(state)
            rollout, stats, carry = collect_grpo(state.params, k_col, active, state.env_carry, hp)
        else:
            active = jnp.bool_(True)
            rollout, stats, carry = collect_segments(policy, env, env_params, state.params, k_col,
                                                     state.env_carry, config.num_steps)
        batch, weight, mask, score_metrics = algo.score(config, policy, state.params, rollout, hp)
        loss_fn = lambda p, c, w, m: algo.loss(config, policy, p, state.ref_params, c, w, m, hp)
        params, opt_state, learn_metrics = learn(
            loss_fn, state.params, state.opt_state, optimizer(hp), batch, weight, mask, k_learn,
            epochs=config.update_epochs, num_minibatches=config.num_minibatches, chunk=chunk,
            all_valid=not is_grpo)
        ref = state.ref_params
        if is_grpo and config.ref_sync_every > 0:
            sync = (state.iteration + 1) % config.ref_sync_every == 0
            a = jnp.where(sync, hp["ref_mixup_alpha"], 0.0)
            ref = jax.tree.map(lambda p, r: a * p + (1.0 - a) * r, params, ref)
        env_steps = state.env_steps + stats.valid_steps
        nan_if_idle = lambda x: jnp.where(active, x, jnp.nan)
        metrics = {
            "episode_return": stats.return_sum / stats.count,
            "episode_length": stats.length_sum / stats.count,
            "episodes": stats.count,
            **jax.tree.map(nan_if_idle, {
                "valid_frac": stats.valid_steps / jnp.maximum(stats.sim_steps, 1.0),
                **score_metrics, **learn_metrics}),
            "env_steps": env_steps,
        }
        new = TrainState(params, opt_state, ref, key, state.iteration + active.astype(jnp.int32),
                         env_steps, carry)
        return new, metrics

    def init_state(key, hparams=None) -> TrainState:
        """A fresh TrainState (params, optimizer, reference, env carry) from ``key``."""
        return init(key, resolve_hparams(config, hparams))

    def run(state: TrainState, hparams=None, num_iterations=n_iter):
        """Continue training from ``state`` for ``num_iterations`` iterations (one scan).
        ``run(init_state(k, hp), hp, a)`` then ``run(state_a, hp, b)`` equals one run of a + b."""
        hp = resolve_hparams(config, hparams)

        def idle(s):
            # what an iteration the budget does not allow reports, without running it
            _, m = jax.eval_shape(lambda s: iteration(s, hp), s)
            nan = {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in m.items()}
            nan["env_steps"] = s.env_steps
            if "episodes" in nan:
                nan["episodes"] = jnp.zeros_like(nan["episodes"])
            return s._replace(key=jax.random.split(s.key, 3)[0]), nan

        def step(s):
            if is_grpo:   # skipped iterations cost nothing (a cond, not a masked iteration)
                return jax.lax.cond(budget_left(s), lambda s: iteration(s, hp), idle, s)
            return iteration(s, hp)

        return scan_iterations(step, state, num_iterations, callback, callback_every)

    return train_function(init_state, run, optimizer, policy, n_iter)


def train_function(init_state, run, optimizer, policy, num_iterations):
    """``train(key, hparams=None) = run(init_state(key, hparams), hparams, num_iterations)``
    with the attributes ``make_train`` documents (init, run, optimizer, policy,
    num_iterations)."""
    def train(key, hparams=None):
        return run(init_state(key, hparams), hparams, num_iterations)

    train.init = init_state
    train.run = run
    train.optimizer = optimizer
    train.policy = policy
    train.num_iterations = num_iterations
    return train


def evaluate(config, train_state, key, num_episodes=100, greedy=False):
    """Mean undiscounted return of ``num_episodes`` episodes of the trained policy.

    ``train_state`` may carry leading batch axes (e.g. from ``vmap`` over seeds): the result
    then has those axes, ``[num_seeds]`` for a seed-vmapped run. greedy: take the mode of the
    action distribution instead of sampling.
    """
    env, env_params = make_env(config)
    policy = make_policy(config)
    params = train_state.params if isinstance(train_state, TrainState) else train_state
    ref = jax.eval_shape(policy.init, jax.random.key(0))
    extra = jax.tree.leaves(params)[0].ndim - jax.tree.leaves(ref)[0].ndim

    def one(p, k):
        _, stats = collect_episodes(policy, env, env_params, p, k, num_episodes, 1, greedy=greedy)
        return stats.return_sum / stats.count

    fn = one
    for _ in range(extra):
        fn = jax.vmap(fn)
    lead = jax.tree.leaves(params)[0].shape[:extra]
    keys = jax.random.split(key, math.prod(lead)).reshape(lead) if extra else key
    return jax.jit(fn)(params, keys)
