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
