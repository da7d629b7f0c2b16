"""GRPO on text tasks: ``TEXT_GRPO``, the entry of ``make_train``'s table
(``jaxgrpo.algorithm.Algorithm``) whose iteration is collect -> score -> ``update.learn`` ->
reference sync, as on environments.

An episode is a completion and a step a completion token: ``collect`` draws ``num_groups``
prompts, samples ``group_size`` completions of each with the KV cache (a group is the
completions of one prompt, the text form of same-start episode groups) and scores them with
the task's verifier; ``score`` normalizes the rewards within groups (``group_normalize``) and
builds per-token aggregation weights over the whole batch; ``loss`` recomputes the chunk's
token log-probs in one causal forward pass and applies ``jaxgrpo.losses.policy_loss`` (the same
clipped surrogate and KL as the environment path). The learn phase's unit is a whole sequence:
``update.learn`` shuffles and minibatches completions, never single tokens.

Shapes: G prompts (groups), N = group_size, C = G * N completions, P prompt tokens,
M = max_new_tokens.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..advantages import (aggregate_rewards, batch_normalize, group_normalize, group_stats,
                          grpo_passk, last_token_rewards, reinforce_pp, reinforce_pp_baseline)
from ..algorithm import Algorithm, adam, freeze_base, minibatch_learn, no_carry, reference_of
from ..losses import PER_SEQUENCE_COUNT, loss_weights, minibatch_policy_loss
from ..rollout import EpisodeStats
from .interface import prompt_valid
from .model import Transformer
from .rewardfns import RewardFns, reward_names


class Completions(NamedTuple):
    """One iteration's samples (leading axis C = G * N, group g's members at g*N .. g*N+N-1)."""
    prompt: jax.Array      # int32 [C, P], left-padded prompts
    prompt_valid: jax.Array  # bool [C, P], their real tokens
    completion: jax.Array  # int32 [C, M], PAD after the first EOS
    logp: jax.Array        # float32 [C, M], sampling-time log-probs (temperature-scaled), 0 after EOS
    length: jax.Array      # int32 [C], tokens before the first EOS (M if none: truncated)
    mask: jax.Array        # bool [C, M], the completion's tokens, its EOS included
    reward: jax.Array      # float32 [C], the verifier's (or the reward functions' combined;
    #                        NaN where every function returned None)
    group_id: jax.Array    # int32 [C]
    rewards_per_func: jax.Array | None = None   # float32 [C, F]: Python reward functions'
    #                        rewards (NaN for None), with reward_funcs; None otherwise


def make_env(config):
    """The config's text task (``jaxgrpo.text.TextTask``)."""
    return config.task


def make_policy(config, task=None) -> Transformer:
    """The causal transformer of the config's model fields."""
    return Transformer(config.model_config())


def token_mask(length, max_new_tokens):
    """bool [C, M]: the tokens of each completion, up to and including its first EOS."""
    return jnp.arange(max_new_tokens)[None, :] <= jnp.minimum(length, max_new_tokens - 1)[:, None]


def sample_groups(task, key, num_groups, group_size):
    """``num_groups`` prompts, each repeated ``group_size`` times: (Prompt [C], group_id [C])."""
    prompts = jax.vmap(task.sample)(jax.random.split(key, num_groups))
    rep = lambda x: jnp.repeat(x, group_size, axis=0)
    return jax.tree.map(rep, prompts), rep(jnp.arange(num_groups, dtype=jnp.int32))


def score_completions(task, rewards, prompts, completion, length, valid=None):
    """Rewards of completions [C, M] of ``prompts`` (a batched ``Prompt`` [C]) with ``length``
    [C]: ``task.verify``'s (``rewards`` None: in the graph) -> (float32 [C], None), or the
    Python reward functions' (``rewardfns.RewardFns``; only the ``valid`` [C] rows, default
    all, are passed to them) -> (combined float32 [C], NaN where unscorable; per function
    float32 [C, F])."""
    if rewards is None:
        return jax.vmap(task.verify)(prompts, completion, length).astype(jnp.float32), None
    if valid is None:
        valid = jnp.ones(length.shape, bool)
    per_func = rewards.per_function(prompts, completion, length, valid)
    return rewards.combine(per_func), per_func


