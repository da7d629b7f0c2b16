"""Per-sample loss pieces shared by GRPO and PPO."""
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


def clipped_surrogate(logp, old_logp, adv, clip_low, clip_high):
    """PPO-clip loss per sample (to minimize): -min(r A, clip(r, 1-clip_low, 1+clip_high) A).
    Returns (loss, clipped) where clipped marks samples whose ratio was clipped."""
    ratio = jnp.exp(logp - old_logp)
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = -jnp.minimum(ratio * adv, clipped_ratio * adv)
    clipped = (ratio * adv) > (clipped_ratio * adv)
    return loss, clipped


def clipped_value_loss(value, old_value, target, clip_eps):
    """PureJaxRL's clipped value loss per sample: 0.5 * max((v-R)^2, (v_clipped-R)^2)."""
    v_clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum((value - target) ** 2, (v_clipped - target) ** 2)
