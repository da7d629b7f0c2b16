"""Group modes (episode / state / batch), reward transforms, shared env noise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo import grpo, rewards
from jaxgrpo.envs import make_env
from jaxgrpo.rollout import collect_branches, collect_episodes
from jaxgrpo.train import make_policy


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


def test_zeroing_transform_gives_zero_advantages():
    cfg = jaxgrpo.GRPOConfig(num_groups=2, group_size=4, reward_transform=lambda r, m: r * 0.0)
    env, env_params, policy, params = _setup(cfg)
    rollout, _ = collect_episodes(policy, env, env_params, params, jax.random.key(3), 2, 4)
    adv, _ = grpo.advantages(cfg, rollout, 0.99)
    assert not np.asarray(adv).any()
    adv_id, _ = grpo.advantages(cfg.replace(reward_transform=None), rollout, 0.99)
    assert np.asarray(adv_id).any()


def test_transform_survives_jit_and_vmap_over_seeds_and_hparams():
    cfg = jaxgrpo.GRPOConfig(total_timesteps=8_000, num_groups=2, group_size=4, num_iterations=2,
                             env_params={"max_steps_in_episode": 40}, reward_transform="symlog")
    train = jaxgrpo.make_train(cfg)
    f = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0)))
    _, m = f(jax.random.split(jax.random.key(0), 2), {"lr": jnp.array([1e-3, 3e-3])})
    assert m["episode_return"].shape == (2, 2, 2) and np.isfinite(m["loss"]).all()
    ppo = jaxgrpo.PPOConfig(total_timesteps=512, num_envs=2, num_steps=64,
                            reward_transform=rewards.clip(-0.5, 0.5))
    _, m = jax.jit(jaxgrpo.make_train(ppo))(jax.random.key(0))
    assert np.isfinite(m["value_loss"]).all()


def test_ppo_applies_the_transform():
    from jaxgrpo import ppo
    from jaxgrpo.rollout import collect_segments, reset_segments
    cfg = jaxgrpo.PPOConfig(num_envs=2, num_steps=16, num_minibatches=2,
                            reward_transform=rewards.scale(0.0))
    env, env_params, policy, params = _setup(cfg)
    carry = reset_segments(env, env_params, jax.random.key(0), 2)
    rollout, _, _ = collect_segments(policy, env, env_params, params, jax.random.key(1), carry, 16)
    batch, *_ = ppo.score(cfg, policy, params, rollout, cfg.hparams())
    b1, *_ = ppo.score(cfg.replace(reward_transform=None), policy, params, rollout, cfg.hparams())
    # zero rewards: returns are the bootstrapped values only, and differ from the real ones
    assert not np.allclose(batch["ret"], b1["ret"])


@pytest.mark.parametrize("name,fn", [
    ("sign", np.sign),
    ("symlog", lambda r: np.sign(r) * np.log1p(np.abs(r))),
    ("clip(-1, 0.5)", lambda r: np.clip(r, -1, 0.5)),
    ("scale(0.1)", lambda r: 0.1 * r),
    ("identity", lambda r: r),
])
def test_builtin_transforms_match_numpy(name, fn):
    r = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32) * 3
    m = np.ones((7, 3), bool)
    np.testing.assert_allclose(rewards.from_string(name)(jnp.asarray(r), jnp.asarray(m)), fn(r),
                               rtol=1e-5, atol=1e-6)


def test_tanh_zscore_uses_valid_entries_only():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(6, 4)).astype(np.float32)
    m = rng.random((6, 4)) > 0.3
    v = r[m]
    expected = np.tanh((r - v.mean()) / (v.std() + 1e-8))
    out = np.asarray(rewards.tanh_zscore(jnp.asarray(r), jnp.asarray(m)))
    np.testing.assert_allclose(out[m], expected[m], rtol=1e-5, atol=1e-6)
    r2 = np.where(m, r, 1e6).astype(np.float32)       # padding values must not matter
    np.testing.assert_allclose(np.asarray(rewards.tanh_zscore(jnp.asarray(r2), jnp.asarray(m)))[m],
                               out[m], rtol=1e-5)


@pytest.mark.parametrize("kwargs,field", [
    ({"group_mode": "states"}, "group_mode"),
    ({"group_mode": "state", "branch_horizon": 0}, "branch_horizon"),
    ({"branch_every": 1.5}, "branch_every"),
    ({"share_env_noise": "yes"}, "share_env_noise"),
    ({"reward_transform": "log"}, "reward_transform"),
    ({"reward_transform": 3}, "reward_transform"),
    ({"reward_transform": lambda r, m: r.sum()}, "reward_transform"),
])
def test_bad_group_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        jaxgrpo.GRPOConfig(**kwargs)


def test_non_jittable_transform_is_named():
    def to_numpy_first(r, m):
        return jnp.asarray(np.asarray(r) * 2)

    with pytest.raises(ValueError, match="reward_transform: to_numpy_first is not a jittable"):
        jaxgrpo.PPOConfig(reward_transform=to_numpy_first)