def sample_completions(model, task, params, key, num_groups, group_size, temperature,
                       active=True, greedy=False, early_stop=True, rewards=None, top_k=0,
                       top_p=1.0):
    """Sample and verify ``group_size`` completions of each of ``num_groups`` fresh prompts.
    -> (Completions, EpisodeStats); with ``active`` False (a run past its budget) every mask
    is False, so nothing is counted or trained. Decoding stops once every completion has
    ended (``early_stop``, static, passed to ``Transformer.generate``; False always runs
    ``max_new_tokens`` steps, with the same results). ``rewards`` (a
    ``rewardfns.RewardFns``, static): score with these Python reward functions (a host
    callback on the decoded completions) instead of ``task.verify``; the episode statistics
    count an unscorable completion's reward as 0. ``top_k``, ``top_p`` (static): TRL's
    sampling filters (``Transformer.generate``)."""
    k_prompt, k_gen = jax.random.split(key)
    prompts, gid = sample_groups(task, k_prompt, num_groups, group_size)
    M = task.max_new_tokens
    real = prompt_valid(prompts.tokens, prompts.length)
    completion, logp, length = model.generate(params, k_gen, prompts.tokens, real, M,
                                              temperature=temperature, eos_id=task.eos_id,
                                              greedy=greedy, early_stop=early_stop,
                                              **sampling_filters(top_k, top_p))
    mask = token_mask(length, M) & active
    reward, per_func = score_completions(task, rewards, prompts, completion, length,
                                         jnp.any(mask, axis=1))
    valid = jnp.any(mask, axis=1).astype(jnp.float32)
    stats = EpisodeStats(return_sum=jnp.sum(reward * valid) if rewards is None else
                         jnp.sum(jnp.where(valid > 0, jnp.nan_to_num(reward, nan=0.0), 0.0)),
                         length_sum=jnp.sum(mask.astype(jnp.float32)),
                         count=jnp.sum(valid), valid_steps=jnp.sum(mask.astype(jnp.float32)),
                         sim_steps=jnp.float32(mask.size) * active)
    return Completions(prompts.tokens, real, completion, logp, length, mask, reward, gid,
                       per_func), stats


def sampling_filters(top_k, top_p) -> dict:
    """``generate``'s top_k / top_p arguments, only when they filter (the default decode is
    the program it always was)."""
    return {**({"top_k": int(top_k)} if top_k else {}),
            **({"top_p": float(top_p)} if top_p < 1.0 else {})}


