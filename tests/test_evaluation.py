"""jaxgrpo.evaluation: the one evaluator of environments and text tasks. Its returns are the
collector's episode returns (env) and the verifier's rewards (text); ``evaluate`` and
``seed_returns`` batch them over seeds with the keys they document."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo.evaluation import evaluate, returns_fn, seed_returns
from jaxgrpo.envs import make_env
from jaxgrpo.rollout import collect_episodes
from jaxgrpo.text.evaluation import completion_scores, heldout_prompts
from jaxgrpo.train import make_policy

CFG = jaxgrpo.GRPOConfig(num_groups=2, group_size=2, env_params={"max_steps_in_episode": 20})


@pytest.fixture(scope="module")
def params():
    """Two seeds' params [2, ...]."""
    policy = make_policy(CFG)
    return jax.vmap(policy.init)(jax.random.split(jax.random.key(0), 2))


@pytest.fixture(scope="module")
def returns():
    return jax.jit(returns_fn(CFG), static_argnums=(2, 3))


@pytest.mark.parametrize("greedy", [False, True])
def test_env_returns_are_the_collected_episode_returns(params, returns, greedy):
    p = jax.tree.map(lambda x: x[0], params)
    got = np.asarray(returns(p, jax.random.key(3), 5, greedy))
    env, env_params = make_env(CFG)
    rollout, _ = collect_episodes(make_policy(CFG), env, env_params, p, jax.random.key(3), 5, 1,
                                  greedy=greedy)
    mask = np.asarray(rollout.mask)
    want = np.where(mask, np.asarray(rollout.reward), 0.0).sum(0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.shape == (5,) and ((got >= 1) & (got <= 20)).all()     # CartPole: 1 per step


def test_evaluate_batches_over_seeds_with_split_keys(params, returns):
    got = np.asarray(evaluate(CFG, params, jax.random.key(4), num_episodes=3))
    keys = jax.random.split(jax.random.key(4), 2)
    want = [np.mean(returns(jax.tree.map(lambda x: x[s], params), keys[s], 3, False))
            for s in range(2)]
    assert got.shape == (2,)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    one = evaluate(CFG, jax.tree.map(lambda x: x[0], params), jax.random.key(4), num_episodes=3)
    assert np.shape(one) == ()


def test_seed_returns_per_mode(params, returns):
    r = seed_returns(CFG, params, jax.random.key(5), 3)
    assert set(r) == {"greedy", "sampled"} and r["greedy"].shape == r["sampled"].shape == (2, 3)
    k = jax.random.split(jax.random.split(jax.random.key(5), 2)[1], 2)   # seed 1: greedy, sampled
    p1 = jax.tree.map(lambda x: x[1], params)
    np.testing.assert_allclose(r["greedy"][1], returns(p1, k[0], 3, True), rtol=1e-6)
    np.testing.assert_allclose(r["sampled"][1], returns(p1, k[1], 3, False), rtol=1e-6)


def test_text_returns_are_the_verifier_rewards():
    cfg = jaxgrpo.GRPOConfig(env="text:sort", env_kwargs={"length": 3}, width=16, num_heads=2,
                             num_layers=1)
    model = make_policy(cfg)
    p = model.init(jax.random.key(0))
    got = jax.jit(returns_fn(cfg), static_argnums=(2, 3))(p, jax.random.key(1), 4, True)
    prompts = heldout_prompts(cfg.task, 4)
    _, want = completion_scores(model, cfg.task, p, prompts, jax.random.key(1), 1, greedy=True)
    np.testing.assert_array_equal(got, want[:, 0])
    assert got.dtype == jnp.float32
