"""Loss pieces shared by GRPO and PPO, and ``policy_loss``: TRL's GRPOTrainer loss on
[B, L] per-step arrays (all of TRL 1.16's loss types, and verl's GMPO).

One implementation of each per-token piece: ``kl_estimate`` (k1/k2/k3), ``clipped_surrogate``
(PPO clip with clip-higher and the optional two-sided cap ``delta``), ``grpo_token_loss``
(surrogate + beta * KL) and ``loss_weights`` (the loss_type aggregation). The environment
path (``grpo.loss``, on flat minibatches of steps with precomputed weights), PPO and
``policy_loss`` all use them. Where a learn sample is a whole sequence (text completions;
environment episodes with ``by_episode``), ``minibatch_policy_loss`` applies ``policy_loss``
to a chunk of them.

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
``clip_ratio/low_min`` and ``clip_ratio/high_max``: TRL's min / max over sequences of each
sequence's share of low / high clipped tokens (NaN for an empty row, left out as by TRL's
``nanmin``; NaN if every row is empty); one value per sequence in the sequence case above.

The other loss types (TRL 1.16's ``_compute_loss``; gmpo: verl's
``compute_policy_loss_geo_mean``), with the same r (token or GSPO sequence ratio):

* cispo: x_it = -sg(min(r_it, clip_eps_high)) A_it logp_it (``clip_eps_high`` is TRL's
  ``epsilon_high``, a cap on the ratio itself), aggregated as dapo; metric
  ``cispo_clip_ratio`` = mean of (r > clip_eps_high) & (A > 0).
* sapo: x_it = -sigmoid(tau (r_it - 1)) 4 / tau A_it, tau = ``sapo_temperature_pos`` where
  A > 0 else ``sapo_temperature_neg``; aggregated as grpo.
* luspo: the clipped surrogate; aggregated as sum_it m_it x_it / B (per-sequence sum, mean
  over rows); TRL's clip metrics.
* vespo: x_it = -phi_i A_it logp_it, phi_i = exp(lam + k log w_i - lam w_i) (detached),
  log w_i = clip(sum_t m_it clip(d_it, -20, 20), log 1e-8, 20), (k, lam) =
  (``vespo_k_pos``, ``vespo_lambda_pos``) where A >= 0 else the ``_neg`` pair, lam >= 1e-4,
  NaN/inf -> 0 (``vespo_gamma_weights``); aggregated as dapo; metric ``vespo/phi_seq_mean``.
* gmpo: sequence loss -Abar_i exp(sum_t m_it d'_it / (|o_i| + 1e-8)), d' the log-ratio
  clipped to [-clip_eps, clip_eps_high] on A's side (``gmpo_sequence_loss``), mean over the
  B rows; the KL term aggregated as grpo; ``clip_ratio/*`` are verl's clip fractions
  (token means of (d outside the range) & (A > 0), & (A < 0), either).

Options, for every loss type (TRL's order: policy term x off-policy mask x entropy mask, then
+ beta k, then aggregation, then minus the entropy bonus):

* ``off_policy_mask_threshold``: a sequence (with per-token A: a token) whose A < 0 and whose
  mean over its tokens of old_logp - logp exceeds the threshold loses its policy term
  (``off_policy_mask``; metric ``off_policy_mask/dropped_ratio``, the share dropped, over the
  B rows for one A per sequence, else over the masked tokens).
* ``top_entropy_quantile`` q < 1: only the masked tokens whose ``entropy`` is at least the
  (1 - q) quantile (linear interpolation, ``torch.quantile``'s) of the batch's masked entropies
  keep their policy term (``high_entropy_mask``); gmpo: only they enter its means.
* ``ent_coef``: loss -= ent_coef * sum(entropy over the kept tokens) / max(#kept tokens, 1)
  (TRL's: a mean, whatever the loss_type). Metric ``entropy``: the masked token mean of
  ``entropy`` (whenever it is given).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .config import LOSS_TYPES

# the PPO-clip surrogate (TRL's clip metrics); the others are CISPO, SAPO, VESPO and GMPO's
CLIP_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
# each loss type's aggregation of per-token losses (TRL's; gmpo: verl's mean over sequences of
# its per-sequence loss, whose KL term takes grpo's)
AGGREGATION = {"grpo": "grpo", "sapo": "grpo", "gmpo": "grpo", "bnpo": "bnpo", "dapo": "bnpo",
               "cispo": "bnpo", "vespo": "bnpo", "dr_grpo": "dr_grpo", "luspo": "luspo"}
# the loss types whose aggregation divides by the number of sequences
PER_SEQUENCE_COUNT = ("grpo", "sapo", "gmpo", "dr_grpo", "luspo")
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
    agg = AGGREGATION.get(loss_type)
    if agg == "grpo":
        return m / jnp.maximum(ep_len, 1.0) / n_ep
    if agg == "bnpo":
        return m / jnp.maximum(jnp.sum(m), 1.0)
    if agg == "dr_grpo":
        return m / (n_ep * horizon)
    if agg == "luspo":
        return m / n_ep
    raise ValueError(f"loss_type: unknown {loss_type!r}")


def policy_loss(logp, old_logp, ref_logp, adv, mask, *, loss_type, clip_eps, clip_eps_high,
                delta=None, beta=0.0, kl_estimator="k3", importance_sampling_level="token",
                max_len=None, kl_bias_correction=False, sapo_temperature_pos=1.0,
                sapo_temperature_neg=1.05, vespo_k_pos=2.0, vespo_lambda_pos=3.0,
                vespo_k_neg=3.0, vespo_lambda_neg=2.0, off_policy_mask_threshold=None,
                entropy=None, top_entropy_quantile=1.0, ent_coef=0.0, weight=None,
                entropy_share=None):
    """TRL's ``GRPOTrainer._compute_loss`` (TRL 1.16, which the tests and the benchmark pin)
    for every loss type of ``LOSS_TYPES`` (``"gmpo"``: verl's ``compute_policy_loss_geo_mean``),
    on one batch (one process, no gradient accumulation, no vLLM importance correction).

    Shapes: ``logp`` (the policy's, differentiated), ``old_logp`` (the sampler's), ``ref_logp``
    (the reference policy's) and ``mask`` (bool) are [B, L]: B sequences (or episodes) of L
    steps. ``adv`` is [B] (one advantage per sequence) or [B, L]. ``entropy`` [B, L] (the
    policy's per-token entropy, differentiated; needed by ``top_entropy_quantile`` and
    ``ent_coef``) or None. ``old_logp``, ``ref_logp`` and ``adv`` are constants
    (stop-gradient). Steps where ``mask`` is False never reach the loss, its gradient or a
    metric, whatever they hold (NaN included); an all-masked row is allowed.

    The formulas and metrics are in the module docstring (``policy_loss`` in formulas, and
    the other loss types).

    ``weight`` [B, L] (optional) replaces the ``loss_type`` aggregation weights: a minibatch of
    a larger batch passes the weights computed on the whole batch
    (``loss_weights(mask.T, loss_type, max_len, count_empty=True).T``, TRL's; environment
    episodes count the nonempty ones, ``count_empty=False``), so that the minibatch
    losses add up to the batch's loss (gmpo: each sequence's weight is its row sum).
    ``entropy_share`` (optional): the entropy bonus is multiplied by it (such a minibatch's
    share of the batch's tokens; None: 1).

    Numbers may be traced: ``clip_eps``, ``clip_eps_high``, ``delta``, ``beta``, the sapo and
    vespo parameters, ``off_policy_mask_threshold`` (None or NaN: off), ``top_entropy_quantile``
    (a traced one computes the entropy mask only where it is < 1) and ``ent_coef`` (a Python 0:
    no bonus); ``loss_type``, ``kl_estimator``, ``importance_sampling_level``,
    ``kl_bias_correction`` are static. Returns (loss, metrics).
    """
    _check_options(loss_type, kl_estimator, importance_sampling_level)
    static = lambda x: isinstance(x, (int, float))
    if static(top_entropy_quantile) and not 0.0 <= top_entropy_quantile <= 1.0:
        raise ValueError(f"top_entropy_quantile: must be in [0, 1], got {top_entropy_quantile}")
    use_emask = not (static(top_entropy_quantile) and top_entropy_quantile >= 1.0)
    use_bonus = not (static(ent_coef) and ent_coef == 0)
    if (use_emask or use_bonus) and entropy is None:
        raise ValueError("entropy: policy_loss needs the per-token entropy [B, L] for "
                         "top_entropy_quantile < 1 and ent_coef != 0")
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
    if entropy is not None:
        entropy = jnp.where(mask, jnp.asarray(entropy), zero)

    log_w, log_w_seq = _log_importance_weight(log_ratio, n_tok, importance_sampling_level)
    ratio = jnp.exp(log_w)

    # TRL's masks of the policy term (1.0 where kept; None: off)
    emask = None
    if use_emask:
        emask = high_entropy_mask_of_quantile(entropy, mask, top_entropy_quantile)
    opm = None
    if off_policy_mask_threshold is not None:
        opm = off_policy_mask(adv[:, :1] if seq_adv else adv, logp, old_logp, mask,
                              off_policy_mask_threshold)
    keep = None
    for m_ in (opm, emask):
        if m_ is not None:
            m_ = m_.astype(dtype)
            keep = m_ if keep is None else keep * m_

    ref = jnp.where(mask, sg(jnp.asarray(ref_logp)), zero) if use_kl else None
    horizon = L if max_len is None else max_len
    default_weight = weight is None
    if default_weight:
        weight = loss_weights(mask.T, loss_type, horizon, count_empty=True, dtype=dtype).T
    agg = lambda x: jnp.sum(jnp.where(mask, weight * x, zero))
    n_all = jnp.maximum(jnp.sum(mask), 1).astype(dtype)
    tok_mean = lambda x: jnp.sum(jnp.where(mask, x, zero)) / n_all
    one_per_seq = importance_sampling_level == "sequence" and seq_adv   # one ratio and A per row
    metrics = {}

    if loss_type in CLIP_LOSS_TYPES:
        per_token, pg, kl, _ = grpo_token_loss(ratio, adv, logp, ref, beta, clip_eps,
                                               clip_eps_high, kl_estimator=kl_estimator,
                                               delta=delta, kl_bias_correction=kl_bias_correction)
        if keep is not None:
            pg = pg * keep
            per_token = pg + beta * kl if use_kl else pg
        loss = agg(per_token)
        if one_per_seq:
            r_seq = jnp.exp(log_w_seq)
            metrics.update(clip_ratios(r_seq, adv_seq, clip_eps, clip_eps_high, delta,
                                       lambda x: jnp.mean(x.astype(dtype))))
            low, high = _clipped(r_seq, adv_seq, clip_eps, clip_eps_high, delta)
            low_seq, high_seq = low.astype(dtype), high.astype(dtype)
        else:
            metrics.update(clip_ratios(ratio, adv, clip_eps, clip_eps_high, delta,
                                       lambda x: tok_mean(x.astype(dtype))))
            low, high = _clipped(ratio, adv, clip_eps, clip_eps_high, delta)
            seq_mean = lambda x: (jnp.sum(jnp.where(mask, x.astype(dtype), zero), axis=1)
                                  / jnp.where(row_valid, n_tok, 1).astype(dtype))
            nan = jnp.asarray(jnp.nan, dtype)
            low_seq = jnp.where(row_valid, seq_mean(low), nan)    # TRL: 0/0 = NaN, nanmin
            high_seq = jnp.where(row_valid, seq_mean(high), nan)
        metrics["clip_ratio/low_min"] = _nan_reduce(jnp.min, low_seq)
        metrics["clip_ratio/high_max"] = _nan_reduce(jnp.max, high_seq)
    else:
        kl = jnp.zeros_like(log_ratio)
        if use_kl:
            kl = kl_estimate(logp, ref, kl_estimator)
            if kl_bias_correction:
                kl = kl * ratio
        if loss_type == "gmpo":
            tok = mask if emask is None else mask & (emask > 0)
            seq_loss, clipped = gmpo_sequence_loss(log_ratio, adv, tok, clip_eps, clip_eps_high)
            if opm is not None:
                seq_loss = seq_loss * opm.astype(dtype)[:, 0] if seq_adv else (
                    seq_loss * jnp.min(jnp.where(mask, opm.astype(dtype), 1), axis=1))
            pg_total = (jnp.mean(seq_loss) if default_weight else
                        jnp.sum(seq_loss * jnp.sum(jnp.where(mask, weight, zero), axis=1)))
            loss = pg_total + agg(beta * kl) if use_kl else pg_total
            metrics["pg_loss"] = pg_total
            tmean = lambda x: (jnp.sum(jnp.where(tok, x.astype(dtype), zero))   # verl's
                               / (jnp.sum(tok).astype(dtype) + 1e-8))             # masked_mean
            lo, hi = tmean(clipped & (adv < 0)), tmean(clipped & (adv > 0))
            metrics.update({"clip_ratio/low_mean": lo, "clip_ratio/high_mean": hi,
                            "clip_ratio/region_mean": tmean(clipped & (adv != 0))})
        else:
            if loss_type == "cispo":
                pg = cispo_token_loss(ratio, adv, logp, clip_eps_high)
                cis = (ratio > clip_eps_high) & (adv > 0)
                metrics["cispo_clip_ratio"] = (jnp.mean(cis[:, 0].astype(dtype)) if one_per_seq
                                               else tok_mean(cis.astype(dtype)))
            elif loss_type == "sapo":
                pg = sapo_token_loss(ratio, adv, sapo_temperature_pos, sapo_temperature_neg)
            else:   # vespo
                phi = vespo_gamma_weights(adv[:, :1] if seq_adv else adv, log_ratio, mask,
                                          vespo_k_pos, vespo_lambda_pos, vespo_k_neg,
                                          vespo_lambda_neg)
                pg = -phi * adv * logp
                metrics["vespo/phi_seq_mean"] = (jnp.mean(phi) if seq_adv else
                                                 tok_mean(phi))
            if keep is not None:
                pg = pg * keep
            per_token = pg + beta * kl if use_kl else pg
            loss = agg(per_token)
    if "pg_loss" not in metrics:
        metrics["pg_loss"] = agg(pg)
    metrics["kl"] = (jnp.where(jnp.asarray(beta) != 0, tok_mean(kl), zero) if use_kl
                     else zero)
    if opm is not None:
        dropped = 1 - opm.astype(dtype)
        metrics["off_policy_mask/dropped_ratio"] = (jnp.mean(dropped) if seq_adv else
                                                    tok_mean(dropped))
    if entropy is not None:
        metrics["entropy"] = tok_mean(entropy)
    if use_bonus:
        eff = mask if emask is None else mask & (emask > 0)
        bonus = (jnp.sum(jnp.where(eff, entropy, zero))
                 / jnp.maximum(jnp.sum(eff), 1).astype(dtype))
        if entropy_share is not None:
            bonus = bonus * entropy_share
        loss = loss - ent_coef * bonus
    return loss, metrics


def _clipped(r, a, clip_eps, clip_eps_high, delta):
    """TRL's (low, high) clip indicators of ratios ``r`` (capped at ``delta``) and advantages
    ``a`` (see ``clip_ratios``)."""
    if delta is not None:
        r = jnp.minimum(r, delta)
    return (r < 1.0 - clip_eps) & (a < 0), (r > 1.0 + clip_eps_high) & (a > 0)


def _nan_reduce(fn, x):
    """TRL's ``nanmin`` / ``nanmax`` of a 1-D array: ``fn`` over the non-NaN entries, NaN when
    there are none."""
    ok = ~jnp.isnan(x)
    fill = jnp.inf if fn is jnp.min else -jnp.inf
    return jnp.where(jnp.any(ok), fn(jnp.where(ok, x, fill)), jnp.nan).astype(x.dtype)


def cispo_token_loss(ratio, adv, logp, clip_high):
    """CISPO (MiniMax-M1; TRL's ``"cispo"``) per token: -sg(min(r, clip_high)) * A * logp,
    ``clip_high`` = TRL's ``epsilon_high``, a cap on the ratio itself (not 1 + eps)."""
    return -jax.lax.stop_gradient(jnp.minimum(ratio, clip_high)) * adv * logp


def sapo_token_loss(ratio, adv, temperature_pos, temperature_neg):
    """SAPO (TRL's ``"sapo"``) per token: -sigmoid(tau (r - 1)) * 4 / tau * A, tau =
    ``temperature_pos`` where A > 0, else ``temperature_neg``."""
    t = jnp.where(adv > 0, temperature_pos, temperature_neg)
    return -(jax.nn.sigmoid(t * (ratio - 1)) * 4 / t) * adv


def vespo_gamma_weights(adv, log_ratio, mask, k_pos, lambda_pos, k_neg, lambda_neg):
    """TRL's ``get_gamma_weights`` (VESPO; no vLLM importance ratio): phi(w) = exp(lam + k log w
    - lam w) with log w = clip(sum_t m_t clip(d_t, -20, 20), log 1e-8, 20) the sequence's
    summed log-ratio ``log_ratio`` [B, L]; k, lam = (``k_pos``, ``lambda_pos``) where A >= 0,
    else the ``_neg`` pair, lam >= 1e-4; NaN and inf -> 0. ``adv`` [B, 1] (-> phi [B, 1]) or
    [B, L] (-> [B, L]). A constant (stop-gradient)."""
    sg = jax.lax.stop_gradient
    lower = math.log(1e-8)
    m = mask.astype(log_ratio.dtype)
    seq = jnp.sum(jnp.clip(sg(log_ratio), -20.0, 20.0) * m, axis=-1, keepdims=True)
    log_w = jnp.clip(seq, lower, 20.0)
    w = jnp.exp(log_w)
    nonneg = adv >= 0
    k = jnp.where(nonneg, k_pos, k_neg)
    lam = jnp.maximum(jnp.where(nonneg, lambda_pos, lambda_neg), 1e-4)
    phi = jnp.exp(lam + k * log_w - lam * w)
    return sg(jnp.nan_to_num(phi, nan=0.0, posinf=0.0, neginf=0.0).astype(log_ratio.dtype))


def gmpo_sequence_loss(log_ratio, adv, mask, clip_low, clip_high):
    """verl's ``compute_policy_loss_geo_mean`` (GMPO) per sequence: with s = sign(A), the
    token log-ratios d clipped in log space, d' = s * min(s d, s clip(d, -clip_low,
    clip_high)), the loss of sequence i is -Abar_i exp(sum_t m d' / (|o_i| + 1e-8)), Abar_i =
    sum_t m A / (|o_i| + 1e-8). ``log_ratio``, ``adv`` [B, L], ``mask`` bool [B, L]. Returns
    (loss [B], clipped [B, L]: d outside the clip range, verl's clip fraction numerator)."""
    m = mask.astype(log_ratio.dtype)
    s = jnp.sign(adv)
    d_clip = jnp.clip(log_ratio, -clip_low, clip_high)
    d_min = s * jnp.minimum(s * log_ratio, s * d_clip)
    n = jnp.sum(m, axis=-1)
    ratio = jnp.exp(jnp.sum(d_min * m, axis=-1) / (n + 1e-8))
    a = jnp.sum(adv * m, axis=-1) / (n + 1e-8)
    return -a * ratio, log_ratio != d_clip


def high_entropy_mask(entropy, mask, threshold):
    """TRL's ``get_high_entropy_mask`` (one process): the ``mask``ed tokens whose entropy is
    at least the ``threshold`` quantile (linear interpolation, ``torch.quantile``'s) of the
    masked entropies; all False when no token is masked in. Any shape; ``threshold`` may be
    traced. Returns bool, ``mask``'s shape."""
    flat = jnp.ravel(jax.lax.stop_gradient(entropy))
    ok = jnp.ravel(mask)
    n = jnp.sum(ok)
    v = jnp.sort(jnp.where(ok, flat, jnp.inf))
    pos = jnp.asarray(threshold, v.dtype) * jnp.maximum(n - 1, 0).astype(v.dtype)
    lo = jnp.floor(pos)
    i_lo = jnp.clip(lo.astype(jnp.int32), 0, v.shape[0] - 1)
    i_hi = jnp.clip(jnp.ceil(pos).astype(jnp.int32), 0, v.shape[0] - 1)
    a, b = v[i_lo], v[i_hi]
    w = pos - lo
    q = jnp.where(w < 0.5, a + w * (b - a), b - (b - a) * (1 - w))   # torch.lerp
    q = jnp.where(w == 0, a, q)
    return (jax.lax.stop_gradient(entropy) >= q) & mask & (n > 0)


def high_entropy_mask_of_quantile(entropy, mask, top_entropy_quantile):
    """The tokens TRL's ``top_entropy_quantile`` keeps: ``high_entropy_mask`` at threshold
    1 - ``top_entropy_quantile``; a traced quantile computes it only where it is < 1 (else
    ``mask``), as TRL does. Returns bool, ``mask``'s shape."""
    q = top_entropy_quantile
    if isinstance(q, (int, float)):
        return high_entropy_mask(entropy, mask, 1.0 - q)
    q = jnp.asarray(q)
    return jax.lax.cond(q < 1.0, lambda: high_entropy_mask(entropy, mask, 1.0 - q),
                        lambda: mask)


def off_policy_mask(adv, logp, sampling_logp, mask, threshold):
    """TRL's ``get_off_policy_mask`` (DeepSeek-V3.2's off-policy sequence mask): keep a
    sequence unless its advantage is negative and its mean KL from the sampling policy,
    mean_t(sampling_logp - sg(logp)), exceeds ``threshold``; ``threshold`` NaN (a sweep's
    None): keep all. ``adv`` [B, L] of one value per row (-> [B, 1]) or per token (-> [B, L]),
    ``logp``, ``sampling_logp``, ``mask`` [B, L]. Returns bool."""
    sg = jax.lax.stop_gradient
    m = mask.astype(logp.dtype)
    kl = jnp.nan_to_num(jnp.where(mask, sg(sampling_logp) - sg(logp), 0.0), nan=0.0)
    avg = jnp.sum(kl * m, axis=1, keepdims=True) / jnp.maximum(
        jnp.sum(m, axis=1, keepdims=True), 1.0)
    threshold = jnp.asarray(threshold, avg.dtype)
    return (adv >= 0) | (avg <= threshold) | jnp.isnan(threshold)


def minibatch_policy_loss(config, hp, logp, entropy, ref_logp, old_logp, adv, mask, weight,
                          batch_steps, max_len):
    """``(the chunk's share of the batch loss, metric sums)`` for ``update.learn`` when a
    sample is a whole sequence (a text completion, or an episode on an environment):
    ``policy_loss`` with the config's ``loss_type`` and options, on a chunk of B sequences of L
    steps. ``logp``, ``entropy`` [B, L] (the policy's, differentiated), ``ref_logp``,
    ``old_logp`` [B, L], ``adv`` [B] or [B, L], ``mask`` bool [B, L] (the chunk's steps of the
    current minibatch), ``weight`` [B, L] the aggregation weights of the whole batch
    (``loss_weights``), ``batch_steps`` the batch's number of trained steps (the entropy bonus
    is a mean over the batch: this chunk's share of it by steps), ``max_len`` dr_grpo's
    horizon.

    The metric sums (``update.learn`` divides them by the summed ``count``, the steps):
    ``loss`` and ``pg_loss`` are the batch's (this chunk's share times ``batch_steps``); the
    others are step means (``kl``, the clip ratios, ``cispo_clip_ratio``, ``entropy``,
    ``approx_kl``, and the per-sequence ``vespo/phi_seq_mean`` and
    ``off_policy_mask/dropped_ratio`` weighted by steps, so that rows of a chunk outside its
    minibatch do not count); ``clip_ratio/low_min`` and ``/high_max`` are the chunk's (a min
    and a max over its sequences, NaN for none), which ``update.learn`` reduces by a min and a
    max over chunks (``AUX_MIN``, ``AUX_MAX``; not with GSPO's one ratio and advantage per
    sequence, where an empty row counts as a sequence)."""
    w = jnp.where(mask, weight, 0.0)
    loss, metrics = policy_loss(
        logp, old_logp, ref_logp, adv, mask, loss_type=config.loss_type,
        clip_eps=hp["clip_eps"], clip_eps_high=hp["clip_eps_high"],
        delta=getattr(config, "delta", None), beta=hp["beta"], kl_estimator=config.kl_estimator,
        importance_sampling_level=getattr(config, "importance_sampling_level", "token"),
        max_len=max_len, kl_bias_correction=getattr(config, "kl_bias_correction", False),
        weight=w, entropy=entropy, ent_coef=hp["ent_coef"],
        entropy_share=jnp.sum(mask) / jnp.maximum(batch_steps, 1.0), **loss_options(hp))
    n = jnp.sum(mask).astype(jnp.float32)
    # with one ratio and advantage per sequence, policy_loss counts an empty row as a sequence
    # never clipped; here the chunk's rows outside the minibatch are empty: no extremes then
    one_ratio_per_sequence = (getattr(config, "importance_sampling_level", "token") == "sequence"
                              and adv.ndim == 1)
    log_ratio = jnp.where(mask, logp - old_logp, 0.0)
    step_sum = lambda x: jnp.sum(jnp.where(mask, x, 0.0))
    a = adv[:, None] if adv.ndim == 1 else adv
    aux = {"count": n, "loss": loss * batch_steps, "pg_loss": metrics["pg_loss"] * batch_steps,
           "entropy": step_sum(entropy), "approx_kl": step_sum(jnp.expm1(log_ratio) - log_ratio),
           **{k: metrics[k] * n for k in STEP_MEAN_METRICS if k in metrics},
           **{k: metrics[k] for k in ("clip_ratio/low_min", "clip_ratio/high_max")
              if k in metrics and not one_ratio_per_sequence}}
    if config.loss_type == "vespo":
        aux["vespo/phi_seq_mean"] = step_sum(vespo_gamma_weights(
            a, log_ratio, mask, hp["vespo_k_pos"], hp["vespo_lambda_pos"], hp["vespo_k_neg"],
            hp["vespo_lambda_neg"]))
    keep = off_policy_mask(a, logp, old_logp, mask, hp["off_policy_mask_threshold"])
    aux["off_policy_mask/dropped_ratio"] = step_sum(1.0 - keep.astype(jnp.float32))
    return loss, aux


# policy_loss's metrics that are step (token) means: the chunks' step-weighted sums make the
# batch's
STEP_MEAN_METRICS = ("kl", "clip_ratio/low_mean", "clip_ratio/high_mean",
                     "clip_ratio/region_mean", "cispo_clip_ratio")


LOSS_HPARAMS = ("sapo_temperature_pos", "sapo_temperature_neg", "vespo_k_pos",
                "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg",
                "off_policy_mask_threshold", "top_entropy_quantile")


def loss_options(hp) -> dict:
    """``policy_loss``'s keyword arguments of the other loss types' parameters, from a
    config's hyperparameters ``hp`` (``GRPOConfig.hparams()``, traced or not; an unset
    ``off_policy_mask_threshold`` is NaN there: off)."""
    return {k: hp[k] for k in LOSS_HPARAMS}


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