def score(config, model, params, rollout: Completions, hp, ref_params=None):
    """-> (batch of C sequences, weight [C, M], keep [C], metrics).

    Advantages: each completion's reward normalized within its group (``scale_rewards``,
    ``baseline``, ``adv_eps`` as on environments). ``keep``: the completions the loss trains
    on: all of them, less those without EOS with ``mask_truncated_completions`` and those of
    groups whose rewards are all equal with ``dynamic_sampling`` (DAPO; counted in
    ``dropped_groups``). ``weight``: TRL's ``loss_type`` aggregation over the kept tokens of the
    whole batch (the grpo and dr_grpo sequence count is every completion except those of
    dropped groups: a masked truncated completion still counts, as in TRL), so that the
    minibatches' weighted losses add up to the batch's loss.

    With Python reward functions (``rollout.rewards_per_func``), a completion all of whose
    functions returned None (reward NaN) is left out of its group's statistics, of the loss
    and of the reward metrics (TRL's unscorable completions), and each function adds the
    metrics ``rewards/{name}/mean`` and ``rewards/{name}/std`` (over its non-None rewards,
    std with Bessel's correction as TRL's ``nanstd``).

    ``advantage`` (the estimator; ``advantage_estimates``) and ``multi_objective_aggregation``
    (how several rewards become one) other than their defaults: see ``advantage_estimates``;
    ``reward_std`` and ``frac_reward_zero_std`` are then those of the (combined) reward.
    ``ref_params``: the reference policy, for REINFORCE++'s KL penalty in the reward."""
    C, M = rollout.completion.shape
    G = C // config.group_size
    seq_valid = jnp.any(rollout.mask, axis=1)
    scored = seq_valid                    # the completions with a reward
    if rollout.rewards_per_func is not None:
        scored = seq_valid & ~jnp.isnan(rollout.reward)
    extra = {}
    if config.advantage == "grpo" and config.multi_objective_aggregation == "sum_then_normalize":
        adv, std, zero = group_normalize(rollout.reward, rollout.group_id, G, mask=scored,
                                         scale=config.scale_rewards, baseline=config.baseline,
                                         eps=config.adv_eps, with_stats=True)
    else:
        adv, extra = advantage_estimates(config, model, params, ref_params, rollout, scored, hp)
        std, zero = group_stats(rollout.reward, rollout.group_id, G, scored)
    truncated = rollout.length >= M
    in_batch = scored
    if config.dynamic_sampling:
        in_batch = in_batch & ~zero[rollout.group_id]
    keep = in_batch & ~truncated if config.mask_truncated_completions else in_batch
    tok = rollout.mask & keep[:, None]
    weight = loss_weights(tok.T, config.loss_type, M, count_empty=True).T
    if config.loss_type in PER_SEQUENCE_COUNT:   # divide by the rows in the batch, not by C
        weight = weight * (C / jnp.maximum(jnp.sum(in_batch), 1).astype(jnp.float32))
    n = jnp.maximum(jnp.sum(seq_valid), 1).astype(jnp.float32)
    seq_mean = lambda x: jnp.sum(jnp.where(seq_valid, x, 0.0)) / n
    if rollout.rewards_per_func is None:
        scored_mean = seq_mean
    else:
        n_scored = jnp.maximum(jnp.sum(scored), 1).astype(jnp.float32)
        scored_mean = lambda x: jnp.sum(jnp.where(scored, x, 0.0)) / n_scored
    length = jnp.sum(rollout.mask, 1).astype(jnp.float32)
    correct = rollout.reward >= 1.0

    def length_of(sel):     # mean length of the valid completions in sel; NaN if none
        sel = seq_valid & sel
        k = jnp.sum(sel)
        return jnp.where(k > 0, jnp.sum(jnp.where(sel, length, 0.0)) / jnp.maximum(k, 1), jnp.nan)
    metrics = {"reward": scored_mean(rollout.reward), "reward_std": jnp.mean(std),
               "frac_reward_zero_std": jnp.mean(zero),
               "accuracy": scored_mean((rollout.reward >= 1.0).astype(jnp.float32)),
               "completions/mean_length": seq_mean(length),
               # the length-bias diagnostics of Dr. GRPO: correct vs wrong (reward < 1)
               "completions/mean_length_correct": length_of(correct),
               "completions/mean_length_wrong": length_of(~correct),
               "completions/clipped_ratio": seq_mean(truncated.astype(jnp.float32)),
               "dropped_groups": jnp.float32(0) if not config.dynamic_sampling else
                                 jnp.sum(zero & jnp.any(seq_valid.reshape(G, -1), 1),
                                         dtype=jnp.float32),
               "adv_abs": seq_mean(jnp.abs(adv) if adv.ndim == 1 else
                                   jnp.sum(jnp.abs(adv), 1) / jnp.maximum(length, 1.0)),
               **extra}
    if rollout.rewards_per_func is not None:
        metrics.update(function_metrics(rollout.rewards_per_func, seq_valid,
                                        reward_names(config.reward_funcs)))
    batch = {"prompt": rollout.prompt, "prompt_valid": rollout.prompt_valid,
             "completion": rollout.completion, "logp": rollout.logp,
             "adv": adv, "mask": tok,
             # the batch's kept tokens (one copy per row): turns the chunks' weighted sums
             # into the metrics update.learn reports (sums over counts)
             "batch_tokens": jnp.full(C, jnp.sum(tok), jnp.float32)}
    return batch, weight, keep, metrics


