"""Scoring: group normalization (GRPO), the other outcome estimators (REINFORCE++,
REINFORCE++-baseline, pass@k GRPO: ``estimate_advantages``), multi-reward aggregation
(``aggregate_rewards``), discounted returns and GAE (PPO).

Every function here is a pure array function, tested against a NumPy reference.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from .config import AGGREGATIONS


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




def masked_whiten(values, weight):
    """verl's ``masked_whiten`` (``verl.utils.torch_functional``) over weighted entries:
    ``(x - mean) * rsqrt(var + 1e-8)`` with ``mean = sum(w x) / (sum(w) + 1e-8)`` and the
    unbiased ``var = sum(w (x - mean)^2) / (sum(w) + 1e-8) * n / (n - 1)``, ``n = sum(w)``.

    values, weight: same shape (any); ``weight`` the number of tokens an entry stands for
    (a [B] row of per-sequence values repeated over its tokens: its token count; a token
    mask: 0/1). Entries of weight 0 get 0. With n <= 1 every entry is 0 (verl raises there).
    """
    x = jnp.asarray(values, jnp.float32)
    w = jnp.asarray(weight, jnp.float32)
    n = jnp.sum(w)
    mean = jnp.sum(w * x) / (n + 1e-8)
    var = jnp.sum(w * (x - mean) ** 2) / (n + 1e-8) * n / jnp.maximum(n - 1.0, 1.0)
    out = (x - mean) * jax.lax.rsqrt(var + 1e-8)
    return jnp.where((w > 0) & (n > 1), out, 0.0)


def reinforce_pp_baseline(scores, group_ids, num_groups, tokens, valid=None):
    """REINFORCE++-baseline (verl's ``compute_reinforce_plus_plus_baseline_outcome_advantage``)
    as per-sequence values: each score minus its group's mean (a group of one keeps its score:
    verl's mean 0 there), then whitened over the batch's tokens (``masked_whiten``, each
    sequence weighted by its token count).

    scores: [B] float; group_ids: [B] int; tokens: [B] token counts (0: an empty row, which
    still enters its group's mean, as in verl); valid: [B] bool, the rows that exist (False:
    out of every statistic, advantage 0; default all). Returns [B] (every token of row b has
    advantage out[b]).
    """
    x, m, valid, group_ids, n, total, mean, var, flat = _segment_stats(scores, group_ids,
                                                                       num_groups, valid)
    base = jnp.where(n > 1, mean, 0.0)[group_ids]
    tok = jnp.where(valid, jnp.asarray(tokens, jnp.float32), 0.0)
    return jnp.where(valid, masked_whiten(x - base, tok), 0.0)


def grpo_passk(scores, group_ids, num_groups, valid=None, scale="group", eps=1e-4):
    """pass@k GRPO (verl's ``compute_grpo_passk_outcome_advantage``): only the best member of
    each group gets an advantage, ``r_max - r_second_max``, divided by the group's unbiased
    std + eps with ``scale="group"`` (verl's ``norm_adv_by_std_in_grpo``; ``"none"``: not).

    scores: [B]; group_ids: [B] int; valid: [B] bool (False: not a member). The best member
    is the first of the group's maxima (a tie gives 0 whichever it is). A group with fewer
    than two valid members gives 0 (verl raises there); so does one whose best two are equal.
    Returns [B].
    """
    if scale not in ("group", "none"):
        raise ValueError(f"scale_rewards: grpo_passk scales by the group's std ('group') or not "
                         f"at all ('none'), got {scale!r}")
    x, m, valid, group_ids, n, total, mean, var, flat = _segment_stats(scores, group_ids,
                                                                       num_groups, valid)
    values = jnp.asarray(scores, jnp.float32)
    big = jnp.finfo(jnp.float32).max
    B = values.shape[0]
    seg_max = lambda v: jax.ops.segment_max(v, group_ids, num_segments=num_groups)
    r_max = seg_max(jnp.where(valid, values, -big))
    idx = jnp.arange(B)
    is_max = valid & (values == r_max[group_ids])
    best = jax.ops.segment_min(jnp.where(is_max, idx, B), group_ids, num_segments=num_groups)
    top = idx == best[group_ids]
    r_second = seg_max(jnp.where(valid & ~top, values, -big))
    adv = (r_max - r_second)
    if scale == "group":
        adv = adv / (jnp.sqrt(var) + eps)
    adv = jnp.where(n >= 2, adv, 0.0)
    return jnp.where(top & valid, adv[group_ids], 0.0)


def reinforce_pp(token_rewards, mask, gamma=1.0):
    """REINFORCE++ (verl's ``compute_reinforce_plus_plus_outcome_advantage``): per-token
    discounted returns ``G_t = r_t + gamma * G_{t+1}`` within each sequence, whitened over all
    the batch's tokens (``masked_whiten``).

    token_rewards: [B, L] (the outcome reward on a sequence's last token, minus the
    per-token KL penalty when it is folded into the reward; 0 outside ``mask``); mask: [B, L]
    bool, each row's tokens a prefix (empty rows allowed). Returns [B, L], 0 outside ``mask``.
    """
    r = jnp.where(mask, jnp.asarray(token_rewards, jnp.float32), 0.0)
    returns = reverse_discounted_cumsum(r.T, gamma, mask.T).T
    return masked_whiten(returns, mask.astype(jnp.float32))


def last_token_rewards(scores, mask):
    """[B] outcome scores placed on each row's last token of ``mask`` [B, L] (prefix) -> [B, L]
    (verl's ``token_level_scores``)."""
    last = jnp.sum(mask, axis=1) - 1
    at = jnp.arange(mask.shape[1])[None, :] == last[:, None]
    return jnp.where(at & mask, jnp.asarray(scores, jnp.float32)[:, None], 0.0)


def aggregate_rewards(per_func, weights, group_ids, num_groups, valid, *, mode, eps=1e-4):
    """Several rewards per sample -> one reward per sample (TRL's
    ``multi_objective_aggregation``).

    per_func: [B, F] (NaN: that function gave no reward); weights: [F]; valid: [B] bool.
    ``"sum_then_normalize"``: ``nansum_f(w_f r_f)`` (what the estimator then normalizes).
    ``"normalize_then_sum"`` (GDPO): each column normalized within its group over its non-NaN
    valid entries (``group_normalize``: mean subtracted, divided by the unbiased std + eps; a
    zero-std group or a single scored member gives 0), then ``nansum_f(w_f r'_f)``; the caller
    normalizes the result over the batch (``batch_normalize``). A row whose every function is
    NaN is NaN in both. Returns [B].
    """
    per_func = jnp.asarray(per_func, jnp.float32)
    w = jnp.asarray(weights, jnp.float32)
    nan = jnp.isnan(per_func)
    if mode == "normalize_then_sum":
        cols = [group_normalize(per_func[:, f], group_ids, num_groups,
                                mask=valid & ~nan[:, f], eps=eps)
                for f in range(per_func.shape[1])]
        per_func = jnp.where(nan, jnp.nan, jnp.stack(cols, axis=1))
    elif mode != "sum_then_normalize":
        raise ValueError(f"multi_objective_aggregation: must be one of {AGGREGATIONS}, got "
                         f"{mode!r}")
    total = jnp.nansum(per_func * w, axis=-1)
    return jnp.where(jnp.all(nan, axis=-1), jnp.nan, total)


def batch_normalize(values, valid, eps=1e-4):
    """TRL's batch-level normalization of GDPO's aggregated reward: ``(x - mean) / (std +
    eps)`` over the ``valid`` [B] entries (unbiased std); 0 where not valid and everywhere
    when they are all equal or fewer than two. [B] -> [B]."""
    return group_normalize(values, jnp.zeros(jnp.shape(values), jnp.int32), 1, mask=valid,
                           eps=eps)


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
