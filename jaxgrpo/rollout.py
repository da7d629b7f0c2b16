"""Collect: vmapped gymnax environments produce a ``Rollout`` (time-major, with a validity mask).

Two collectors with one output type:
- ``collect_episodes`` (GRPO on-policy): ``num_groups * group_size`` episodes, the members of
  a group reset with the same key (bitwise-identical start states), each run to its end. A
  ``lax.while_loop`` over a buffer of ``max_steps_in_episode`` rows stops as soon as every
  episode has ended, so short episodes do not cost a full horizon. (GRPO's default collector,
  which never idles a lane, is ``jaxgrpo.stream``.)
- ``collect_branches`` (GRPO state groups): main trajectories that, every ``branch_every``
  steps, copy their env state ``group_size`` times and roll each copy ``branch_horizon`` steps.
- ``collect_segments`` (PPO): ``num_envs`` environments stepped ``num_steps`` times with
  auto-reset (as gymnax's ``env.step``), carrying the env state between iterations.

Randomness (action noise, env step keys, PPO's reset states) is drawn for a whole segment
before the loop, not inside each step: see ``Policy.noise``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .envs import env_action


class Rollout(NamedTuple):
    """A batch of transitions, time-major. T rows, N columns (an env, an episode or a branch).

    reward: [T, N]; mask: [T, N] bool, valid step; terminated, truncated: [T, N] bool;
    obs: [T', N, *obs_shape]; action: [T', N, *action_shape]; logp: [T', N] (behaviour
    policy) for the T' rows the loss trains on: T' = T for episodes and segments, T' = 1 for
    state branches (only a branch's first action is trained; its later rewards score it);
    next_obs: [T, N, *obs_shape] observation the step led to (before any auto-reset), or None;
    group_id: [N] int32, column n belongs to group group_id[n] (episode collectors: n // G).
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
    """Completed episodes in a rollout: sum and count of their undiscounted returns and lengths;
    env steps that were valid (real transitions) and simulated (valid + padding)."""

    return_sum: jax.Array
    length_sum: jax.Array
    count: jax.Array
    valid_steps: jax.Array
    sim_steps: jax.Array


def _act(policy, params, obs, noise, greedy):
    """Actions of the policy for ``obs`` [B, ...] with pre-drawn ``noise`` [B, n] (ignored when
    greedy: the mode)."""
    return policy.sample(params, obs, None if greedy else noise)


def _step(env, env_params, policy, keys, state, action):
    """One step of a batch of envs without auto-reset: (obs, state, reward, terminated,
    truncated), truncated = the time limit reached (and not terminated)."""
    nobs, nstate, reward, term, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
        keys, state, env_action(policy.spec, action), env_params)
    trunc = jax.vmap(env.is_truncated, in_axes=(0, None))(nstate, env_params)
    return nobs, nstate, reward.astype(jnp.float32), term, trunc & ~term


def _keep(valid, new, old):
    """Per env (leading axis): the new pytree where valid, else the old one (a finished
    episode's state is frozen)."""
    return jax.tree.map(lambda n, o: jax.vmap(jnp.where)(valid, n, o), new, old)


def _member_keys(key, num_groups, group_size, shared, steps=None):
    """[num_groups * group_size] keys: one per member, or one per group repeated (shared).
    With ``steps``: [steps, num_groups * group_size], each row a step's keys (one draw)."""
    if steps is not None:
        return jax.vmap(lambda k: _member_keys(k, num_groups, group_size, shared))(
            jax.random.split(key, steps))
    if shared:
        return jnp.repeat(jax.random.split(key, num_groups), group_size, axis=0)
    return jax.random.split(key, num_groups * group_size)


def _empty_rollout(shape, obs_proto, action_proto, group_id):
    """An all-masked Rollout whose [T, N] leaves have shape ``shape``."""
    return Rollout(
        obs=jnp.zeros((*shape, *obs_proto.shape[1:]), obs_proto.dtype),
        action=jnp.zeros((*shape, *action_proto.shape[1:]), action_proto.dtype),
        logp=jnp.zeros(shape, jnp.float32), reward=jnp.zeros(shape, jnp.float32),
        mask=jnp.zeros(shape, bool), terminated=jnp.zeros(shape, bool),
        truncated=jnp.zeros(shape, bool), next_obs=None, group_id=group_id)


def _episode_starts(env, env_params, key, num_groups, group_size, same_start):
    """Start states [num_groups * group_size] of one iteration's episodes (members of a group
    reset with the same key when ``same_start``)."""
    return jax.vmap(env.reset, in_axes=(0, None))(
        _member_keys(key, num_groups, group_size, same_start), env_params)


def _episode_stats(rollout, valid_steps, sim_steps) -> EpisodeStats:
    """The EpisodeStats of a rollout's episodes (one a column) and the steps simulated."""
    ep_return = jnp.sum(jnp.where(rollout.mask, rollout.reward, 0.0), axis=0)
    ep_len = jnp.sum(rollout.mask, axis=0)
    finished = ep_len > 0
    return EpisodeStats(
        return_sum=jnp.sum(jnp.where(finished, ep_return, 0.0)),
        length_sum=jnp.sum(ep_len).astype(jnp.float32),
        count=jnp.sum(finished).astype(jnp.float32),
        valid_steps=valid_steps.astype(jnp.float32),
        sim_steps=sim_steps.astype(jnp.float32),
    )


def collect_episodes(policy, env, env_params, params, key, num_groups, group_size, *,
                     active=True, greedy=False, same_start=True, share_env_noise=False):
    """Run ``num_groups * group_size`` episodes; env ``i`` belongs to group ``i // group_size``.

    same_start: members of a group reset with the same key (bitwise-identical start states);
    False gives every episode its own start (GRPO's "batch" groups).
    share_env_noise: members of a group also share the env's step keys, so they differ only by
    the policy's action samples.
    active: scalar bool; when False nothing is simulated (an empty, all-masked rollout).
    Every lane starts its episode now and the loop runs until the longest has ended, the
    finished lanes idling (padding): on-policy, at the price of that padding (GRPO's stream
    collector, ``jaxgrpo.stream``, has none).

    Returns (Rollout with T = max_steps_in_episode, N = num_groups * group_size, EpisodeStats);
    EpisodeStats' simulated steps count the padding.
    """
    T = int(env_params.max_steps_in_episode)
    N = num_groups * group_size
    k_reset, k_noise, k_step = jax.random.split(key, 3)
    obs, state = _episode_starts(env, env_params, k_reset, num_groups, group_size, same_start)
    # all the randomness of the longest possible loop, drawn at once (see Policy.noise)
    noise = policy.noise(k_noise, (T, N))
    step_keys = _member_keys(k_step, num_groups, group_size, share_env_noise, steps=T)
    action_proto, _ = jax.eval_shape(lambda o: policy.sample(params, o, None), obs)

    def cond(c):
        t, _, _, running, _, _ = c
        return (t < T) & jnp.any(running)

    def body(c):
        t, obs, state, running, buf, n_valid = c
        action, logp = _act(policy, params, obs, noise[t], greedy)
        nobs, nstate, reward, term, trunc = _step(env, env_params, policy, step_keys[t], state,
                                                  action)
        put = lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, t, 0)
        buf = buf._replace(
            obs=put(buf.obs, obs), action=put(buf.action, action), logp=put(buf.logp, logp),
            reward=put(buf.reward, jnp.where(running, reward, 0.0)), mask=put(buf.mask, running),
            terminated=put(buf.terminated, running & term),
            truncated=put(buf.truncated, running & trunc & ~term))
        state, obs = _keep(running, (nstate, nobs), (state, obs))
        return (t + 1, obs, state, running & ~(term | trunc), buf,
                n_valid + jnp.sum(running))

    running = jnp.broadcast_to(jnp.asarray(active), (N,))
    t, _, _, _, buf, n_valid = jax.lax.while_loop(
        cond, body, (jnp.int32(0), obs, state, running,
                     _empty_rollout((T, N), obs, action_proto, None), jnp.int32(0)))
    rollout = buf._replace(group_id=jnp.arange(N, dtype=jnp.int32) // group_size)
    return rollout, _episode_stats(rollout, n_valid, t * N)


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
    N, T = carry.obs.shape[0], num_steps
    # The segment's randomness in three draws before the loop (see Policy.noise): action
    # noise, step keys, and the states an ended episode resets to (gymnax's auto-reset,
    # done by hand: ``env.step`` would split a key and draw a reset inside every step).
    k_noise, k_step, k_reset = jax.random.split(key, 3)
    noise = policy.noise(k_noise, (T, N))
    step_keys = jax.random.split(k_step, T * N).reshape(T, N, *k_step.shape)
    resets = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, T * N), env_params)
    resets = jax.tree.map(lambda x: x.reshape(T, N, *x.shape[1:]), resets)

    def step(c, xs):
        noise_t, keys_t, (obs_re, state_re) = xs
        action, logp = _act(policy, params, c.obs, noise_t, False)
        nobs, nstate, reward, term, trunc = _step(env, env_params, policy, keys_t, c.state,
                                                  action)
        done = term | trunc
        ep_return, ep_len = c.ep_return + reward, c.ep_len + 1
        out = (c.obs, action, logp, reward, term, trunc, nobs,
               jnp.where(done, ep_return, 0.0), jnp.where(done, ep_len, 0.0), done)
        state, obs = _keep(~done, (nstate, nobs), (state_re, obs_re))
        c = SegmentCarry(obs, state, jnp.where(done, 0.0, ep_return), jnp.where(done, 0.0, ep_len))
        return c, out

    carry, (obs, action, logp, reward, term, trunc, next_obs, ret_done, len_done, done) = \
        jax.lax.scan(step, carry, (noise, step_keys, resets))
    rollout = Rollout(obs, action, logp, reward, jnp.ones_like(done), term, trunc, next_obs,
                      jnp.arange(N, dtype=jnp.int32))
    stats = EpisodeStats(jnp.sum(ret_done), jnp.sum(len_done), jnp.sum(done).astype(jnp.float32),
                         jnp.float32(num_steps * N), jnp.float32(num_steps * N))
    return rollout, stats, carry


