"""jaxgrpo.losses.policy_loss's other objectives against plain transcriptions of the reference
code, values and gradients, on random ragged batches (an empty row, a one-token row, full rows).

``trl_loss`` is a line-by-line transcription of ``GRPOTrainer._compute_loss``,
``get_off_policy_mask``, ``get_gamma_weights`` and ``get_high_entropy_mask`` in
``trl/trainer/grpo_trainer.py`` of trl 1.16.0 (the installed 1.16.0 wheel, the version the TRL
benchmark pins), with one process, no gradient accumulation (normalizers 1), no vLLM (no
importance-sampling ratio; the off-policy mask's sampling log-probs are the old ones), no
adaptive entropy, ``num_items_in_batch`` = the mask's sum. ``verl_gmpo`` transcribes
``compute_policy_loss_geo_mean`` of verl's ``verl/trainer/ppo/core_algos.py`` (commit
b178a3cd, 2026-01-29), plus beta * the KL aggregated as TRL's grpo (jaxgrpo's extension).
torch ops map to the array module ``xp``; ``.detach()`` / ``no_grad`` to ``stop_gradient``
under jnp. Values: NumPy (float64). Gradients: jax.grad of the jnp transcription, and a
central finite difference of the NumPy one.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.losses import high_entropy_mask, policy_loss

NEW = ("cispo", "sapo", "luspo", "vespo", "gmpo")
B, L = 6, 7


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------------------- references

def trl_high_entropy_mask(entropies, mask, threshold):
    local = entropies[mask.astype(bool)]
    if local.size == 0:
        return np.zeros(entropies.shape, bool)
    entropy_threshold = np.quantile(local, threshold)        # torch.quantile: linear
    masked_entropies = entropies * mask
    return (masked_entropies >= entropy_threshold) & mask.astype(bool)


def trl_off_policy_mask(xp, advantages, per_token_logps, sampling_per_token_logps, mask, thr,
                        detach):
    kl_div = sampling_per_token_logps - detach(per_token_logps)
    kl_div = xp.nan_to_num(kl_div, nan=0.0)
    seq_kl_sum = (kl_div * mask).sum(axis=1, keepdims=True)
    avg_seq_kl = seq_kl_sum / xp.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    is_pos_adv = advantages >= 0
    is_low_kl = avg_seq_kl <= thr
    return (is_pos_adv | is_low_kl).astype(mask.dtype)


def trl_gamma_weights(xp, advantages, log_ratio_per_token, mask, k_pos, lambda_pos, k_neg,
                      lambda_neg, detach):
    log_ratio_per_token = detach(log_ratio_per_token)              # @torch.no_grad()
    lower_clamp = math.log(1e-8)
    log_ratio_clamped = xp.clip(log_ratio_per_token, -20.0, 20.0)
    seq_log_ratio = xp.sum(log_ratio_clamped * mask, axis=-1, keepdims=True)
    log_w_seq = xp.clip(seq_log_ratio, lower_clamp, 20.0)
    w_seq = xp.exp(log_w_seq)
    is_nonneg_adv = advantages >= 0
    k_seq = xp.where(is_nonneg_adv, k_pos, k_neg)
    lambda_seq = xp.maximum(xp.where(is_nonneg_adv, lambda_pos, lambda_neg), 1e-4)
    log_phi = lambda_seq + k_seq * log_w_seq - lambda_seq * w_seq
    return detach(xp.nan_to_num(xp.exp(log_phi), nan=0.0, posinf=0.0, neginf=0.0))


def trl_loss(xp, per_token_logps, old_per_token_logps, ref_per_token_logps, advantages,
             completion_mask, entropies, *, loss_type, epsilon=0.2, epsilon_high=0.28,
             delta=None, beta=0.0, importance_sampling_level="token",
             use_bias_correction_kl=False, max_completion_length=L, sapo_temperature_pos=1.0,
             sapo_temperature_neg=1.05, vespo_k_pos=2.0, vespo_lambda_pos=3.0, vespo_k_neg=3.0,
             vespo_lambda_neg=2.0, off_policy_mask_threshold=None, top_entropy_quantile=1.0,
             entropy_coef=0.0):
    """-> (loss, metrics) of TRL 1.16's ``_compute_loss`` (``loss_type`` in TRL's eight)."""
    detach = jax.lax.stop_gradient if xp is jnp else (lambda x: x)
    sigmoid = lambda x: 1 / (1 + xp.exp(-x))
    mask = completion_mask.astype(per_token_logps.dtype)
    if top_entropy_quantile < 1.0:
        entropy_mask = trl_high_entropy_mask(np.asarray(jax.lax.stop_gradient(entropies)),
                                             np.asarray(mask), 1 - top_entropy_quantile)
    else:
        entropy_mask = None
    if advantages.ndim == 1:
        advantages = advantages[:, None]
    old = old_per_token_logps
    if off_policy_mask_threshold is not None:
        off_policy_mask = trl_off_policy_mask(xp, advantages, per_token_logps, old, mask,
                                              off_policy_mask_threshold, detach)
    log_ratio = per_token_logps - old
    if importance_sampling_level == "token":
        log_importance_weights = log_ratio
    else:
        log_importance_weights = (log_ratio * mask).sum(-1) / xp.maximum(mask.sum(-1), 1.0)
        log_importance_weights = log_importance_weights[:, None]
    coef_1 = xp.exp(log_importance_weights)
    if beta != 0.0:
        ref = ref_per_token_logps
        per_token_kl = xp.exp(ref - per_token_logps) - (ref - per_token_logps) - 1
        if use_bias_correction_kl:
            per_token_kl = per_token_kl * coef_1
    if loss_type == "cispo":
        clamped_ratios = detach(xp.minimum(coef_1, epsilon_high))
        per_token_loss = -clamped_ratios * advantages * per_token_logps
    elif loss_type in ("grpo", "bnpo", "dr_grpo", "dapo", "luspo"):
        coef_2 = xp.clip(coef_1, 1 - epsilon, 1 + epsilon_high)
        if delta is not None:
            coef_1 = xp.minimum(coef_1, delta)
        per_token_loss = -xp.minimum(coef_1 * advantages, coef_2 * advantages)
    elif loss_type == "sapo":
        temperatures = xp.where(advantages > 0, sapo_temperature_pos, sapo_temperature_neg)
        soft_coef_1 = sigmoid(temperatures * (coef_1 - 1)) * 4 / temperatures
        per_token_loss = -soft_coef_1 * advantages
    elif loss_type == "vespo":
        phi_seq = trl_gamma_weights(xp, advantages, log_ratio, mask, vespo_k_pos,
                                    vespo_lambda_pos, vespo_k_neg, vespo_lambda_neg, detach)
        per_token_loss = -phi_seq * advantages * per_token_logps
    if off_policy_mask_threshold is not None:
        per_token_loss = per_token_loss * off_policy_mask
    if entropy_mask is not None:
        per_token_loss = per_token_loss * entropy_mask
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl
    if loss_type in ("grpo", "sapo"):
        loss = ((per_token_loss * mask).sum(-1) / xp.maximum(mask.sum(-1), 1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / xp.maximum(mask.sum(), 1.0)
    elif loss_type == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.shape[0] * max_completion_length)
    elif loss_type in ("cispo", "dapo", "vespo"):
        loss = (per_token_loss * mask).sum() / xp.maximum(mask.sum(), 1.0)
    elif loss_type == "luspo":
        loss = (per_token_loss * mask).sum(-1).mean()
    if entropy_coef != 0.0:
        effective_mask = mask if entropy_mask is None else mask * entropy_mask
        entropy_loss = (entropies * effective_mask).sum() / xp.maximum(effective_mask.sum(), 1.0)
        loss = loss - entropy_coef * entropy_loss

    def masked_seq_mean(x):
        if x.shape[1] == 1:
            return x[:, 0]
        with np.errstate(invalid="ignore"):
            return (x * mask).sum(-1) / mask.sum(-1)

    def global_masked_mean(x):
        if x.shape[1] == 1:
            return x.sum() / max(float(x.shape[0]), 1.0)
        return (x * mask).sum() / xp.maximum(mask.sum(), 1.0)

    nanmin = lambda t: np.nan if np.all(np.isnan(t)) else np.min(t[~np.isnan(t)])
    nanmax = lambda t: np.nan if np.all(np.isnan(t)) else np.max(t[~np.isnan(t)])
    m = {}
    if beta != 0.0:
        m["kl"] = global_masked_mean(per_token_kl)
    m["entropy"] = global_masked_mean(entropies)
    f = mask.dtype
    if loss_type in ("grpo", "bnpo", "dr_grpo", "dapo", "luspo"):
        is_low_clipped = (coef_1 < 1 - epsilon) & (advantages < 0)
        is_high_clipped = (coef_1 > 1 + epsilon_high) & (advantages > 0)
        m["clip_ratio/low_mean"] = global_masked_mean(is_low_clipped.astype(f))
        m["clip_ratio/high_mean"] = global_masked_mean(is_high_clipped.astype(f))
        m["clip_ratio/region_mean"] = global_masked_mean(
            (is_low_clipped | is_high_clipped).astype(f))
        if xp is np:
            m["clip_ratio/low_min"] = nanmin(masked_seq_mean(is_low_clipped.astype(f)))
            m["clip_ratio/high_max"] = nanmax(masked_seq_mean(is_high_clipped.astype(f)))
    elif loss_type == "cispo":
        m["cispo_clip_ratio"] = global_masked_mean(
            ((coef_1 > epsilon_high) & (advantages > 0)).astype(f))
    elif loss_type == "vespo":
        m["vespo/phi_seq_mean"] = global_masked_mean(phi_seq)
    if off_policy_mask_threshold is not None:      # jaxgrpo's metric (TRL logs none)
        m["off_policy_mask/dropped_ratio"] = global_masked_mean(1 - off_policy_mask)
    return loss, m


def verl_gmpo(xp, log_prob, old_log_prob, ref_log_prob, advantages, response_mask, *,
              clip_low=0.2, clip_high=0.28, beta=0.0):
    """verl's compute_policy_loss_geo_mean (+ beta * KL, TRL-grpo aggregated) -> (loss, m)."""
    mask = response_mask.astype(log_prob.dtype)
    if advantages.ndim == 1:
        advantages = xp.broadcast_to(advantages[:, None], mask.shape)
    negative_approx_kl = log_prob - old_log_prob
    sgn_advantage = xp.sign(advantages)
    negative_approx_kl_clamp = xp.clip(negative_approx_kl, -clip_low, clip_high)
    negative_approx_kl_min = xp.minimum(sgn_advantage * negative_approx_kl,
                                        sgn_advantage * negative_approx_kl_clamp)
    negative_approx_kl_min = sgn_advantage * negative_approx_kl_min
    response_mask_sum = mask.sum(-1)
    ratio = xp.exp((negative_approx_kl_min * mask).sum(-1) / (response_mask_sum + 1e-8))
    advantage = (advantages * mask).sum(-1) / (response_mask_sum + 1e-8)
    pg_losses = -advantage * ratio
    pg_loss = pg_losses.mean()
    clipped = negative_approx_kl != negative_approx_kl_clamp
    masked_mean = lambda v: (v * mask).sum() / (mask.sum() + 1e-8)
    m = {"clip_ratio/high_mean": masked_mean((clipped & (advantages > 0)).astype(mask.dtype)),
         "clip_ratio/low_mean": masked_mean((clipped & (advantages < 0)).astype(mask.dtype))}
    loss = pg_loss
    if beta != 0.0:
        d = ref_log_prob - log_prob
        kl = xp.exp(d) - d - 1
        loss = loss + beta * ((kl * mask).sum(-1) / xp.maximum(mask.sum(-1), 1.0)).mean()
    return loss, m


