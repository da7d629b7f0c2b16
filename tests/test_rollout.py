"""Collectors: same-start groups, masks, early stop, truncation, PPO segments; state
branches, batch groups and shared env noise. (GRPO's stream collector: test_stream.)"""
import jax
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo import grpo
from jaxgrpo.envs import make_env
from jaxgrpo.rollout import collect_branches, collect_episodes, collect_segments, reset_segments
from jaxgrpo.train import make_policy

CFG = jaxgrpo.GRPOConfig(num_groups=3, group_size=4)


@pytest.fixture(scope="module")
def episodes():
    env, env_params = make_env(CFG)
    policy = make_policy(CFG)
    params = policy.init(jax.random.key(0))
    fn = jax.jit(lambda k: collect_episodes(policy, env, env_params, params, k, 3, 4))
    return fn(jax.random.key(1))


def test_group_members_start_bitwise_identical_and_differ_later(episodes):
    rollout, _ = episodes
    obs0 = np.asarray(rollout.obs[0]).reshape(3, 4, -1)
    for g in range(3):
        assert (obs0[g] == obs0[g, :1]).all()
    assert not np.array_equal(obs0[0, 0], obs0[1, 0])  # different groups, different starts
    # the policy's samples make members diverge
    assert not np.array_equal(np.asarray(rollout.action[:, 0]), np.asarray(rollout.action[:, 1]))
    np.testing.assert_array_equal(np.asarray(rollout.group_id), np.repeat(np.arange(3), 4))


def test_mask_is_a_prefix_ending_at_the_episode_end(episodes):
    rollout, stats = episodes
    mask = np.asarray(rollout.mask)
    lengths = mask.sum(0)
    assert (lengths >= 1).all()
    for n, L in enumerate(lengths):
        assert mask[:L, n].all() and not mask[L:, n].any()
        # the last valid step ended the episode (CartPole: pole fell or time limit)
        assert rollout.terminated[L - 1, n] or rollout.truncated[L - 1, n]
        assert not np.asarray(rollout.terminated)[: L - 1, n].any()
    # rewards only on valid steps; CartPole gives 1 per step
    np.testing.assert_array_equal(np.asarray(rollout.reward), mask.astype(np.float32))
    # stopped as soon as all episodes ended: simulated rows = longest episode
    assert float(stats.sim_steps) == lengths.max() * 12
    assert float(stats.count) == 12 and float(stats.return_sum) == lengths.sum()


def test_time_limit_is_truncation_not_termination():
    cfg = jaxgrpo.GRPOConfig(num_groups=1, group_size=2, env_params={"max_steps_in_episode": 5})
    env, env_params = make_env(cfg)
    policy = make_policy(cfg)
    params = policy.init(jax.random.key(0))
    rollout, stats = collect_episodes(policy, env, env_params, params, jax.random.key(3), 1, 2)
    assert rollout.mask.shape == (5, 2)
    assert np.asarray(rollout.mask).all()
    np.testing.assert_array_equal(np.asarray(rollout.truncated[4]), [True, True])
    assert not np.asarray(rollout.terminated).any()


def test_inactive_collector_simulates_nothing():
    env, env_params = make_env(CFG)
    policy = make_policy(CFG)
    params = policy.init(jax.random.key(0))
    rollout, stats = collect_episodes(policy, env, env_params, params, jax.random.key(1), 3, 4,
                                      active=False)
    assert not np.asarray(rollout.mask).any() and float(stats.sim_steps) == 0


def test_ppo_segments_record_final_observation_on_auto_reset():
    cfg = jaxgrpo.PPOConfig(num_envs=3, num_steps=40, num_minibatches=4,
                            env_params={"max_steps_in_episode": 7})
    env, env_params = make_env(cfg)
    policy = make_policy(cfg)
    params = policy.init(jax.random.key(0))
    carry = reset_segments(env, env_params, jax.random.key(1), 3)
    rollout, stats, carry2 = collect_segments(policy, env, env_params, params, jax.random.key(2),
                                              carry, 40)
    done = np.asarray(rollout.terminated | rollout.truncated)
    assert np.asarray(rollout.truncated).any()           # the 7-step limit hit
    obs, nxt = np.asarray(rollout.obs), np.asarray(rollout.next_obs)
    # not done: next_obs is the next row's obs; done: it is the pre-reset final observation
    cont = ~done[:-1]
    np.testing.assert_array_equal(nxt[:-1][cont], obs[1:][cont])
    assert not np.allclose(nxt[:-1][done[:-1]], obs[1:][done[:-1]])
    assert float(stats.count) == done.sum()
    assert float(stats.sim_steps) == 120


# ----------------------------------------------------------------------------- group modes

def _setup(cfg, seed=0):
    env, env_params = make_env(cfg)
    policy = make_policy(cfg)
    return env, env_params, policy, policy.init(jax.random.key(seed))


