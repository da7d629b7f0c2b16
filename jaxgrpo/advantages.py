"""Scoring: group normalization (GRPO), discounted returns and GAE (PPO).

Every function here is a pure array function, tested against a NumPy reference.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _segment_stats(values, group_ids, num_groups, mask):
    """The one segment pass over groups: (x = values masked to 0, m = mask as float, per group
    [G]: count n, sum, mean, unbiased variance, flat = zero std or at most one member)."""
    values = jnp.asarray(values, jnp.float32)
    group_ids = jnp.asarray(group_ids, jnp.int32)
    mask = jnp.ones(values.shape, bool) if mask is None else jnp.asarray(mask, bool)
    chex.assert_rank(values, 1)
    chex.assert_equal_shape([values, group_ids, mask])
    x = jnp.where(mask, values, 0.0)
    m = mask.astype(jnp.float32)
    seg_sum = lambda v: jax.ops.segment_sum(v, group_ids, num_segments=num_groups)
    n = seg_sum(m)
    total = seg_sum(x)
    mean = total / jnp.maximum(n, 1.0)
    var = seg_sum(m * (x - mean[group_ids]) ** 2) / jnp.maximum(n - 1.0, 1.0)
    big = jnp.finfo(jnp.float32).max
    gmax = jax.ops.segment_max(jnp.where(mask, values, -big), group_ids, num_segments=num_groups)
    gmin = jax.ops.segment_min(jnp.where(mask, values, big), group_ids, num_segments=num_groups)
    return x, m, mask, group_ids, n, total, mean, var, (gmax <= gmin) | (n <= 1)


def group_normalize(values, group_ids, num_groups, *, mask=None, scale="group", baseline="mean",
                    eps=1e-4, with_stats=False):
    """Normalize ``values`` within their groups: a segment reduction over ``group_ids``.

    values: [B] float; group_ids: [B] int in [0, num_groups); mask: [B] bool (True = counts).
    Groups may have any size (ragged, singleton, empty).

    - ``baseline="mean"``: x - mean(group); ``"loo"``: x - mean of the other members (RLOO).
    - ``scale="group"``: divide by the group's unbiased (n-1) std + eps; ``"batch"``: by the
      unbiased std over all unmasked entries + eps; ``"none"``: no division (Dr. GRPO).

    Masked entries get 0 and do not enter any statistic. Groups whose unmasked values are all
    equal (zero std) and singleton groups give exactly 0, never NaN or inf.
    Returns: [B] float; with ``with_stats`` also ``group_stats``' ([G] std, [G] zero-std) from
    the same segment pass (a scoring pass that logs them reduces over groups once).
    """
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale: must be 'group', 'batch' or 'none', got {scale!r}")
    if baseline not in ("mean", "loo"):
        raise ValueError(f"baseline: must be 'mean' or 'loo', got {baseline!r}")
    x, m, mask, group_ids, n, total, mean, var, flat = _segment_stats(values, group_ids,
                                                                      num_groups, mask)
    n_i, mean_i = n[group_ids], mean[group_ids]
    if baseline == "mean":
        centered = x - mean_i
    else:
        centered = x - (total[group_ids] - x) / jnp.maximum(n_i - 1.0, 1.0)

    if scale == "group":
        centered = centered / (jnp.sqrt(var)[group_ids] + eps)
    elif scale == "batch":
        nb = jnp.sum(m)
        bmean = jnp.sum(x) / jnp.maximum(nb, 1.0)
        bvar = jnp.sum(m * (x - bmean) ** 2) / jnp.maximum(nb - 1.0, 1.0)
        centered = centered / (jnp.sqrt(bvar) + eps)
    adv = jnp.where(mask & ~flat[group_ids], centered, 0.0)
    return (adv, jnp.sqrt(var), flat) if with_stats else adv


def group_stats(values, group_ids, num_groups, mask=None):
    """Per-group (unbiased) std of ``values`` [B] and whether it is zero: ([G], [G] bool).
    Empty groups count as zero-std."""
    *_, var, flat = _segment_stats(values, group_ids, num_groups, mask)
    return jnp.sqrt(var), flat


def reverse_linear_recurrence(decay, x):
    """out[t] = x[t] + decay[t] * out[t + 1] (out[T] = 0), over the leading (time) axis.

    decay, x: [T, ...] float. The backward recursion of every return estimate here (GAE,
    discounted returns), computed as a parallel prefix scan (``lax.associative_scan``) over the
    affine maps ``c -> x[t] + decay[t] * c``: O(log T) dependent steps of whole-array ops
    instead of a T-trip sequential loop, whose per-trip overhead dominated it on CPU and which
    runs one tiny kernel per step on a GPU. Returns [T, ...].
    """
    def compose(later, earlier):   # (earlier o later): c -> b_e + a_e * (b_l + a_l * c)
        a_l, b_l = later
        a_e, b_e = earlier
        return a_e * a_l, b_e + a_e * b_l

    _, out = jax.lax.associative_scan(compose, (decay, x), reverse=True)
    return out


def reverse_discounted_cumsum(x, gamma, mask):
    """out[t] = sum_{k>=t, valid} gamma^(k-t) x[k], restarted where an episode ends.

    x, mask: [T, N] (time first; each column one episode, valid steps a prefix). Masked steps
    contribute 0 and get 0. Returns [T, N].
    """
    m = mask.astype(jnp.float32)
    return reverse_linear_recurrence(gamma * m, jnp.where(mask, x, 0.0))


def episode_returns(rewards, mask, gamma):
    """Discounted return from the start of each episode: [T, N] -> [N]
    (R = sum_t gamma^t r_t over the valid steps)."""
    t = jnp.arange(rewards.shape[0], dtype=jnp.float32)[:, None]
    return jnp.sum(jnp.where(mask, rewards * gamma ** t, 0.0), axis=0)


def gae(rewards, values, next_values, terminated, done, gamma, lam):
    """Generalized advantage estimation over a [T, N] segment.

    rewards, values: [T, N]; next_values: [T, N] value of the observation the step led to
    (for a truncated step the value of ``info["final_observation"]``, so time limits are
    bootstrapped, not treated as terminal); terminated: [T, N] true terminal (no bootstrap);
    done: [T, N] episode ended (terminated or truncated: the recursion stops).
    Returns (advantages, returns) each [T, N].
    """
    chex.assert_equal_shape([rewards, values, next_values, terminated, done])
    delta = rewards + gamma * next_values * (1.0 - terminated) - values

    adv = reverse_linear_recurrence(gamma * lam * (1.0 - done.astype(jnp.float32)), delta)
    return adv, adv + values
