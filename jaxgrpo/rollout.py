"""Collect: vmapped gymnax environments produce a ``Rollout`` (time-major, with a validity mask).

Two collectors with one output type:
- ``collect_episodes`` (GRPO): ``num_groups * group_size`` episodes, the members of a group
  reset with the same key (bitwise-identical start states), each run to its end. A
  ``lax.while_loop`` over a buffer of ``max_steps_in_episode`` rows stops as soon as every
  episode has ended, so short episodes do not cost a full horizon.
- ``collect_segments`` (PPO): ``num_envs`` environments stepped ``num_steps`` times with
  gymnax's auto-reset, carrying the env state between iterations.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .envs import env_action


class Rollout(NamedTuple):
    """A batch of transitions, time-major. T rows, N environments.

    obs: [T, N, *obs_shape]; action: [T, N, *action_shape]; logp: [T, N] (behaviour policy);
    reward: [T, N]; mask: [T, N] bool, valid step; terminated, truncated: [T, N] bool;
    next_obs: [T, N, *obs_shape] observation the step led to (before any auto-reset), or None;
    group_id: [N] int32 group of each environment (episode collector) or arange(N).
    """

    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    reward: jax.Array
    mask: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array | None
    group_id: jax.Array


class EpisodeStats(NamedTuple):
    """Completed episodes in a rollout: sum and count of their undiscounted returns and lengths,
    and how many env steps were simulated (valid + padding)."""

    return_sum: jax.Array
    length_sum: jax.Array
    count: jax.Array
    sim_steps: jax.Array


def _act(policy, params, obs, key, greedy):
    dist = policy.dist(params, obs)
    if greedy:
        action = dist.mode()
        return action, dist.log_prob(action)
    return dist.sample_and_log_prob(seed=key)


def collect_episodes(policy, env, env_params, params, key, num_groups, group_size, *,
                     active=True, greedy=False):
    """Run ``num_groups * group_size`` episodes; env ``i`` belongs to group ``i // group_size``.

    active: scalar bool; when False nothing is simulated (an empty, all-masked rollout).
    Returns (Rollout with T = max_steps_in_episode, N = num_groups * group_size, EpisodeStats).
    """
    T = int(env_params.max_steps_in_episode)
    N = num_groups * group_size
    k_reset, k_loop = jax.random.split(key)
    reset_keys = jnp.repeat(jax.random.split(k_reset, num_groups), group_size, axis=0)
    obs0, state0 = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)

    a_proto, _ = jax.eval_shape(lambda o: _act(policy, params, o, k_loop, greedy), obs0)
    buf = Rollout(
        obs=jnp.zeros((T, *obs0.shape), obs0.dtype),
        action=jnp.zeros((T, *a_proto.shape), a_proto.dtype),
        logp=jnp.zeros((T, N), jnp.float32),
        reward=jnp.zeros((T, N), jnp.float32),
        mask=jnp.zeros((T, N), bool),
        terminated=jnp.zeros((T, N), bool),
        truncated=jnp.zeros((T, N), bool),
        next_obs=None,
        group_id=jnp.arange(N, dtype=jnp.int32) // group_size,
    )
    done0 = jnp.broadcast_to(~jnp.asarray(active), (N,))

    def cond(c):
        t, _, _, _, done, _ = c
        return (t < T) & ~jnp.all(done)

    def body(c):
        t, key, obs, state, done, buf = c
        key, k_act, k_step = jax.random.split(key, 3)
        action, logp = _act(policy, params, obs, k_act, greedy)
        step_keys = jax.random.split(k_step, N)
        nobs, nstate, reward, term, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
            step_keys, state, env_action(policy.spec, action), env_params)
        trunc = jax.vmap(env.is_truncated, in_axes=(0, None))(nstate, env_params)
        valid = ~done
        put = lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, t, 0)
        buf = buf._replace(
            obs=put(buf.obs, obs), action=put(buf.action, action), logp=put(buf.logp, logp),
            reward=put(buf.reward, jnp.where(valid, reward, 0.0).astype(jnp.float32)),
            mask=put(buf.mask, valid), terminated=put(buf.terminated, valid & term),
            truncated=put(buf.truncated, valid & trunc & ~term))
        keep = lambda new, old: jax.vmap(jnp.where)(valid, new, old)
        state = jax.tree.map(keep, nstate, state)
        obs = keep(nobs, obs)
        return t + 1, key, obs, state, done | term | trunc, buf

    t, _, _, _, _, buf = jax.lax.while_loop(
        cond, body, (jnp.int32(0), k_loop, obs0, state0, done0, buf))
    ep_return = jnp.sum(buf.reward, axis=0)
    ep_len = jnp.sum(buf.mask, axis=0)
    finished = ep_len > 0
    stats = EpisodeStats(
        return_sum=jnp.sum(jnp.where(finished, ep_return, 0.0)),
        length_sum=jnp.sum(ep_len).astype(jnp.float32),
        count=jnp.sum(finished).astype(jnp.float32),
        sim_steps=(t * N).astype(jnp.float32),
    )
    return buf, stats


class SegmentCarry(NamedTuple):
    """Env state carried between PPO iterations. obs: [N, *obs_shape]; ep_return, ep_len: [N]."""

    obs: jax.Array
    state: object
    ep_return: jax.Array
    ep_len: jax.Array


def reset_segments(env, env_params, key, num_envs) -> SegmentCarry:
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), env_params)
    z = jnp.zeros((num_envs,), jnp.float32)
    return SegmentCarry(obs, state, z, z)


def collect_segments(policy, env, env_params, params, key, carry: SegmentCarry, num_steps):
    """Step ``N`` auto-resetting envs ``num_steps`` times (T = num_steps; every step valid).

    Returns (Rollout with next_obs = ``info["final_observation"]``, EpisodeStats, new carry).
    """
    N = carry.obs.shape[0]

    def step(c, k):
        k_act, k_step = jax.random.split(k)
        action, logp = _act(policy, params, c.obs, k_act, False)
        nobs, nstate, reward, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, N), c.state, env_action(policy.spec, action), env_params)
        reward = reward.astype(jnp.float32)
        trunc = trunc & ~term
        done = term | trunc
        ep_return, ep_len = c.ep_return + reward, c.ep_len + 1
        out = (c.obs, action, logp, reward, term, trunc, info["final_observation"],
               jnp.where(done, ep_return, 0.0), jnp.where(done, ep_len, 0.0), done)
        c = SegmentCarry(nobs, nstate, jnp.where(done, 0.0, ep_return), jnp.where(done, 0.0, ep_len))
        return c, out

    carry, (obs, action, logp, reward, term, trunc, next_obs, ret_done, len_done, done) = \
        jax.lax.scan(step, carry, jax.random.split(key, num_steps))
    rollout = Rollout(obs, action, logp, reward, jnp.ones_like(done), term, trunc, next_obs,
                      jnp.arange(N, dtype=jnp.int32))
    stats = EpisodeStats(jnp.sum(ret_done), jnp.sum(len_done), jnp.sum(done).astype(jnp.float32),
                         jnp.float32(num_steps * N))
    return rollout, stats, carry