def collect_branches(policy, env, env_params, params, key, num_trajs, group_size, branch_every,
                     horizon, *, active=True, share_env_noise=False):
    """GRPO's state groups (sub-step sampling from any state).

    ``num_trajs`` main trajectories each run one episode. At every ``branch_every``-th step the
    env state is copied ``group_size`` times (bitwise-identical: a gymnax state is a pytree);
    each copy samples its own action and runs ``horizon`` steps with the current policy (fewer
    if its episode ends). The main trajectory continues from branch 0's first step; the other
    ``branch_every - 1`` steps of the block are ordinary steps.

    Returns (Rollout, EpisodeStats of the main trajectories). With P = ceil(T / branch_every)
    branch points per trajectory and N' = P * num_trajs * group_size branches (column
    ``(p * num_trajs + n) * group_size + g``): reward, mask: [horizon, N'] the branch's step
    rewards; obs, action, logp: [1, N'] the branch's first step (the one trained);
    group_id: [N'] = column // group_size (one group per branched state).
    """
    T = int(env_params.max_steps_in_episode)
    N, G, H, k = num_trajs, group_size, horizon, branch_every
    NG, P = N * G, -(-T // k)
    k_reset, k_loop = jax.random.split(key)
    obs0, state0 = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, N), env_params)
    a_proto, _ = jax.eval_shape(
        lambda o: _act(policy, params, o, policy.noise(k_loop, o.shape[:1]), False), obs0)
    buf = dict(
        obs=jnp.zeros((P, NG, *obs0.shape[1:]), obs0.dtype),
        action=jnp.zeros((P, NG, *a_proto.shape[1:]), a_proto.dtype),
        logp=jnp.zeros((P, NG), jnp.float32),
        reward=jnp.zeros((P, H, NG), jnp.float32),
        mask=jnp.zeros((P, H, NG), bool),
    )
    def cond(c):
        p, _, _, _, done, _, _, _, _ = c
        return (p < P) & ~jnp.all(done)

    body = lambda c: _branch_block(policy, env, env_params, params, N, G, H, k,
                                   share_env_noise, c)

    done0 = jnp.broadcast_to(~jnp.asarray(active), (N,))
    z = jnp.zeros((N,), jnp.float32)
    p, _, _, _, _, ret, length, buf, steps = jax.lax.while_loop(
        cond, body, (jnp.int32(0), k_loop, obs0, state0, done0, z, z, buf, jnp.float32(0)))

    finished = length > 0
    stats = EpisodeStats(jnp.sum(jnp.where(finished, ret, 0.0)), jnp.sum(length),
                         jnp.sum(finished).astype(jnp.float32), steps,
                         (p * (NG * H + N * (k - 1))).astype(jnp.float32))
    return _branch_rollout(buf, G), stats


