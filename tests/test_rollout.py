"""Collectors: same-start groups, masks, early stop, truncation, PPO segments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo.envs import make_env
from jaxgrpo.rollout import collect_episodes, collect_segments, reset_segments
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