def advantage_estimates(config, model, params, ref_params, rollout: Completions, scored, hp):
    """The advantages of the estimators other than plain GRPO, or of GRPO on rewards
    aggregated by ``normalize_then_sum`` -> (adv [C] or, for ``reinforce_pp``, [C, M]; metrics).

    The reward first: with ``multi_objective_aggregation="normalize_then_sum"`` (GDPO) every
    reward function's column (or the verifier's one reward) is normalized within its group,
    then the columns' weighted ``nansum`` (``advantages.aggregate_rewards``); else the combined
    reward. Then ``advantage``:
    - ``"grpo"``: (GDPO only) the aggregated reward normalized over the batch, as TRL does
      (``batch_normalize``; ``scale_rewards`` and ``baseline`` play no part);
    - ``"reinforce_pp_baseline"``: minus the group mean, whitened over the batch's tokens;
    - ``"grpo_passk"``: the group's best completion gets ``r_max - r_second`` (over the group
      std + ``adv_eps`` with ``scale_rewards="group"``), the others 0;
    - ``"reinforce_pp"``: per token, the reward on the last token minus ``kl_reward_coef`` times
      the k1 KL ``logp_old - logp_ref`` of every token (verl's ``apply_kl_penalty``; the
      reference forward pass runs only when the coefficient is > 0), summed to the end of the
      completion undiscounted (verl's default gamma 1) and whitened over the batch's tokens.
    The completions not ``scored`` [C] are in no statistic and get 0. Metrics:
    ``reward_kl_penalty`` (reinforce_pp: the batch mean of the completions' mean token KL,
    verl's ``actor/reward_kl_penalty``)."""
    C, M = rollout.completion.shape
    G = C // config.group_size
    gid = rollout.group_id
    reward = rollout.reward
    if config.multi_objective_aggregation == "normalize_then_sum":
        per = rollout.rewards_per_func
        weights = (config.reward_weights or (1.0,) * per.shape[1]) if per is not None else (1.0,)
        per = reward[:, None] if per is None else per
        reward = aggregate_rewards(per, weights, gid, G, scored, mode="normalize_then_sum",
                                   eps=config.adv_eps)
    tokens = jnp.sum(rollout.mask, axis=1)
    if config.advantage == "grpo":
        return batch_normalize(reward, scored, eps=config.adv_eps), {}
    if config.advantage == "reinforce_pp_baseline":
        return reinforce_pp_baseline(reward, gid, G, tokens, valid=scored), {}
    if config.advantage == "grpo_passk":
        return grpo_passk(reward, gid, G, valid=scored, scale=config.scale_rewards,
                          eps=config.adv_eps), {}
    # reinforce_pp
    mask = rollout.mask & scored[:, None]
    kl = reward_kl(config, model, params, ref_params, rollout, hp) * mask
    n = jnp.maximum(jnp.sum(scored), 1).astype(jnp.float32)
    seq_kl = jnp.sum(kl, 1) / (jnp.sum(mask, 1) + 1e-8)
    token_rewards = last_token_rewards(jnp.where(scored, reward, 0.0), mask) - \
        hp["kl_reward_coef"] * kl
    return reinforce_pp(token_rewards, mask), {"reward_kl_penalty": jnp.sum(seq_kl) / n}


def reward_kl(config, model, params, ref_params, rollout: Completions, hp):
    """float32 [C, M]: k1 KL ``logp_old - logp_ref`` of each sampled token (``rollout.logp``,
    the sampling-time log-probs, against the reference policy's at the same temperature);
    zeros, without a reference forward pass, when ``kl_reward_coef`` is 0 or there is no
    reference."""
    if ref_params is None:
        return jnp.zeros(rollout.logp.shape, jnp.float32)
    ref = reference_of(params, ref_params)
    eos = config.task.eos_id
    ref_logp = jax.lax.cond(
        hp["kl_reward_coef"] > 0,
        lambda: model.token_logp(ref, rollout.prompt, rollout.prompt_valid, rollout.completion,
                                 hp["temperature"], eos)[0].astype(jnp.float32),
        lambda: rollout.logp.astype(jnp.float32))
    return jax.lax.stop_gradient(jnp.where(rollout.mask, rollout.logp - ref_logp, 0.0))


