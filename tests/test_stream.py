"""GRPO's stream collector (jaxgrpo.stream): lanes that never idle, groups completing across
iterations, every step trained once with its group-normalized advantage, staleness counted.

The collector is run for several iterations on CartPole with a short time limit (episodes span
iterations), and the episodes are rebuilt from the ring blocks it wrote: the checks compare
what it trained with a NumPy reference built from those episodes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo import stream
from jaxgrpo.envs import make_env
from jaxgrpo.grpo import stream_weights
from jaxgrpo.losses import loss_weights
from jaxgrpo.train import make_policy, make_train
from tests.references import ref_group_normalize

L, G, T, ITERS, GAMMA = 6, 3, 8, 10, 0.9
CFG = jaxgrpo.GRPOConfig(num_groups=2, group_size=G, num_steps=T, gamma=GAMMA,
                         env_params={"max_steps_in_episode": 20})


def _collect(same_start):
    """ITERS collections; per iteration the batch, stats, metrics, the block written (obs,
    action, logp, ep [T, L]) and the steps trained (their (iteration, t, lane) in batch order,
    found from the ring's live flags before and after)."""
    env, env_params = make_env(CFG)
    policy = make_policy(CFG)
    params = policy.init(jax.random.key(0))
    carry = stream.init_stream(policy, env, env_params, params, jax.random.key(1), L, T, G)
    step = jax.jit(lambda c, k: stream.collect_stream(
        policy, env, env_params, params, k, c, T, gamma=GAMMA, transform=CFG.reward_transform,
        group_size=G, same_start=same_start))
    B = carry.ring.live.shape[0]
    owner = {}                    # ring block -> the iteration that wrote it
    live = np.zeros((B, T, L), bool)
    iters = []
    for i in range(ITERS):
        batch, stats, carry, metrics = step(carry, jax.random.key(100 + i))
        b = int(carry.block - 1) % B
        owner[b] = i
        ring = jax.device_get(carry.ring)
        live[b] = ring.ep[b] >= 0                 # written this iteration
        gone = live & ~ring.live                  # trained now (nothing is dropped here)
        cells = sorted((owner[bb], t, n) for bb, t, n in zip(*np.nonzero(gone)))
        live = ring.live.copy()
        block = tuple(np.asarray(x[b]) for x in (ring.obs, ring.action, ring.logp, ring.ep))
        iters.append((jax.device_get(batch), jax.device_get(stats), jax.device_get(metrics),
                      block, cells))
    return env, env_params, iters, jax.device_get(carry)


@pytest.fixture(scope="module")
def same_start():
    return _collect(True)


@pytest.fixture(scope="module")
def own_start():
    return _collect(False)


def _env_step(env, env_params):
    """CartPole's step from an observation: (next obs, episode ended)."""
    from gymnax.environments.classic_control.cartpole import EnvState

    def step(o, a, t):
        s = EnvState(x=o[0], x_dot=o[1], theta=o[2], theta_dot=o[3], time=t)
        nobs, s2, _, done, _ = env.step_env(jax.random.key(0), s, a, env_params)
        return nobs, done | env.is_truncated(s2, env_params)
    return jax.jit(step)


def _episodes(iters, env, env_params):
    """Episodes rebuilt from the blocks: per lane, consecutive steps with the same ``ep`` id
    until the env ends the episode. Each: dict(lane, slot, member, start, ended, steps
    [(iteration, t, obs, action, logp)]); also the map (iteration, t, lane) -> episode."""
    step = _env_step(env, env_params)
    eps, current, where = [], [None] * L, {}
    for i, (_, _, _, (obs, action, logp, ep), _) in enumerate(iters):
        for t in range(T):
            for n in range(L):
                e, cur = int(ep[t, n]), current[n]
                if cur is None or cur["ep"] != e or cur["ended"]:
                    cur = dict(lane=n, ep=e, slot=e // G, member=e % G, start=i * T + t,
                               steps=[], ended=False)
                    eps.append(cur)
                    current[n] = cur
                cur["steps"].append((i, t, obs[t, n], action[t, n], float(logp[t, n])))
                cur["ended"] = bool(step(obs[t, n], action[t, n], len(cur["steps"]) - 1)[1])
                where[(i, t, n)] = cur
    return eps, where


def _groups(eps):
    """Episodes grouped: the episodes of one slot, by start, in runs of G (a slot is reused
    only after its group's last member has ended)."""
    by_slot = {}
    for e in sorted(eps, key=lambda e: e["start"]):
        by_slot.setdefault(e["slot"], []).append(e)
    return [v[k:k + G] for v in by_slot.values() for k in range(0, len(v), G)]


def test_lanes_never_idle_and_episodes_follow_the_dynamics(same_start):
    """Every lane steps a real episode at every step (valid_frac 1), and within an episode
    each step is CartPole's step of the one before."""
    env, env_params, iters, _ = same_start
    for _, stats, _, (_, _, _, ep), _ in iters:
        assert float(stats.valid_steps) == float(stats.sim_steps) == L * T
        assert (ep >= 0).all()
    eps, _ = _episodes(iters, env, env_params)
    step = _env_step(env, env_params)
    spans = 0
    for e in eps:
        for (i0, _, o0, a0, _), (i1, _, o1, _, _) in zip(e["steps"], e["steps"][1:]):
            np.testing.assert_allclose(step(o0, a0, 0)[0], o1, rtol=0, atol=1e-6)
            spans += i1 != i0
    assert spans > 0          # some episodes continue from one iteration into the next


def test_groups_share_start_states_and_are_trained_with_their_normalized_returns(same_start):
    """A group's members start from one state; the steps trained are the oldest waiting ones
    of finished groups, each once, with its episode's advantage (NumPy group normalization of
    the members' discounted returns) and length."""
    env, env_params, iters, carry = same_start
    eps, where = _episodes(iters, env, env_params)
    complete = [g for g in _groups(eps) if len(g) == G and all(e["ended"] for e in g)]
    assert len(complete) >= 3
    adv_of = {}
    for g in complete:
        assert sorted(e["member"] for e in g) == list(range(G))
        starts = [e["steps"][0][2] for e in g]
        assert all(np.array_equal(s, starts[0]) for s in starts)
        lengths = np.array([len(e["steps"]) for e in g], float)
        returns = np.array([sum(GAMMA ** t for t in range(int(n))) for n in lengths])
        for e, a in zip(g, ref_group_normalize(returns, np.zeros(G, int), 1)):
            adv_of[id(e)] = a
    seen, n_trained = set(), 0
    for i, (batch, _, _, _, cells) in enumerate(iters):
        n = int(batch.mask.sum())
        assert batch.mask[:n].all() and not batch.mask[n:].any()
        assert len(cells) == n and not seen & set(cells)       # each step trained once
        seen |= set(cells)
        for k, (j, t, lane) in enumerate(cells):                # oldest first, in batch order
            e = where[(j, t, lane)]
            _, _, o, a, lp = e["steps"][[s[:2] for s in e["steps"]].index((j, t))]
            np.testing.assert_array_equal(batch.obs[k], o)
            assert batch.action[k] == a and batch.logp[k] == lp
            assert id(e) in adv_of                              # its group had finished
            np.testing.assert_allclose(batch.adv[k], adv_of[id(e)], rtol=1e-5, atol=1e-6)
            assert batch.ep_len[k] == len(e["steps"])
        n_trained += n
    assert n_trained > 0.5 * sum(len(e["steps"]) for g in complete for e in g)
    # accounting: every step simulated is trained or still waiting in the ring
    simulated = sum(float(st.valid_steps) for _, st, _, _, _ in iters)
    assert sum(float(m["dropped"]) for _, _, m, _, _ in iters) == 0
    assert simulated == n_trained + int(carry.ring.live.sum())


def test_staleness_counts_the_updates_since_a_step_was_sampled(same_start):
    """A step's staleness is the number of updates (iterations that trained something)
    between the one that sampled it and the one that trains it; the metrics are its mean and
    max over the batch."""
    _, _, iters, _ = same_start
    updated = [int(b.mask.sum()) > 0 for b, _, _, _, _ in iters]
    before = np.concatenate([[0], np.cumsum(updated)])        # updates before iteration i
    for i, (batch, _, metrics, _, cells) in enumerate(iters):
        n = len(cells)
        for k, (j, _, _) in enumerate(cells):
            assert batch.staleness[k] == before[i] - before[j]
        if n:
            np.testing.assert_allclose(metrics["staleness/mean"], np.mean(batch.staleness[:n]))
            assert metrics["staleness/max"] == np.max(batch.staleness[:n])
    assert max(float(m["staleness/max"]) for _, _, m, _, _ in iters) >= 1


def test_batch_groups_start_from_their_own_states(own_start):
    env, env_params, iters, _ = own_start
    groups = [g for g in _groups(_episodes(iters, env, env_params)[0]) if len(g) == G]
    assert groups
    for g in groups:
        starts = [e["steps"][0][2] for e in g]
        assert not all(np.array_equal(s, starts[0]) for s in starts)


def test_stream_weights_are_loss_weights_when_whole_episodes_are_in_the_batch():
    """A batch of whole episodes weighs its steps as ``loss_weights`` does for every loss type
    (episodes of lengths 3, 1, 4 laid out as a [4, 3] rollout and as a flat batch)."""
    lengths = [3, 1, 4]
    mask = np.zeros((4, 3), bool)
    for n, k in enumerate(lengths):
        mask[:k, n] = True
    flat_len = np.concatenate([[k] * k for k in lengths]).astype(np.float32)
    K = 10
    batch = stream.StreamBatch(obs=None, action=None, logp=None, adv=None,
                               ep_len=jnp.asarray(np.pad(flat_len, (0, K - 8))),
                               mask=jnp.arange(K) < 8, staleness=None)
    for lt in ("grpo", "bnpo", "dr_grpo", "dapo"):
        ref = np.asarray(loss_weights(jnp.asarray(mask), lt, 20)).T[mask.T]
        got = np.asarray(stream_weights(batch, lt, 20))
        np.testing.assert_allclose(got[:8], ref, rtol=1e-6)
        assert (got[8:] == 0).all()


def test_vmapped_seeds_equal_separate_runs():
    """The stream has no data-dependent loop: vmapped seeds give each seed's own run."""
    cfg = jaxgrpo.GRPOConfig(num_groups=2, group_size=4, num_steps=16, total_timesteps=2048,
                             env_params={"max_steps_in_episode": 50})
    train = make_train(cfg)
    keys = jax.random.split(jax.random.key(0), 2)
    _, both = jax.jit(jax.vmap(train))(keys)
    one = jax.jit(train)
    for s in range(2):
        _, m = one(keys[s])
        for k in ("episode_return", "loss", "env_steps", "staleness/mean"):
            np.testing.assert_allclose(np.asarray(both[k])[s], np.asarray(m[k]), rtol=1e-5,
                                       atol=1e-6)
    assert cfg.iterations == 2048 // (8 * 16)
    assert np.asarray(both["env_steps"])[:, -1].tolist() == [2048.0, 2048.0]
