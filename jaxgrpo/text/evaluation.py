"""Evaluation helpers for text tasks."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _value(x):
    """NumPy value of x, or None if x is traced."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def pass_at_k(n, c, k):
    """Unbiased pass@k (Chen et al. 2021): the chance that at least one of k samples, drawn without
    replacement from n of which c are correct, is correct; ``1 - C(n-c, k) / C(n, k)``.

    Computed in the stable product form ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``; 1.0 where
    ``n - c < k``. ``n``, ``c``, ``k`` are ints or arrays that broadcast together (e.g. ``c``
    [problems] with scalar ``n`` and ``k``); the result has their broadcast shape, float64 NumPy
    for NumPy/Python inputs and float32 JAX when any input is a JAX array. ``c`` and ``k`` may be
    traced under jit; ``n`` must be concrete (it sizes the product). Concrete inputs must satisfy
    0 <= c <= n and 1 <= k <= n (ValueError otherwise).
    """
    use_jax = any(isinstance(x, jax.Array) for x in (n, c, k))
    n_val, c_val, k_val = _value(n), _value(c), _value(k)
    if n_val is None:
        raise TypeError("pass_at_k: n must be concrete (a Python int or array), not traced")
    if k_val is not None and (np.any(k_val < 1) or np.any(k_val > n_val)):
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n_val}, k={k_val}")
    if c_val is not None and (np.any(c_val < 0) or np.any(c_val > n_val)):
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n_val}, c={c_val}")
    xp, dtype = (jnp, jnp.float32) if use_jax else (np, np.float64)
    n, c, k = (x.astype(dtype) for x in xp.broadcast_arrays(*map(xp.asarray, (n, c, k))))
    j = xp.arange(int(n_val.max()), dtype=dtype)
    i = xp.maximum(n[..., None] - j, 1.0)         # n, n-1, ..., n-c+1 where j < c
    terms = xp.where(j < c[..., None], 1.0 - k[..., None] / i, 1.0)
    return xp.where(n - c < k, 1.0, 1.0 - xp.prod(terms, axis=-1)).astype(dtype)