# ----------------------------------------------------------------------------- data

def make_batch(seed):
    """Ragged: lengths random, with an empty row, a one-token row and two full rows; entropies
    distinct and positive; log-ratios large enough for every clip, cap and gate to act."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, L + 1, size=B)
    lengths[:4] = (0, 1, L, L)
    lengths = lengths[rng.permutation(B)]
    mask = np.arange(L)[None, :] < lengths[:, None]
    logp = np.log(rng.uniform(0.05, 1.0, size=(B, L)))
    log_ratio = rng.normal(scale=0.5, size=(B, L))
    return {"logp": logp, "old": logp - log_ratio, "ref": logp + rng.normal(scale=0.4, size=(B, L)),
            "adv_seq": rng.normal(size=B), "adv_tok": rng.normal(size=(B, L)), "mask": mask,
            "entropy": rng.uniform(0.1, 3.0, size=(B, L))}


def ours(batch, adv_key, **kw):
    """(loss, metrics, d/d logp, d/d entropy) of policy_loss."""
    def f(logp, ent):
        return policy_loss(logp, batch["old"], batch["ref"], batch[adv_key], batch["mask"],
                           entropy=ent, **kw)
    (loss, m), (g, ge) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
        jnp.asarray(batch["logp"]), jnp.asarray(batch["entropy"]))
    return float(loss), {k: float(v) for k, v in m.items()}, np.asarray(g), np.asarray(ge)


TRL_NAMES = {"clip_eps": "epsilon", "clip_eps_high": "epsilon_high",
             "kl_bias_correction": "use_bias_correction_kl", "ent_coef": "entropy_coef"}


def reference(batch, adv_key, **kw):
    """(loss, metrics, d/d logp, d/d entropy) of the transcription (NumPy values, jax.grad of
    the jnp version)."""
    kw = {TRL_NAMES.get(k, k): v for k, v in kw.items()}
    args = lambda xp: [xp.asarray(batch[k]) for k in ("old", "ref", adv_key, "mask")]
    if kw["loss_type"] == "gmpo":
        gk = {"clip_low": kw.get("epsilon", 0.2), "clip_high": kw.get("epsilon_high", 0.28),
              "beta": kw.get("beta", 0.0)}
        fn = lambda xp, lp, ent: verl_gmpo(xp, lp, *args(xp), **gk)
    else:
        fn = lambda xp, lp, ent: trl_loss(xp, lp, *args(xp), ent, **kw)
    loss, m = fn(np, batch["logp"], batch["entropy"])
    g, ge = jax.grad(lambda lp, e: fn(jnp, lp, e)[0], argnums=(0, 1))(
        jnp.asarray(batch["logp"]), jnp.asarray(batch["entropy"]))
    return float(loss), {k: float(v) for k, v in m.items()}, np.asarray(g), np.asarray(ge)


def check(batch, adv_key, **kw):
    out, ref = ours(batch, adv_key, **kw), reference(batch, adv_key, **kw)
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(out[2], ref[2], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(out[3], ref[3], rtol=1e-9, atol=1e-13)
    assert np.all(out[2][~batch["mask"]] == 0.0)
    for k, v in ref[1].items():
        np.testing.assert_allclose(out[1][k], v, rtol=1e-10, atol=1e-13, err_msg=k)
    return out, ref


# ----------------------------------------------------------------------------- tests

GRID = [  # (loss_type, importance_sampling_level, adv_key, beta)
    *[(lt, "token", a, b) for lt in ("cispo", "sapo", "luspo", "vespo")
      for a in ("adv_seq", "adv_tok") for b in (0.0, 0.04)],
    ("cispo", "sequence", "adv_seq", 0.04), ("sapo", "sequence", "adv_seq", 0.0),
    ("luspo", "sequence", "adv_seq", 0.04), ("luspo", "sequence", "adv_tok", 0.0),
    ("vespo", "sequence", "adv_seq", 0.0),
]


@pytest.mark.parametrize("loss_type,level,adv_key,beta", GRID)
def test_new_loss_types_match_trl(loss_type, level, adv_key, beta):
    for seed in (0, 1):
        batch = make_batch(seed)
        # cispo's cap is the ratio itself (TRL's epsilon_high, ScaleRL recommends 5); 1.3 clips
        kw = dict(clip_eps=0.2, clip_eps_high=1.3 if loss_type == "cispo" else 0.28)
        out, ref = check(batch, adv_key, loss_type=loss_type, importance_sampling_level=level,
                         beta=beta, kl_bias_correction=beta > 0, **kw)
        if loss_type == "cispo" and seed == 0:
            assert 0 < out[1]["cispo_clip_ratio"] < 1


@pytest.mark.parametrize("adv_key", ["adv_seq", "adv_tok"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_gmpo_matches_verl(adv_key, beta):
    for seed in (0, 1):
        out, _ = check(make_batch(seed), adv_key, loss_type="gmpo", clip_eps=0.2,
                       clip_eps_high=0.28, beta=beta)
        assert out[1]["clip_ratio/high_mean"] > 0 and out[1]["clip_ratio/low_mean"] > 0


def test_sapo_and_vespo_parameters_and_defaults():
    """Non-default temperatures and gamma parameters reach the math; the defaults are TRL's."""
    batch = make_batch(2)
    check(batch, "adv_seq", loss_type="sapo", clip_eps=0.2, clip_eps_high=0.28,
          sapo_temperature_pos=0.5, sapo_temperature_neg=2.0)
    check(batch, "adv_seq", loss_type="vespo", clip_eps=0.2, clip_eps_high=0.28,
          vespo_k_pos=1.0, vespo_lambda_pos=0.5, vespo_k_neg=4.0, vespo_lambda_neg=5.0)
    a = ours(batch, "adv_seq", loss_type="sapo", clip_eps=0.2, clip_eps_high=0.28)
    b = ours(batch, "adv_seq", loss_type="sapo", clip_eps=0.2, clip_eps_high=0.28,
             sapo_temperature_pos=0.5)
    assert a[0] != b[0]


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "cispo", "sapo", "luspo", "vespo"])
def test_off_policy_mask_entropy_mask_and_bonus_match_trl(loss_type):
    for seed, adv_key in ((1, "adv_seq"), (3, "adv_tok")):
        batch = make_batch(seed)
        kw = dict(loss_type=loss_type, clip_eps=0.2,
                  clip_eps_high=1.3 if loss_type == "cispo" else 0.28, beta=0.04,
                  off_policy_mask_threshold=0.05, top_entropy_quantile=0.4, ent_coef=0.01)
        out, ref = check(batch, adv_key, **kw)
        assert 0 < out[1]["off_policy_mask/dropped_ratio"] < 1
        # each option on its own
        check(batch, adv_key, **{**kw, "top_entropy_quantile": 1.0, "ent_coef": 0.0})
        check(batch, adv_key, **{**kw, "off_policy_mask_threshold": None})
        check(batch, adv_key, **{**kw, "off_policy_mask_threshold": None,
                                 "top_entropy_quantile": 1.0})