def _branch_block(policy, env, env_params, params, N, G, H, k, share_env_noise, c):
    """One block of ``collect_branches``' loop: branch every trajectory's state G times (each
    copy rolled H steps, into row p of the buffers); the main trajectories go on from branch
    0's first step and take the block's other k - 1 steps. c = (p, key, obs, state, done, return, length, buffers, valid steps)."""
    p, key, obs, state, done, ret, length, buf, steps = c
    NG = N * G
    rep = lambda x: jnp.repeat(x, G, axis=0)
    first = jnp.arange(N) * G                         # branch 0 of each trajectory
    walk = lambda c, xs: _walk(policy, env, env_params, params, c, xs)
    # this block's randomness, drawn at once (see Policy.noise)
    key, k_a0, k_s0, k_nb, k_br, k_nm, k_main = jax.random.split(key, 7)
    # the branch point: G copies of each trajectory's state, G sampled actions
    obs_g, state_g, live = rep(obs), jax.tree.map(rep, state), rep(~done)
    a0, lp0 = _act(policy, params, obs_g, policy.noise(k_a0, (NG,)), False)
    obs1, state1, r1, term1, trunc1 = _step(env, env_params, policy,
                                            _member_keys(k_s0, N, G, share_env_noise),
                                            state_g, a0)
    end1 = term1 | trunc1 | ~live
    (_, _, _, _, _), (r_rest, m_rest) = jax.lax.scan(
        walk, (obs1, state1, end1, jnp.zeros(NG), jnp.zeros(NG)),
        (policy.noise(k_nb, (H - 1, NG)), _member_keys(k_br, N, G, share_env_noise, H - 1)))
    rewards = jnp.concatenate([jnp.where(live, r1, 0.0)[None], r_rest], 0)   # [H, NG]
    masks = jnp.concatenate([live[None], m_rest], 0)
    put = lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, p, 0)
    buf = dict(obs=put(buf["obs"], obs_g), action=put(buf["action"], a0),
               logp=put(buf["logp"], lp0), reward=put(buf["reward"], rewards),
               mask=put(buf["mask"], masks))
    # the main trajectory continues from branch 0's first step ...
    valid = ~done
    state, obs = _keep(valid, (jax.tree.map(lambda x: x[first], state1), obs1[first]),
                       (state, obs))
    ret = ret + jnp.where(valid, r1[first], 0.0)
    length = length + valid
    done = done | term1[first] | trunc1[first]
    # ... and takes the block's remaining branch_every - 1 ordinary steps
    (obs, state, done2, ret, length2), _ = jax.lax.scan(
        walk, (obs, state, done, ret, length),
        (policy.noise(k_nm, (k - 1, N)), jax.random.split(k_main, (k - 1) * N).reshape(
            k - 1, N, *k_main.shape)))
    steps = steps + jnp.sum(masks) + jnp.sum(length2 - length)
    return p + 1, key, obs, state, done2, ret, length2, buf, steps


