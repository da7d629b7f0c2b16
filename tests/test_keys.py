"""jaxgrpo.keys: typed PRNG keys <-> their key data (is_key, impl_name, key_data, wrap_keys),
for every key implementation: the round trip gives keys that draw the same numbers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.keys import impl_name, is_key, key_data, wrap_keys

IMPLS = [("threefry2x32", 2), ("rbg", 4), ("unsafe_rbg", 4)]     # name, key data words


def test_key_data_round_trip_and_abstract_keys():
    impl = jax.random.key_impl(jax.random.key(0))
    tree = {"k": jax.random.split(jax.random.key(3), 4), "x": np.arange(3.0)}
    raw = key_data(tree)
    assert not is_key(raw["k"]) and raw["k"].dtype == np.uint32
    back = wrap_keys(raw, tree, impl)
    assert is_key(back["k"]) and not is_key(back["x"])
    np.testing.assert_array_equal(jax.random.key_data(back["k"]), raw["k"])
    assert is_key(jax.eval_shape(lambda: jax.random.key(0))) and not is_key(1.0)


@pytest.mark.parametrize("name, words", IMPLS, ids=[n for n, _ in IMPLS])
def test_round_trip_by_name_draws_the_same_numbers(name, words):
    keys = jax.random.split(jax.random.key(7, impl=name), 3)
    tree = {"key": keys, "iteration": jnp.int32(5), "none": None}
    assert impl_name(keys.dtype) == name
    assert impl_name(jax.eval_shape(lambda: keys).dtype) == name    # from an abstract value
    raw = key_data(tree)
    assert raw["key"].shape == (3, words) and raw["key"].dtype == jnp.uint32
    assert raw["iteration"] is tree["iteration"] and raw["none"] is None
    back = wrap_keys(raw, tree, impl_name(keys.dtype))               # the name, as on disk
    assert is_key(back["key"]) and back["key"].dtype == keys.dtype
    np.testing.assert_array_equal(jax.random.key_data(back["key"]), raw["key"])
    np.testing.assert_array_equal(jax.random.uniform(back["key"][1], (4,)),
                                  jax.random.uniform(keys[1], (4,)))
    np.testing.assert_array_equal(raw["iteration"], back["iteration"])


def test_round_trip_across_jit():
    """Key data crosses a jit boundary (as a sharded program's inputs do) and is wrapped again
    inside; the keys draw what the original ones draw."""
    keys = jax.random.split(jax.random.key(1), 2)
    template = jax.eval_shape(lambda: keys)
    impl = impl_name(template.dtype)

    @jax.jit
    def draw(raw):
        return jax.vmap(lambda k: jax.random.normal(k, (3,)))(wrap_keys(raw, template, impl))

    np.testing.assert_array_equal(draw(key_data(keys)),
                                  jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys))
    out = jax.jit(key_data)(keys)                          # typed keys in, key data out
    assert not is_key(out) and out.dtype == jnp.uint32


def test_is_key():
    assert is_key(jax.random.key(0))
    assert is_key(jax.ShapeDtypeStruct((2,), jax.random.key(0).dtype))
    assert not is_key(jax.random.PRNGKey(0))               # raw uint32 key data, not typed
    assert not is_key(np.zeros(2, np.uint32)) and not is_key(None) and not is_key("key")