@pytest.mark.parametrize("q", [0.0, 0.2, 0.5, 1.0 - 1e-9])
def test_high_entropy_mask_is_trl_quantile(q):
    for seed in range(3):
        batch = make_batch(seed)
        got = np.asarray(high_entropy_mask(jnp.asarray(batch["entropy"]),
                                           jnp.asarray(batch["mask"]), 1.0 - q))
        want = trl_high_entropy_mask(batch["entropy"], batch["mask"].astype(float), 1.0 - q)
        np.testing.assert_array_equal(got, want)
    # ties and an empty batch
    ent = jnp.asarray([[1.0, 1.0, 2.0], [2.0, 0.5, 7.0]])
    m = jnp.asarray([[True, True, True], [True, False, False]])
    np.testing.assert_array_equal(np.asarray(high_entropy_mask(ent, m, 0.5)),
                                  trl_high_entropy_mask(np.asarray(ent), np.asarray(m), 0.5))
    assert not np.any(np.asarray(high_entropy_mask(ent, jnp.zeros((2, 3), bool), 0.5)))


def test_clip_ratio_min_max_match_trl():
    for seed in range(3):
        batch = make_batch(seed)
        for level, adv_key in (("token", "adv_seq"), ("token", "adv_tok"),
                               ("sequence", "adv_seq")):
            out, ref = check(batch, adv_key, loss_type="grpo", clip_eps=0.2, clip_eps_high=0.28,
                             importance_sampling_level=level, delta=1.5)
            assert {"clip_ratio/low_min", "clip_ratio/high_max"} <= set(ref[1])


