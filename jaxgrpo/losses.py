"""Loss pieces shared by GRPO and PPO.

One implementation of each per-token piece: ``kl_estimate`` (k1/k2/k3), ``clipped_surrogate``
(PPO clip with clip-higher and the optional two-sided cap ``delta``), ``grpo_token_loss``
(surrogate + beta * KL) and ``loss_weights`` (the loss_type aggregation).
"""
from __future__ import annotations

import jax.numpy as jnp


def kl_estimate(logp, ref_logp, kind="k3"):
    """Per-sample estimate of KL(pi || pi_ref) from actions sampled from pi.

    k1 = logp - ref_logp; k2 = (logp - ref_logp)^2 / 2;
    k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1 (DeepSeekMath; never negative).
    """
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio ** 2
    if kind == "k3":
        return jnp.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl_estimator: must be 'k1', 'k2' or 'k3', got {kind!r}")


def clipped_surrogate_ratio(ratio, adv, clip_low, clip_high, delta=None):
    """PPO-clip loss per sample (to minimize) from the importance ratio r:
    -min(min(r, delta) A, clip(r, 1-clip_low, 1+clip_high) A), the cap at ``delta`` only when
    delta is given (INTELLECT-2's two-sided clipping, TRL's ``delta``; the clip range uses the
    uncapped r, as in TRL). Returns (loss, clipped) where clipped marks samples whose clipped
    term is the smaller one."""
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    if delta is not None:
        ratio = jnp.minimum(ratio, delta)
    loss = -jnp.minimum(ratio * adv, clipped_ratio * adv)
    clipped = (ratio * adv) > (clipped_ratio * adv)
    return loss, clipped


def clipped_surrogate(logp, old_logp, adv, clip_low, clip_high, delta=None):
    """``clipped_surrogate_ratio`` with r = exp(logp - old_logp). Returns (loss, clipped)."""
    return clipped_surrogate_ratio(jnp.exp(logp - old_logp), adv, clip_low, clip_high, delta)


def clipped_value_loss(value, old_value, target, clip_eps):
    """PureJaxRL's clipped value loss per sample: 0.5 * max((v-R)^2, (v_clipped-R)^2)."""
    v_clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum((value - target) ** 2, (v_clipped - target) ** 2)


def grpo_token_loss(ratio, adv, logp, ref_logp, beta, clip_low, clip_high, *,
                    kl_estimator="k3", delta=None, kl_bias_correction=False):
    """GRPO's per-token (per-sample) loss: clipped surrogate of the importance ratio ``ratio``
    + beta * KL, the KL = ``kl_estimate(logp, ref_logp, kl_estimator)``, times ``ratio`` with
    ``kl_bias_correction`` (TRL's ``use_bias_correction_kl``).

    ``ref_logp``: an array; or a function of no arguments returning it, called after the
    surrogate is built (the environment path computes the reference log-probs there, behind a
    ``lax.cond``; this order keeps its compiled numbers bit for bit what they were); or None:
    no KL term (loss = surrogate, kl = 0). Returns (loss, surrogate, kl, clipped).
    """
    pg, clipped = clipped_surrogate_ratio(ratio, adv, clip_low, clip_high, delta)
    if ref_logp is None:
        return pg, pg, jnp.zeros_like(pg), clipped
    if callable(ref_logp):
        ref_logp = ref_logp()
    kl = kl_estimate(logp, ref_logp, kl_estimator)
    if kl_bias_correction:
        kl = kl * ratio
    return pg + beta * kl, pg, kl, clipped


def loss_weights(mask, loss_type, horizon, *, count_empty=False, dtype=jnp.float32):
    """Per-step weights [T, N] (T steps, N sequences) whose weighted sum of per-step losses is
    the aggregated loss.

    grpo: mean over each sequence's steps, then over sequences; bnpo/dapo: mean over all valid
    steps; dr_grpo: sum over steps / (num sequences * horizon), horizon = the env's time limit
    (TRL: max_completion_length). The number of sequences counts the nonempty ones
    (the environment path), or all N with ``count_empty`` (TRL, which averages over every row of
    the batch, an all-masked one included).
    """
    m = mask.astype(dtype)
    ep_len = jnp.sum(m, axis=0)
    n_ep = mask.shape[1] if count_empty else jnp.maximum(jnp.sum(ep_len > 0), 1)
    if loss_type == "grpo":
        return m / jnp.maximum(ep_len, 1.0) / n_ep
    if loss_type in ("bnpo", "dapo"):
        return m / jnp.maximum(jnp.sum(m), 1.0)
    if loss_type == "dr_grpo":
        return m / (n_ep * horizon)
    raise ValueError(f"loss_type: unknown {loss_type!r}")
