"""Loss pieces shared by GRPO and PPO, and ``policy_loss``: TRL's GRPOTrainer loss on
[B, L] per-step arrays.

One implementation of each per-token piece: ``kl_estimate`` (k1/k2/k3), ``clipped_surrogate``
(PPO clip with clip-higher and the optional two-sided cap ``delta``), ``grpo_token_loss``
(surrogate + beta * KL) and ``loss_weights`` (the loss_type aggregation). The environment
path (``grpo.loss``, on flat minibatches of steps with precomputed weights), PPO and
``policy_loss`` all use them.

``policy_loss`` in formulas, with m the mask, |o_i| = sum_t m_it and
d_it = logp_it - old_logp_it:

* importance ratio r_it = exp(d_it) (``importance_sampling_level="token"``) or, GSPO
  (``"sequence"``), r_i = exp(sum_t m_it d_it / max(|o_i|, 1)), one per sequence, broadcast
  to its tokens; differentiable through every token's logp (TRL's GRPOTrainer has no
  stop-gradient here; that is the experimental GSPO-token trainer's ``sequence_token``).
* surrogate l_it = -min(min(r, delta) A_it, clip(r, 1 - clip_eps, 1 + clip_eps_high) A_it)
  (``delta`` None: no cap; ``clip_eps_high`` None: = ``clip_eps``).
* per-token KL k_it = kl_estimate(logp, ref_logp, kl_estimator) (TRL: k3 only), times r_it
  (uncapped, differentiable) with ``kl_bias_correction`` (TRL's ``use_bias_correction_kl``).
  Only when ``ref_logp`` is given and ``beta`` is not a Python 0 (TRL: beta != 0);
  otherwise k = 0 and ``ref_logp`` is not read.
* per-token loss x_it = l_it + beta * k_it, aggregated by ``loss_type``:
  grpo: (1/B) sum_i (sum_t m_it x_it / max(|o_i|, 1));
  bnpo and dapo: sum_it m_it x_it / max(sum_it m_it, 1) (TRL's dapo divides by the active
  tokens of the global accumulated batch; here that is the batch passed, so dapo = bnpo);
  dr_grpo: sum_it m_it x_it / (B * max_len), ``max_len`` (TRL: max_completion_length)
  defaulting to L.
  B counts every row, empty ones included, as in TRL (so masking a truncated sequence out,
  TRL's ``mask_truncated_completions``, keeps it in the grpo and dr_grpo denominators).

Metrics (TRL's): ``kl`` = masked token mean of k (0 when the KL term is off or beta is 0,
also a traced 0; TRL logs none then);
``clip_ratio/low_mean``, ``clip_ratio/high_mean``, ``clip_ratio/region_mean`` = means of
(r' < 1 - clip_eps) & (A < 0), (r' > 1 + clip_eps_high) & (A > 0) and their union, with
r' = min(r, delta) (TRL tests the capped ratio), over the masked tokens; when r and A are
both one per sequence (``"sequence"`` with adv [B]) over the B sequences, as TRL does
(an empty sequence counts, never clipped). (TRL's metric helper takes any [B, 1] tensor
for one value per sequence, so at L = 1 it would average token metrics over all B rows;
here L = 1 is like any L.) ``pg_loss``: the surrogate alone, aggregated the same way.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
KL_ESTIMATORS = ("k1", "k2", "k3")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


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
    return step_weights(m, ep_len, n_ep, loss_type, horizon)


def step_weights(m, ep_len, n_ep, loss_type, horizon):
    """``loss_weights`` of steps ``m`` (float mask, any shape) given each step's sequence
    length ``ep_len`` (broadcastable to ``m``) and the number of sequences ``n_ep``."""
    if loss_type == "grpo":
        return m / jnp.maximum(ep_len, 1.0) / n_ep
    if loss_type in ("bnpo", "dapo"):
        return m / jnp.maximum(jnp.sum(m), 1.0)
    if loss_type == "dr_grpo":
        return m / (n_ep * horizon)
    raise ValueError(f"loss_type: unknown {loss_type!r}")


def policy_loss(logp, old_logp, ref_logp, adv, mask, *, loss_type, clip_eps, clip_eps_high,
                delta=None, beta=0.0, kl_estimator="k3", importance_sampling_level="token",
                max_len=None, kl_bias_correction=False, weight=None):
    """TRL's ``GRPOTrainer._compute_loss`` (TRL 1.16, which the tests and the benchmark pin)
    for the loss types grpo, bnpo, dr_grpo and dapo, on one batch (one process, no gradient
    accumulation).

    Shapes: ``logp`` (the policy's, differentiated), ``old_logp`` (the sampler's), ``ref_logp``
    (the reference policy's) and ``mask`` (bool) are [B, L]: B sequences (or episodes) of L
    steps. ``adv`` is [B] (one advantage per sequence) or [B, L]. ``old_logp``, ``ref_logp`` and
    ``adv`` are constants (stop-gradient). Steps where ``mask`` is False never reach the loss,
    its gradient or a metric, whatever they hold (NaN included); an all-masked row is allowed.

    The formulas and metrics are in the module docstring (``policy_loss`` in formulas).

    ``weight`` [B, L] (optional) replaces the ``loss_type`` aggregation weights: a minibatch of
    a larger batch passes the weights computed on the whole batch
    (``loss_weights(mask.T, loss_type, max_len, count_empty=True).T``), so that the minibatch
    losses add up to the batch's loss.

    ``clip_eps``, ``clip_eps_high``, ``delta`` and ``beta`` may be traced; ``loss_type``,
    ``kl_estimator``, ``importance_sampling_level``, ``kl_bias_correction`` are static.
    Returns (loss, metrics).
    """
    _check_options(loss_type, kl_estimator, importance_sampling_level)
    sg = jax.lax.stop_gradient
    mask = jnp.asarray(mask, bool)
    B, L = mask.shape
    logp, old_logp = jnp.asarray(logp), jnp.asarray(old_logp)
    dtype = jnp.result_type(logp.dtype, old_logp.dtype)
    zero = jnp.zeros((), dtype)
    if clip_eps_high is None:
        clip_eps_high = clip_eps
    static_beta_zero = isinstance(beta, (int, float)) and beta == 0
    if ref_logp is None and isinstance(beta, (int, float)) and not static_beta_zero:
        raise ValueError(f"policy_loss: beta={beta} needs ref_logp")
    use_kl = ref_logp is not None and not static_beta_zero
    row_valid = jnp.any(mask, axis=1)
    n_tok = jnp.sum(mask, axis=1)

    # masked steps: logp = old_logp = ref_logp = 0, adv = 0 (jnp.where keeps NaN/inf out of
    # the values and of the gradient)
    logp = jnp.where(mask, logp, zero)
    log_ratio = logp - jnp.where(mask, sg(old_logp), zero)
    adv = sg(jnp.asarray(adv))
    seq_adv = adv.ndim == 1
    if seq_adv:
        adv_seq = jnp.where(row_valid, adv, 0).astype(dtype)                    # [B]
        adv = jnp.broadcast_to(adv_seq[:, None], (B, L))
    else:
        adv = jnp.where(mask, adv, 0).astype(dtype)

    log_w, log_w_seq = _log_importance_weight(log_ratio, n_tok, importance_sampling_level)
    ratio = jnp.exp(log_w)

    ref = jnp.where(mask, sg(jnp.asarray(ref_logp)), zero) if use_kl else None
    per_token, pg, kl, _ = grpo_token_loss(ratio, adv, logp, ref, beta, clip_eps, clip_eps_high,
                                           kl_estimator=kl_estimator, delta=delta,
                                           kl_bias_correction=kl_bias_correction)

    horizon = L if max_len is None else max_len
    if weight is None:
        weight = loss_weights(mask.T, loss_type, horizon, count_empty=True, dtype=dtype).T
    agg = lambda x: jnp.sum(jnp.where(mask, weight * x, zero))
    loss = agg(per_token)

    n_all = jnp.maximum(jnp.sum(mask), 1).astype(dtype)
    tok_mean = lambda x: jnp.sum(jnp.where(mask, x, zero)) / n_all
    if importance_sampling_level == "sequence" and seq_adv:   # one ratio and A per sequence
        clips = clip_ratios(jnp.exp(log_w_seq), adv_seq, clip_eps, clip_eps_high, delta,
                            lambda x: jnp.mean(x.astype(dtype)))
    else:
        clips = clip_ratios(ratio, adv, clip_eps, clip_eps_high, delta,
                            lambda x: tok_mean(x.astype(dtype)))
    kl_mean = jnp.where(jnp.asarray(beta) != 0, tok_mean(kl), zero) if use_kl else zero
    return loss, {"pg_loss": agg(pg), "kl": kl_mean, **clips}


def _check_options(loss_type, kl_estimator, importance_sampling_level):
    """``policy_loss``'s static options: ``ValueError`` naming the option."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type: must be one of {LOSS_TYPES}, got {loss_type!r}")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator: must be 'k1', 'k2' or 'k3', got {kl_estimator!r}")
    if importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError("importance_sampling_level: must be 'token' or 'sequence', got "
                         f"{importance_sampling_level!r}")


def _log_importance_weight(log_ratio, n_tok, level):
    """log r [B, L] from the masked per-token log-ratios [B, L] and the sequences' token
    counts [B]: the token's own (``"token"``), or GSPO's sequence mean broadcast to its tokens
    (``"sequence"``, also returned alone as [B]; None for ``"token"``)."""
    if level == "token":
        return log_ratio, None
    B, L = log_ratio.shape
    log_w_seq = jnp.sum(log_ratio, axis=1) / jnp.maximum(n_tok, 1).astype(log_ratio.dtype)
    return jnp.broadcast_to(log_w_seq[:, None], (B, L)), log_w_seq


def clip_ratios(r, a, clip_eps, clip_eps_high, delta, mean) -> dict:
    """TRL's clip metrics of ratios ``r`` and advantages ``a`` (r capped at ``delta``, None: no
    cap, as TRL tests them): ``mean`` (any reduction: a masked mean, or a masked sum that
    ``update.learn`` turns into a mean) of (r < 1 - eps) & (a < 0) (``clip_ratio/low_mean``),
    of (r > 1 + eps_high) & (a > 0) (``/high_mean``) and of either (``/region_mean``)."""
    if delta is not None:
        r = jnp.minimum(r, delta)
    low = (r < 1.0 - clip_eps) & (a < 0)
    high = (r > 1.0 + clip_eps_high) & (a > 0)
    return {"clip_ratio/low_mean": mean(low), "clip_ratio/high_mean": mean(high),
            "clip_ratio/region_mean": mean(low | high)}