@pytest.mark.parametrize("loss_type", NEW)
def test_finite_difference_gradient_of_numpy_reference(loss_type):
    """jax.grad of policy_loss = central differences of the NumPy reference (smooth points)."""
    batch = make_batch(3)
    kw = dict(loss_type=loss_type, clip_eps=0.2,
              clip_eps_high=1.3 if loss_type == "cispo" else 0.28, beta=0.04, ent_coef=0.01)
    _, _, g, _ = ours(batch, "adv_seq", **kw)

    def f(lp, old):
        k = {TRL_NAMES.get(a, a): v for a, v in kw.items()}
        if loss_type == "gmpo":
            return verl_gmpo(np, lp, old, batch["ref"], batch["adv_seq"], batch["mask"],
                             beta=0.04)[0]
        return trl_loss(np, lp, old, batch["ref"], batch["adv_seq"], batch["mask"],
                        batch["entropy"], **k)[0]
    # cispo and vespo detach their weight, a function of the ratio only: moving old_logp with
    # logp holds the ratio, so the difference quotient is the gradient with the weight held
    shift_old = loss_type in ("cispo", "vespo")
    h = 1e-6
    for i, j in zip(*np.nonzero(batch["mask"])):
        e = np.zeros((B, L))
        e[i, j] = h
        o = e if shift_old else 0.0
        fd = (f(batch["logp"] + e, batch["old"] + o)
              - f(batch["logp"] - e, batch["old"] - o)) / (2 * h)
        np.testing.assert_allclose(g[i, j], fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss_type", NEW)
def test_empty_batch_and_one_token_rows(loss_type):
    """All rows empty: loss and gradient 0, no NaN (masked NaN inputs included); a batch of
    one-token rows matches the reference."""
    nan = np.full((B, L), np.nan)
    kw = dict(loss_type=loss_type, clip_eps=0.2, clip_eps_high=0.28, beta=0.04,
              off_policy_mask_threshold=0.1, top_entropy_quantile=0.5, ent_coef=0.01)

    def f(lp):
        return policy_loss(lp, nan, nan, np.full(B, np.nan), np.zeros((B, L), bool),
                           entropy=nan, **kw)
    (loss, m), g = jax.value_and_grad(f, has_aux=True)(jnp.asarray(nan))
    assert float(loss) == 0.0 and np.all(np.asarray(g) == 0.0)
    for k, v in m.items():
        if k not in ("clip_ratio/low_min", "clip_ratio/high_max", "vespo/phi_seq_mean"):
            assert float(v) == 0.0, k
    batch = make_batch(4)
    batch["mask"] = np.zeros((B, L), bool)
    batch["mask"][:, 0] = True
    batch["mask"][2] = False
    check(batch, "adv_seq", **{k: v for k, v in kw.items()
                               if loss_type != "gmpo" or k in ("loss_type", "clip_eps",
                                                                "clip_eps_high", "beta")})


def test_traced_options_equal_static_ones_and_none_nan_is_off():
    """Sweeps pass these options traced (vmapped): same numbers as Python ones; NaN threshold
    (an unset one in hparams) and quantile 1 switch the masks off."""
    batch = make_batch(5)
    base = dict(clip_eps=0.2, clip_eps_high=0.28, beta=0.04, ent_coef=0.01)
    for lt in ("sapo", "vespo", "dapo"):
        static = ours(batch, "adv_seq", loss_type=lt, off_policy_mask_threshold=0.05,
                      top_entropy_quantile=0.3, sapo_temperature_neg=1.5, vespo_k_neg=2.5,
                      **base)
        f = lambda t, q, s, k: policy_loss(
            jnp.asarray(batch["logp"]), batch["old"], batch["ref"], batch["adv_seq"],
            batch["mask"], entropy=jnp.asarray(batch["entropy"]), loss_type=lt,
            off_policy_mask_threshold=t, top_entropy_quantile=q, sapo_temperature_neg=s,
            vespo_k_neg=k, **base)[0]
        lanes = jax.vmap(f)(jnp.asarray([0.05, jnp.nan]), jnp.asarray([0.3, 1.0]),
                            jnp.asarray([1.5, 1.5]), jnp.asarray([2.5, 2.5]))
        off = ours(batch, "adv_seq", loss_type=lt, sapo_temperature_neg=1.5, vespo_k_neg=2.5,
                   **base)
        np.testing.assert_allclose(np.asarray(lanes), [static[0], off[0]], rtol=1e-12)
        one = jax.jit(f)(jnp.nan, 1.0, 1.5, 2.5)          # unbatched: lax.cond
        np.testing.assert_allclose(float(one), off[0], rtol=1e-12)


def test_bad_arguments_raise_named_errors():
    batch = make_batch(0)
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(batch["logp"], batch["old"], None, batch["adv_seq"], batch["mask"],
                    loss_type="sapo", clip_eps=0.2, clip_eps_high=None, ent_coef=0.1)
    with pytest.raises(ValueError, match="top_entropy_quantile"):
        policy_loss(batch["logp"], batch["old"], None, batch["adv_seq"], batch["mask"],
                    loss_type="grpo", clip_eps=0.2, clip_eps_high=None,
                    entropy=batch["entropy"], top_entropy_quantile=1.5)
    with pytest.raises(ValueError, match="loss_type"):
        policy_loss(batch["logp"], batch["old"], None, batch["adv_seq"], batch["mask"],
                    loss_type="geo_mean", clip_eps=0.2, clip_eps_high=None)