def function_metrics(per_func, valid, names) -> dict:
    """``rewards/{name}/mean`` and ``rewards/{name}/std`` of each reward function's column of
    ``per_func`` [C, F] over the ``valid`` [C] rows where it is not NaN (None): the mean, and
    the std with Bessel's correction; NaN when it has no value (the std: fewer than two)."""
    out = {}
    for j, name in enumerate(names):
        x = per_func[:, j]
        ok = valid & ~jnp.isnan(x)
        k = jnp.sum(ok).astype(jnp.float32)
        mean = jnp.sum(jnp.where(ok, x, 0.0)) / jnp.maximum(k, 1.0)
        var = jnp.sum(jnp.where(ok, (x - mean) ** 2, 0.0)) / jnp.maximum(k - 1.0, 1.0)
        out[f"rewards/{name}/mean"] = jnp.where(k > 0, mean, jnp.nan)
        out[f"rewards/{name}/std"] = jnp.where(k > 1, jnp.sqrt(var), jnp.nan)
    return out


def loss(config, model, params, ref_params, chunk, weight, mask, hp):
    """``(sum of the chunk's weighted per-token losses, metric sums)`` for ``update.learn``:
    chunk is a dict of [B, ...] completions, ``weight`` [B, M] from ``score``, ``mask`` [B]
    the completions of the current minibatch: ``policy_loss`` of the config's ``loss_type``
    and options (+ beta * KL to the reference policy), its entropy bonus ``ent_coef`` times
    the mean entropy of the trained tokens (TRL's), this chunk's share of it by tokens. The
    entropy mask (``top_entropy_quantile``) takes the quantile over the chunk's tokens (TRL's
    micro-batch)."""
    valid, eos = chunk["prompt_valid"], config.task.eos_id
    temp = hp["temperature"]
    ref_params = reference_of(params, ref_params)   # with LoRA: the base, adapters off
    params = freeze_base(params)                    # with LoRA: gradients reach adapters only
    logp, entropy = model.token_logp(params, chunk["prompt"], valid, chunk["completion"],
                                     temp, eos)
    m = chunk["mask"] & mask[:, None]
    # beta = 0 (the default): no reference forward pass, and the KL term is exactly 0
    ref_logp = jax.lax.cond(
        hp["beta"] > 0,
        lambda: jax.lax.stop_gradient(model.token_logp(ref_params, chunk["prompt"], valid,
                                                       chunk["completion"], temp, eos)[0]),
        lambda: jax.lax.stop_gradient(logp))
    return minibatch_policy_loss(config, hp, logp, entropy, ref_logp, chunk["logp"],
                                 chunk["adv"], m, weight, chunk["batch_tokens"][0],
                                 max_len=chunk["completion"].shape[1])


def collect(config, task, model, params, key, carry, active, hp):
    """``sample_completions`` of ``num_groups`` prompts x ``group_size`` at the ``temperature``
    hyperparameter, scored by the config's ``reward_funcs`` if it has any (else by the task's
    verifier). -> (Completions, EpisodeStats, carry)."""
    return (*sample_completions(model, task, params, key, config.num_groups, config.group_size,
                                hp["temperature"], active,
                                rewards=RewardFns.of(config, task), top_k=config.top_k,
                                top_p=config.top_p), carry)


TEXT_GRPO = Algorithm(make_env=make_env, make_policy=make_policy, optimizer=adam,
                      init_carry=no_carry, collect=collect, score=score, loss=loss,
                      learn=minibatch_learn(lambda config: config.chunk_size),
                      reference=True, budgeted=True)
