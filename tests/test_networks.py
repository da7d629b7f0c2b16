"""Policies and initializers."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo.networks import orthogonal
from jaxgrpo.train import make_policy


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (36, 16), (3, 3, 4, 8)])
def test_orthogonal_matches_flax_without_a_custom_call(shape):
    key = jax.random.key(3)
    ours = np.asarray(orthogonal(1.4)(key, shape))
    np.testing.assert_allclose(ours, np.asarray(nn.initializers.orthogonal(1.4)(key, shape)),
                               atol=2e-6)
    jaxpr = str(jax.make_jaxpr(lambda k: orthogonal(1.0)(k, shape))(key))
    assert "custom_call" not in jaxpr and "householder" not in jaxpr and "geqrf" not in jaxpr


@pytest.mark.parametrize("env,discrete", [("CartPole-v1", True), ("Pendulum-v1", False)])
def test_policy_distributions(env, discrete):
    cfg = jaxgrpo.GRPOConfig(env=env)
    policy = make_policy(cfg)
    params = policy.init(jax.random.key(0))
    obs = jnp.zeros((5, *policy.obs_shape))
    dist = policy.dist(params, obs)
    a, logp = dist.sample_and_log_prob(seed=jax.random.key(1))
    assert logp.shape == (5,)
    np.testing.assert_allclose(dist.log_prob(a), logp, rtol=1e-5)
    if not discrete:   # state-independent log-std, starts at 0
        np.testing.assert_allclose(params["actor"]["params"]["log_std"], 0.0)


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_policy_sample_with_predrawn_noise(env):
    """Policy.sample(noise) draws from the policy's distribution (NumPy check of the sample
    moments) and returns the log-prob of the action it took."""
    cfg = jaxgrpo.GRPOConfig(env=env)
    policy = make_policy(cfg)
    params = policy.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(2), (1, *policy.obs_shape))
    n = 20_000
    noise = policy.noise(jax.random.key(3), (n,))
    a, logp = jax.jit(lambda o, z: policy.sample(params, o, z))(jnp.repeat(obs, n, 0), noise)
    a, logp = np.asarray(a), np.asarray(logp)
    out, log_std = policy.actor.apply(params["actor"], obs)
    out = np.asarray(out[0], np.float64)
    if policy.spec.discrete:
        logpi = out - np.log(np.sum(np.exp(out - out.max()))) - out.max()
        freq = np.bincount(a, minlength=len(out)) / n
        np.testing.assert_allclose(freq, np.exp(logpi), atol=4 * np.sqrt(0.25 / n))
        np.testing.assert_allclose(logp, logpi[a], rtol=1e-5, atol=1e-6)
    else:
        std = np.exp(np.asarray(log_std, np.float64))
        np.testing.assert_allclose(a.mean(0), out, atol=4 * std.max() / np.sqrt(n))
        np.testing.assert_allclose(a.std(0), std, rtol=0.03)
        ref = np.sum(-0.5 * ((a - out) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), -1)
        np.testing.assert_allclose(logp, ref, rtol=1e-4, atol=1e-4)
