"""jaxgrpo.rewards: the built-in transforms against NumPy, the string forms, masking (padding
never changes a valid entry's result), the checks that name a bad transform, and a transform
under jit and vmap inside a training run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo import rewards


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


def test_non_jittable_transform_is_named():
    def to_numpy_first(r, m):
        return jnp.asarray(np.asarray(r) * 2)

    with pytest.raises(ValueError, match="reward_transform: to_numpy_first is not a jittable"):
        jaxgrpo.PPOConfig(reward_transform=to_numpy_first)


def test_string_forms():
    assert rewards.from_string(" symlog ") is rewards.symlog
    f = rewards.from_string("clip(-1, 0.5)")
    assert rewards.name_of(f) == "clip(-1, 0.5)"
    assert rewards.name_of(rewards.from_string("scale(2)")) == "scale(2)"
    assert rewards.name_of(rewards.sign) == "sign"
    for bad in ("log", "clip(a, b)", "scale(0.1", "clip(-1, 'x')", "nope(1)"):
        with pytest.raises(ValueError, match="reward_transform: unknown transform"):
            rewards.from_string(bad)
    with pytest.raises(ValueError, match="clip needs low <= high"):
        rewards.from_string("clip(1, -1)")


@pytest.mark.parametrize("spec", ["clip(1)", "scale(1, 2)", "clip(1, 2, 3)"])
def test_wrong_number_of_factory_arguments_is_a_value_error(spec):
    with pytest.raises(ValueError, match="reward_transform"):
        rewards.from_string(spec)


@pytest.mark.parametrize("name", sorted(rewards.BUILTINS) + ["clip(-1, 1)", "scale(3)"])
def test_padding_never_changes_valid_entries(name):
    """Any rank, masked entries overwritten by huge values: the valid entries are unchanged."""
    f = rewards.from_string(name)
    rng = np.random.default_rng(2)
    r = rng.normal(size=(4, 3, 2)).astype(np.float32)
    m = rng.random((4, 3, 2)) > 0.4
    out = np.asarray(f(jnp.asarray(r), jnp.asarray(m)))
    dirty = np.asarray(f(jnp.asarray(np.where(m, r, -1e6)), jnp.asarray(m)))
    assert out.shape == r.shape
    np.testing.assert_allclose(dirty[m], out[m], rtol=1e-6)


def test_tanh_zscore_constant_and_empty_rewards_are_finite():
    z = rewards.tanh_zscore(jnp.full((3, 2), 5.0), jnp.ones((3, 2), bool))
    np.testing.assert_array_equal(np.asarray(z), 0.0)
    z = rewards.tanh_zscore(jnp.arange(6.0).reshape(3, 2), jnp.zeros((3, 2), bool))
    assert np.isfinite(np.asarray(z)).all()


def test_check_resolves_and_rejects():
    assert rewards.check(None) is rewards.identity
    assert rewards.check("sign") is rewards.sign
    f = lambda r, m: r * 2
    assert rewards.check(f) is f
    with pytest.raises(ValueError, match="must be a function"):
        rewards.check(3)
    with pytest.raises(ValueError, match="must return an array shaped like rewards"):
        rewards.check(lambda r, m: r[0])
    with pytest.raises(ValueError, match="is not a jittable"):
        rewards.check(lambda r: r)


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
