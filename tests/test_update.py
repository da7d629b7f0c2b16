"""update.epoch_order: the per-epoch shuffle of the learn loop (a permutation, valid samples
first, uniform), checked against counts from NumPy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.update import epoch_order

order = jax.jit(epoch_order)


@pytest.mark.parametrize("C,n_valid", [(1, 1), (8, 5), (512, 512), (1000, 0), (1000, 300),
                                       (16000, 7000)])   # 16000: two sort rounds
def test_a_permutation_with_the_valid_samples_first(C, n_valid):
    mask = np.zeros(C, bool)
    mask[np.random.default_rng(C).choice(C, n_valid, replace=False)] = True
    o = np.asarray(order(jax.random.key(C), jnp.asarray(mask)))
    assert o.dtype == np.int32
    np.testing.assert_array_equal(np.sort(o), np.arange(C))
    assert mask[o[:n_valid]].all() and not mask[o[n_valid:]].any()


def test_every_order_is_equally_likely():
    """C = 4: all 24 orders appear, each about 1/24 of the time, and each sample lands in each
    place 1/4 of the time (tolerance ~5 standard deviations); the masked sample is always last."""
    n = 24_000
    keys = jax.random.split(jax.random.key(0), n)
    o = np.asarray(jax.jit(jax.vmap(epoch_order, in_axes=(0, None)))(keys, jnp.ones(4, bool)))
    _, counts = np.unique(o, axis=0, return_counts=True)
    assert len(counts) == 24
    assert np.abs(counts / n - 1 / 24).max() < 5 * np.sqrt((1 / 24) * (23 / 24) / n)
    place = np.stack([np.bincount(o[:, i], minlength=4) for i in range(4)]) / n
    assert np.abs(place - 0.25).max() < 5 * np.sqrt(0.25 * 0.75 / n)
    masked = np.asarray(jax.jit(jax.vmap(epoch_order, in_axes=(0, None)))(
        keys[:100], jnp.array([True, False, True, True])))
    assert (masked[:, 3] == 1).all()


def test_too_many_samples_is_refused_before_compiling():
    with pytest.raises(ValueError, match="too many"):
        jax.eval_shape(epoch_order, jax.random.key(0), jax.ShapeDtypeStruct((2**28,), bool))