def _walk(policy, env, env_params, params, c, xs):
    """One step of a batch of trajectories (``lax.scan`` body): c = (obs, state, done, return,
    length), xs = (noise, step keys) of the step. Ended trajectories stay frozen. Emits the
    step's (reward, valid)."""
    obs, state, done, ret, length = c
    noise_t, keys_t = xs
    action, _ = _act(policy, params, obs, noise_t, False)
    nobs, nstate, r, term, trunc = _step(env, env_params, policy, keys_t, state, action)
    valid = ~done
    state, obs = _keep(valid, (nstate, nobs), (state, obs))
    r = jnp.where(valid, r, 0.0)
    return (obs, state, done | term | trunc, ret + r, length + valid), (r, valid)


def _branch_rollout(buf, G) -> Rollout:
    """``collect_branches``' Rollout from its buffers ([P, ...] per branch point, P * NG
    columns; a group the G branches of one state)."""
    P, H, NG = buf["reward"].shape
    cols = P * NG
    no = jnp.zeros((H, cols), bool)
    return Rollout(
        obs=buf["obs"].reshape(1, cols, *buf["obs"].shape[2:]),
        action=buf["action"].reshape(1, cols, *buf["action"].shape[2:]),
        logp=buf["logp"].reshape(1, cols),
        reward=jnp.moveaxis(buf["reward"], 1, 0).reshape(H, cols),
        mask=jnp.moveaxis(buf["mask"], 1, 0).reshape(H, cols), terminated=no, truncated=no,
        next_obs=None, group_id=jnp.arange(cols, dtype=jnp.int32) // G)
