"""Reward transforms ``f(rewards, mask) -> rewards``, applied before advantages are computed
(every GRPO group mode and PPO). ``rewards`` and ``mask`` have the same shape (any rank: [T, N]
for episodes and PPO segments, [H, B] for state branches); masked entries are padding and must
not influence the result for valid ones. A transform must be jittable.

Built-ins: ``identity``, ``sign``, ``symlog``, ``tanh_zscore`` (the SB3 GRPO port's default),
and the factories ``clip(low, high)`` and ``scale(c)``. In YAML / on the command line a
transform is named by a string: ``"sign"``, ``"symlog"``, ``"clip(-1, 1)"``, ``"scale(0.1)"``.
"""
from __future__ import annotations

import ast
import inspect

import jax
import jax.numpy as jnp


def identity(rewards, mask):
    return rewards


def sign(rewards, mask):
    return jnp.sign(rewards)


def symlog(rewards, mask):
    """sign(r) * log(1 + |r|)."""
    return jnp.sign(rewards) * jnp.log1p(jnp.abs(rewards))


def tanh_zscore(rewards, mask, eps=1e-8):
    """tanh((r - mean) / (std + eps)) with mean and std over the valid entries of the batch."""
    m = mask.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(m), 1.0)
    mean = jnp.sum(rewards * m) / n
    std = jnp.sqrt(jnp.sum(m * (rewards - mean) ** 2) / n)
    return jnp.tanh((rewards - mean) / (std + eps))


def clip(low, high):
    """A transform clipping rewards to [low, high]."""
    if not low <= high:
        raise ValueError(f"reward_transform: clip needs low <= high, got ({low}, {high})")
    f = lambda rewards, mask: jnp.clip(rewards, low, high)
    f.__name__ = f"clip({low}, {high})"
    return f


def scale(c):
    """A transform multiplying rewards by ``c``."""
    f = lambda rewards, mask: rewards * c
    f.__name__ = f"scale({c})"
    return f


BUILTINS = {"identity": identity, "sign": sign, "symlog": symlog, "tanh_zscore": tanh_zscore}
FACTORIES = {"clip": clip, "scale": scale}


def from_string(spec: str):
    """``"symlog"`` -> symlog; ``"clip(-1, 1)"`` -> clip(-1, 1); ``"scale(0.1)"`` -> scale(0.1)."""
    s = spec.strip()
    if s in BUILTINS:
        return BUILTINS[s]
    name, _, rest = s.partition("(")
    if name.strip() in FACTORIES and rest.endswith(")"):
        try:
            args = ast.literal_eval(f"({rest[:-1]},)")
        except (ValueError, SyntaxError):
            args = None
        if args is not None and all(isinstance(a, (int, float)) for a in args):
            factory = FACTORIES[name.strip()]
            try:
                inspect.signature(factory).bind(*args)
            except TypeError:
                raise ValueError(f"reward_transform: {spec!r}: {name.strip()} takes "
                                 f"{name.strip()}{inspect.signature(factory)}") from None
            return factory(*args)
    raise ValueError(f"reward_transform: unknown transform {spec!r}; built-ins are "
                     f"{sorted(BUILTINS)} and clip(low, high), scale(c)")


def name_of(f) -> str:
    return getattr(f, "__name__", None) or repr(f)


def check(f):
    """Resolve strings and check that ``f`` traces under jit with the right output shape.
    Returns the callable; raises ValueError naming it otherwise."""
    if f is None:
        return identity
    if isinstance(f, str):
        f = from_string(f)
    if not callable(f):
        raise ValueError(f"reward_transform: must be a function f(rewards, mask) or a name, got {f!r}")
    r = jax.ShapeDtypeStruct((5, 3), jnp.float32)
    m = jax.ShapeDtypeStruct((5, 3), jnp.bool_)
    try:
        out = jax.eval_shape(jax.jit(f), r, m)
    except Exception as e:  # noqa: BLE001 - any tracing failure is the user's function's
        raise ValueError(f"reward_transform: {name_of(f)} is not a jittable f(rewards, mask): "
                         f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    if getattr(out, "shape", None) != (5, 3):
        raise ValueError(f"reward_transform: {name_of(f)} must return an array shaped like "
                         f"rewards, got {getattr(out, 'shape', out)!r}")
    return f
