"""GRPO's continuous collector: every lane always steps a real episode; groups complete across
iterations and their steps are trained in the order they were taken.

Each iteration steps ``L = num_envs`` lanes exactly ``T = num_steps`` times, as PPO does, so
the program has no loop whose length depends on the data: seeds vmap without waiting for each
other, and the cost of an iteration is the work done. A lane whose episode ends starts the
next member of the newest open group (``group_size`` members, one start state when
``same_start``) at once; a group whose members have all ended is scored (its members' returns
normalized within it, ``advantages.group_normalize``) at the end of the iteration; its steps
then wait in a ring buffer with their advantage until they are trained. Each iteration trains
the ``L * T`` oldest scored steps (fewer while the pipeline fills), one update, so every
update has the same size and every simulated step is trained once.

The price: an episode's early steps were sampled by a policy a few updates older than the one
that trains on them (``staleness``); the clipped ratio uses the behaviour log-probs recorded at
sampling, as PPO's epochs do. A step that is still waiting when the ring wraps round to it is
dropped (``dropped`` counts them; the ring holds ``max_episode_steps + 2 T + margin`` rows, so
this is rare).

``StreamCarry`` is what lives in ``TrainState.env_carry`` between iterations.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .advantages import group_normalize
from .rollout import EpisodeStats, _act, _keep, _step


class Ring(NamedTuple):
    """Steps waiting to be trained: B blocks of one iteration's T steps of the L lanes,
    [B, T, L] (block = iteration modulo B).

    obs, action, logp: the step (behaviour log-prob); ep: [B, T, L] int32 the episode's
    slot * G + member in the group table; live: taken and neither trained nor dropped;
    version: [B] int32 the update count when the block was sampled."""

    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    ep: jax.Array
    live: jax.Array
    version: jax.Array


class StreamCarry(NamedTuple):
    """The lanes, the groups and the ring, carried from one iteration to the next.

    Lanes [L]: obs, state (env), ep (slot * G + member of the episode it runs, -1 while idle),
    t (steps taken in it), ret (its discounted return so far, of the transformed rewards),
    raw (its undiscounted return of the env's rewards).
    Groups [S] (slots, held from a group's first member until its last step is trained):
    ended (members that have ended), scored, number (the group's ordinal, for its keys),
    returns / lengths / adv [S, G] per member; free slots are a queue: ``free`` [S] slot ids,
    ``free_at`` the first, ``n_free`` how many. head: the slot of the group taking members;
    fill: members it has (G: none open); head_start: its start (obs, state); opened: groups
    opened so far. ring: ``Ring``; block: the next block to write; updates: updates so far.
    """

    obs: jax.Array
    state: object
    ep: jax.Array
    t: jax.Array
    ret: jax.Array
    raw: jax.Array
    ended: jax.Array
    scored: jax.Array
    number: jax.Array
    returns: jax.Array
    lengths: jax.Array
    adv: jax.Array
    free: jax.Array
    free_at: jax.Array
    n_free: jax.Array
    head: jax.Array
    fill: jax.Array
    head_start: tuple
    opened: jax.Array
    ring: Ring
    block: jax.Array
    updates: jax.Array


def ring_blocks(max_steps, num_envs, num_steps, group_size) -> int:
    """Blocks of the ring: an episode's span (its members start within about
    ``group_size * max_steps / num_envs`` steps of each other), plus two iterations."""
    span = max_steps + -(-group_size * max_steps // num_envs)
    return int(-(-span // num_steps) + 2)


def num_slots(num_envs, num_steps, group_size) -> int:
    """Group slots: one open group per lane at most, the one taking members, and the groups
    waiting to be trained (two iterations' worth if episodes average 4 steps or more; with
    shorter ones a lane may find no free slot and idle for a step)."""
    return int(num_envs + 1 + -(-num_envs * num_steps // (2 * group_size)))


def init_stream(policy, env, env_params, params, key, num_envs, num_steps,
                group_size) -> StreamCarry:
    """Every lane idle (it takes an episode at the first step), no group open, an empty ring."""
    T_max = int(env_params.max_steps_in_episode)
    L, G = num_envs, group_size
    B, T, S = ring_blocks(T_max, L, num_steps, G), num_steps, num_slots(L, num_steps, G)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, L), env_params)
    action, _ = jax.eval_shape(lambda o: policy.sample(params, o, None), obs)
    zeros = jnp.zeros
    ring = Ring(obs=zeros((B, T, *obs.shape), obs.dtype),
                action=zeros((B, T, *action.shape), action.dtype),
                logp=zeros((B, T, L), jnp.float32), ep=zeros((B, T, L), jnp.int32),
                live=zeros((B, T, L), bool), version=zeros((B,), jnp.int32))
    z, i32 = jnp.zeros((L,), jnp.float32), lambda v: jnp.asarray(v, jnp.int32)
    table = lambda: zeros((S, G), jnp.float32)
    return StreamCarry(
        obs=obs, state=state, ep=jnp.full((L,), -1, jnp.int32), t=jnp.zeros((L,), jnp.int32),
        ret=z, raw=z, ended=zeros((S,), jnp.int32), scored=zeros((S,), bool),
        number=zeros((S,), jnp.int32), returns=table(), lengths=table(), adv=table(),
        free=jnp.arange(S, dtype=jnp.int32), free_at=i32(0), n_free=i32(S), head=i32(0),
        fill=i32(G), head_start=jax.tree.map(lambda x: x[0], (obs, state)), opened=i32(0),
        ring=ring, block=i32(0), updates=i32(0))


def _assign(c: StreamCarry, G, Q, fresh, member_starts, same_start):
    """Lanes without an episode take the next members: of the head group while it has room,
    then of new groups in free slots (a lane finding no free slot stays idle). New groups'
    start states come from ``fresh`` ([Q] reset (obs, state), Q = the most groups one step can
    open; ``fresh`` may be [1], unused, without ``same_start``); with ``same_start`` False
    each member starts from ``member_starts`` [L]."""
    S = c.free.shape[0]
    need = c.ep < 0
    o = c.fill + jnp.cumsum(need) - 1      # member ordinal counted from the head's first
    q = o // G                             # 0: the head group; k >= 1: the k-th new group
    new = c.free[(c.free_at + jnp.arange(Q)) % S]                   # next free slots [Q]
    ok = need & ((q == 0) | (q - 1 < jnp.minimum(c.n_free, Q)))
    k = jnp.clip(q - 1, 0, Q - 1)
    slot = jnp.where(q == 0, c.head, new[k])
    n_ok = jnp.sum(ok)
    last = c.fill + n_ok - 1               # ordinal of the last member assigned
    n_new = jnp.where(n_ok > 0, last // G, 0)                       # groups opened now
    tgt = jnp.where(jnp.arange(Q) < n_new, new, S)                  # S: not written
    last_new = jnp.clip(n_new - 1, 0, Q - 1)
    if same_start:
        head = (q == 0)
        pick = lambda h, f: jnp.where(head.reshape((-1,) + (1,) * (f.ndim - 1)), h[None], f[k])
        begin = jax.tree.map(pick, c.head_start, fresh)
        head_start = jax.tree.map(lambda h, f: jnp.where(n_new > 0, f[last_new], h),
                                  c.head_start, fresh)
    else:
        begin, head_start = member_starts, c.head_start
    obs, state = _keep(ok, begin, (c.obs, c.state))
    zero = lambda x: jnp.where(ok, 0, x)
    return c._replace(
        obs=obs, state=state, ep=jnp.where(ok, slot * G + o % G, c.ep), t=zero(c.t),
        ret=zero(c.ret), raw=zero(c.raw),
        number=c.number.at[tgt].set(c.opened + jnp.arange(Q), mode="drop"),
        ended=c.ended.at[tgt].set(0, mode="drop"), scored=c.scored.at[tgt].set(False,
                                                                             mode="drop"),
        free_at=(c.free_at + n_new) % S, n_free=c.n_free - n_new,
        head=jnp.where(n_new > 0, new[last_new], c.head),
        fill=jnp.where(n_ok > 0, last % G + 1, c.fill), head_start=head_start,
        opened=c.opened + n_new)


def _stream_step(policy, env, env_params, params, G, Q, gamma, transform, same_start,
                 share_env_noise, base_key, c, xs):
    """One env step of every lane (``lax.scan`` body). xs: the step's action noise [L, n],
    env keys [L], reset states of new groups [Q] and of members [L]."""
    noise, keys, fresh, member_starts = xs
    c = _assign(c, G, Q, fresh, member_starts, same_start)
    live = c.ep >= 0
    slot, member = c.ep // G, c.ep % G
    action, logp = _act(policy, params, c.obs, noise, False)
    if share_env_noise:   # members share the env's randomness at each step of their episode
        keys = jax.vmap(lambda n, t: jax.random.fold_in(jax.random.fold_in(base_key, n), t))(
            c.number[jnp.clip(slot, 0)], c.t)
    nobs, nstate, reward, term, trunc = _step(env, env_params, policy, keys, c.state, action)
    taken = (c.obs, action, logp, c.ep, live)
    shaped = transform(reward[None], live[None])[0]
    ret = c.ret + jnp.where(live, gamma ** c.t.astype(jnp.float32) * shaped, 0.0)
    raw = c.raw + jnp.where(live, reward, 0.0)
    end = live & (term | trunc)
    tgt = jnp.where(end, slot, c.ended.shape[0])                    # out of range: not written
    state, obs = _keep(live, (nstate, nobs), (c.state, c.obs))
    t = c.t + live
    c = c._replace(obs=obs, state=state, ep=jnp.where(end, -1, c.ep), t=t, ret=ret, raw=raw,
                   returns=c.returns.at[tgt, member].set(ret, mode="drop"),
                   lengths=c.lengths.at[tgt, member].set(t.astype(jnp.float32), mode="drop"),
                   ended=c.ended.at[tgt].add(1, mode="drop"))
    out = (jnp.sum(jnp.where(end, raw, 0.0)), jnp.sum(jnp.where(end, t, 0)), jnp.sum(end),
           jnp.sum(live))
    return c, (taken, out)


class StreamBatch(NamedTuple):
    """The steps one update trains, [K] (K = L * T; the first ``n`` valid): obs, action, logp
    (behaviour), adv (their episode's group-normalized return), ep_len (its length), mask,
    staleness (updates since sampled)."""

    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    adv: jax.Array
    ep_len: jax.Array
    mask: jax.Array
    staleness: jax.Array


def collect_stream(policy, env, env_params, params, key, carry: StreamCarry, num_steps, *,
                   gamma, transform, group_size, same_start=True, share_env_noise=False,
                   scale="group", baseline="mean", eps=1e-4, active=True):
    """Step every lane ``num_steps`` times, score the groups that ended, and take the oldest
    scored steps for one update.

    Returns (StreamBatch, EpisodeStats, new carry, metrics): EpisodeStats of the episodes that
    ended in these steps (valid steps: lanes running an episode; simulated: L * T); metrics
    are the scored groups' ``reward_std``, ``frac_reward_zero_std``, ``groups`` scored,
    ``dropped`` steps and the batch's ``staleness/mean`` and ``staleness/max``. With
    ``active`` False nothing is simulated and the batch is empty (the carry is unchanged).
    """
    L, T, G = carry.obs.shape[0], num_steps, group_size
    Q = -(-L // G) + 1                     # most groups one step can open
    k_noise, k_step, k_fresh, k_member, k_share = jax.random.split(key, 5)
    noise = policy.noise(k_noise, (T, L))
    keys = jax.random.split(k_step, T * L).reshape(T, L, *k_step.shape)
    resets = lambda k, n: jax.tree.map(
        lambda x: x.reshape(T, n, *x.shape[1:]),
        jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k, T * n), env_params))
    fresh = resets(k_fresh, 1 if not same_start else Q)
    member_starts = (jax.tree.map(lambda x: jnp.zeros((T, 1, *x.shape[1:]), x.dtype),
                                  (carry.obs, carry.state)) if same_start
                     else resets(k_member, L))
    body = lambda c, xs: _stream_step(policy, env, env_params, params, G, Q, gamma, transform,
                                      same_start, share_env_noise, k_share, c, xs)
    c, (taken, (ret, length, count, valid)) = jax.lax.scan(
        body, carry, (noise, keys, fresh, member_starts))
    # the iteration's steps replace the oldest block of the ring (one write per iteration)
    ring, b = c.ring, c.block
    dropped = jnp.sum(ring.live[b])        # steps of that block still waiting
    put = lambda buf, v: jax.lax.dynamic_update_index_in_dim(buf, v, b, 0)
    ring = Ring(*(put(buf, v) for buf, v in zip(ring[:5], taken)),
                version=ring.version.at[b].set(c.updates))
    c = c._replace(ring=ring, block=(b + 1) % ring.live.shape[0])
    c, batch, metrics = _take(c, T * L, G, scale, baseline, eps)
    stats = EpisodeStats(jnp.sum(ret), jnp.sum(length).astype(jnp.float32),
                         jnp.sum(count).astype(jnp.float32), jnp.sum(valid).astype(jnp.float32),
                         jnp.float32(T * L))
    metrics["dropped"] = dropped.astype(jnp.float32)
    active = jnp.asarray(active)
    c = jax.tree.map(lambda n, o: jnp.where(active, n, o), c, carry)
    batch = batch._replace(mask=batch.mask & active)
    return batch, stats, c, metrics


def _take(c: StreamCarry, K, G, scale, baseline, eps):
    """Score the groups whose members have all ended, take the K oldest steps of scored groups
    (marked trained), and free the slots of scored groups with no step left in the ring."""
    S = c.ended.shape[0]
    new = (c.ended == G) & ~c.scored
    adv, std, zero = group_normalize(c.returns.ravel(), jnp.arange(S * G) // G, S,
                                     mask=jnp.repeat(new, G), scale=scale, baseline=baseline,
                                     eps=eps, with_stats=True)
    table_adv = jnp.where(new[:, None], adv.reshape(S, G), c.adv)
    scored = c.scored | new
    ring = c.ring
    B, T, L = ring.live.shape
    order = (c.block + jnp.arange(B)) % B        # blocks, oldest first
    ep = ring.ep[order]
    take = (ring.live[order] & scored[jnp.clip(ep, 0) // G]).ravel()
    pos = jnp.nonzero(take, size=K, fill_value=0)[0]
    n = jnp.minimum(jnp.sum(take), K)
    mask = jnp.arange(K) < n
    blocks, rows, lanes = order[pos // (T * L)], pos // L % T, pos % L
    pick = lambda x: x[blocks, rows, lanes]
    e = jnp.clip(pick(ring.ep), 0)
    staleness = (c.updates - ring.version[blocks]).astype(jnp.float32)
    batch = StreamBatch(obs=pick(ring.obs), action=pick(ring.action), logp=pick(ring.logp),
                        adv=table_adv.ravel()[e], ep_len=c.lengths.ravel()[e], mask=mask,
                        staleness=staleness)
    live = ring.live.at[jnp.where(mask, blocks, B), rows, lanes].set(False, mode="drop")
    # a scored group whose steps have all been trained (or dropped) frees its slot
    left = jax.ops.segment_sum(live.ravel().astype(jnp.int32),
                               jnp.where(live, ring.ep // G, S).ravel(), S + 1)[:S]
    done = scored & (left == 0)
    freed = jnp.nonzero(done, size=S, fill_value=S)[0]
    n_done = jnp.sum(done)
    at = jnp.where(jnp.arange(S) < n_done, (c.free_at + c.n_free + jnp.arange(S)) % S, S)
    n_new = jnp.sum(new)
    per_group = lambda x: jnp.sum(jnp.where(new, x, 0.0)) / jnp.maximum(n_new, 1)
    m = mask.astype(jnp.float32)
    metrics = {"reward_std": per_group(std), "frac_reward_zero_std": per_group(zero),
               "groups": n_new.astype(jnp.float32),
               "staleness/mean": jnp.sum(staleness * m) / jnp.maximum(jnp.sum(m), 1.0),
               "staleness/max": jnp.max(jnp.where(mask, staleness, 0.0))}
    c = c._replace(scored=scored & ~done, ended=jnp.where(done, 0, c.ended), adv=table_adv,
                   free=c.free.at[at].set(freed, mode="drop"), n_free=c.n_free + n_done,
                   ring=ring._replace(live=live), updates=c.updates + (n > 0))
    return c, batch, metrics
