"""Typed PRNG keys <-> their raw key data, for what crosses a jit boundary or goes to disk.

A ``TrainState`` carries typed keys (``jax.random.key``); checkpoints and sharded programs hold
their ``jax.random.key_data`` (``uint32`` arrays) and wrap them again with the key
implementation's name.
"""
from __future__ import annotations

import jax


def is_key(x) -> bool:
    """Whether ``x`` (an array or a ``jax.ShapeDtypeStruct``) holds typed PRNG keys."""
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def impl_name(key_dtype) -> str:
    """``"threefry2x32"`` etc.: the name ``jax.random.wrap_key_data(impl=...)`` takes."""
    impl = key_dtype._impl
    return getattr(impl, "name", str(impl))


def key_data(tree):
    """Typed PRNG keys -> their key data; other leaves as they are."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def wrap_keys(tree, template, impl):
    """Inverse of ``key_data``: the leaves that are keys in ``template`` wrapped again as keys
    of ``impl`` (a name or a ``jax.random.key_impl``)."""
    return jax.tree.map(lambda x, t: jax.random.wrap_key_data(x, impl=impl) if is_key(t) else x,
                        tree, template)