@pytest.fixture(scope="module")
def pendulum_branches():
    cfg = jaxgrpo.GRPOConfig(env="Pendulum-v1", group_mode="state", num_groups=2, group_size=4,
                             branch_every=3, branch_horizon=1, env_params={"max_steps_in_episode": 12})
    env, env_params, policy, params = _setup(cfg)
    fn = jax.jit(lambda k: collect_branches(policy, env, env_params, params, k, 2, 4, 3, 1))
    return cfg, jax.device_get(fn(jax.random.key(1)))


def test_branches_start_from_identical_states(pendulum_branches):
    cfg, (rollout, stats) = pendulum_branches
    obs = rollout.obs[0].reshape(-1, 4, 3)            # [groups, G, obs]
    valid = rollout.mask[0].reshape(-1, 4)
    assert valid.any()
    for o, v in zip(obs, valid):
        if v.any():
            assert (o == o[:1]).all()                 # bitwise identical within the group
    assert len({tuple(o[0]) for o, v in zip(obs, valid) if v.any()}) == valid.any(1).sum()
    # ... while each branch sampled its own action
    acts = rollout.action[0].reshape(-1, 4)
    assert all(len(set(a.tolist())) == 4 for a, v in zip(acts, valid) if v.all())


def test_horizon_one_scores_are_immediate_rewards(pendulum_branches):
    cfg, (rollout, _) = pendulum_branches
    assert rollout.reward.shape[0] == 1
    # Pendulum: r = -(theta^2 + 0.1 thdot^2 + 0.001 u^2), u clipped to [-2, 2]
    cos, sin, thdot = rollout.obs[0].T
    u = np.clip(rollout.action[0][:, 0], -2.0, 2.0)
    theta = np.arctan2(sin, cos)
    expected = -(theta ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2)
    m = rollout.mask[0]
    np.testing.assert_allclose(rollout.reward[0][m], expected[m], rtol=1e-4, atol=1e-4)
    ret = np.asarray(jaxgrpo.advantages.episode_returns(rollout.reward, rollout.mask, 0.99))
    np.testing.assert_allclose(ret, rollout.reward[0])


def test_state_mode_groups_and_counts(pendulum_branches):
    cfg, (rollout, stats) = pendulum_branches
    P = -(-12 // 3)
    assert rollout.obs.shape[:2] == (1, P * 2 * 4)
    np.testing.assert_array_equal(rollout.group_id, np.arange(P * 8) // 4)
    # 4 branch points x 2 trajectories x 4 branches x 1 step + 2 ordinary steps per block
    assert float(stats.valid_steps) == 4 * 2 * 4 + 4 * 2 * 2
    assert float(stats.count) == 2 and float(stats.length_sum) == 24


def test_batch_groups_are_consecutive_unrelated_episodes():
    cfg = jaxgrpo.GRPOConfig(group_mode="batch", num_groups=3, group_size=4)
    env, env_params, policy, params = _setup(cfg)
    rollout, _ = collect_episodes(policy, env, env_params, params, jax.random.key(2), 3, 4,
                                  same_start=False)
    obs0 = np.asarray(rollout.obs[0])
    assert len({tuple(o) for o in obs0}) == 12        # every episode its own start
    np.testing.assert_array_equal(rollout.group_id, np.arange(12) // 4)
    adv, _ = grpo.advantages(cfg, rollout, 0.99)
    R = np.asarray(jaxgrpo.advantages.episode_returns(rollout.reward, rollout.mask, 0.99))
    first = np.asarray(adv)[0]
    for g in range(3):                                # normalized among episodes 4g .. 4g+3
        r = R[4 * g: 4 * g + 4]
        if r.std() > 0:
            np.testing.assert_allclose(first[4 * g: 4 * g + 4],
                                       (r - r.mean()) / (r.std(ddof=1) + 1e-4), rtol=1e-4)


def test_share_env_noise_on_a_stochastic_env():
    base = dict(env="FrozenLake-misc", num_groups=1, group_size=6,
                env_params={"max_steps_in_episode": 20})
    cfg = jaxgrpo.GRPOConfig(total_timesteps=10_000, **base)
    env, env_params, policy, params = _setup(cfg)
    run = lambda share: collect_episodes(policy, env, env_params, params, jax.random.key(5), 1, 6,
                                         greedy=True, share_env_noise=share)[0]
    shared, own = run(True), run(False)
    o = np.asarray(shared.obs).reshape(shared.obs.shape[0], 6, -1)
    assert (o == o[:, :1]).all()                     # same actions + same noise: same episode
    o2 = np.asarray(own.obs).reshape(own.obs.shape[0], 6, -1)
    assert not (o2 == o2[:, :1]).all()               # slippery ice makes them differ
