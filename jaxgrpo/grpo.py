"""GRPO on gymnax environments: groups of episodes (same start state, ``group_mode="episode"``;
unrelated episodes, ``"batch"``) or of branches from one state (``"state"``), group-relative
advantages, clipped surrogate + KL to a reference policy. ``GRPO`` is its entry in
``make_train``'s table (``jaxgrpo.algorithm.Algorithm``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .advantages import (batch_normalize, episode_returns, group_normalize, group_stats,
                         grpo_passk, reinforce_pp, reinforce_pp_baseline,
                         reverse_discounted_cumsum)
from .algorithm import Algorithm, adam, gymnax_env, gymnax_policy, minibatch_learn
from .losses import (cispo_token_loss, clip_ratios, grpo_token_loss,
                     high_entropy_mask_of_quantile, loss_weights, minibatch_policy_loss,
                     sapo_token_loss, step_weights)
from .rollout import Rollout, collect_branches, collect_episodes
from .stream import StreamBatch, collect_stream, init_stream


def init_carry(config, env, policy, params, key):
    """The stream collector's lanes, groups and ring (``stream.StreamCarry``); None when
    collecting on-policy."""
    if config.on_policy:
        return None
    env, env_params = env
    return init_stream(policy, env, env_params, params, key, config.num_envs, config.num_steps,
                       config.group_size)


def collect(config, env, policy, params, key, carry, active, hp):
    """One iteration's samples. On-policy: branches of states (``group_mode="state"``) or
    whole episodes (``"episode"``: a group's members share a start state; ``"batch"``: they do
    not) -> (Rollout, EpisodeStats, None). Stream (``on_policy`` False): ``num_steps`` steps of
    the lanes in ``carry`` and the oldest scored steps -> ((StreamBatch, metrics),
    EpisodeStats, carry)."""
    env, env_params = env
    if not config.on_policy:
        batch, stats, carry, metrics = collect_stream(
            policy, env, env_params, params, key, carry, config.num_steps, gamma=hp["gamma"],
            transform=config.reward_transform, group_size=config.group_size,
            same_start=config.group_mode == "episode", share_env_noise=config.share_env_noise,
            scale=config.scale_rewards, baseline=config.baseline, eps=config.adv_eps,
            active=active)
        return (batch, metrics), stats, carry
    if config.group_mode == "state":
        return (*collect_branches(policy, env, env_params, params, key, config.num_groups,
                                  config.group_size, config.branch_every, config.branch_horizon,
                                  active=active, share_env_noise=config.share_env_noise), None)
    return (*collect_episodes(policy, env, env_params, params, key, config.num_groups,
                              config.group_size, active=active,
                              same_start=config.group_mode == "episode",
                              share_env_noise=config.share_env_noise), None)


def advantages(config, rollout: Rollout, gamma, kl=None, kl_coef=0.0):
    """Group-relative advantages [T, N] (0 on masked steps) and metrics.

    Rewards first go through ``config.reward_transform``. Groups are ``rollout.group_id``.
    outcome: each episode's discounted return is normalized within its group; every step of
    the episode gets it. process: every step reward is normalized over all steps of its group;
    a step's advantage is the (gamma-discounted) sum of normalized rewards to the episode end.

    The other estimators (``config.advantage``; outcome supervision), on each episode's
    discounted return R: ``"grpo_passk"``: the group's best episode gets ``R_max -
    R_second`` (over the group std + ``adv_eps`` with ``scale_rewards="group"``), the others
    0; ``"reinforce_pp_baseline"``: R minus its group's mean, whitened over the batch's steps
    (verl's, a step standing for a token); ``"reinforce_pp"``: no groups: every step's
    discounted reward-to-go, the step rewards less ``kl_coef`` times ``kl`` [T, N] (the k1 KL
    of the sampled action to the reference policy) when given, whitened over the batch's
    steps. ``multi_objective_aggregation="normalize_then_sum"`` (GDPO with the env's one
    reward): R normalized within its group, then over the batch (TRL's).
    """
    T, N = rollout.mask.shape
    G = N // config.group_size                     # number of groups (static)
    kw = dict(scale=config.scale_rewards, baseline=config.baseline, eps=config.adv_eps,
              with_stats=True)
    ep_mask = jnp.any(rollout.mask, axis=0)
    reward = config.reward_transform(rollout.reward, rollout.mask)
    reward = jnp.where(rollout.mask, reward, 0.0)
    returns = episode_returns(reward, rollout.mask, gamma)
    extra = {}
    if config.advantage != "grpo" or config.multi_objective_aggregation != "sum_then_normalize":
        std, zero = group_stats(returns, rollout.group_id, G, ep_mask)
        if config.advantage == "reinforce_pp":
            if kl is not None:
                kl = jnp.where(rollout.mask, kl, 0.0)
                reward = reward - kl_coef * kl
                n_ep = jnp.maximum(jnp.sum(ep_mask), 1).astype(jnp.float32)
                extra["reward_kl_penalty"] = jnp.sum(
                    jnp.sum(kl, 0) / (jnp.sum(rollout.mask, 0) + 1e-8)) / n_ep
            adv = reinforce_pp(reward.T, rollout.mask.T, gamma).T
        else:
            ret = returns
            if config.multi_objective_aggregation == "normalize_then_sum":
                ret = group_normalize(returns, rollout.group_id, G, mask=ep_mask,
                                      eps=config.adv_eps)
            if config.advantage == "grpo":
                adv_ep = batch_normalize(ret, ep_mask, eps=config.adv_eps)
            elif config.advantage == "grpo_passk":
                adv_ep = grpo_passk(ret, rollout.group_id, G, valid=ep_mask,
                                    scale=config.scale_rewards, eps=config.adv_eps)
            else:
                adv_ep = reinforce_pp_baseline(ret, rollout.group_id, G,
                                               jnp.sum(rollout.mask, 0), valid=ep_mask)
            adv = jnp.where(rollout.mask, adv_ep[None, :], 0.0)
    elif config.supervision == "outcome":
        adv_ep, std, zero = group_normalize(returns, rollout.group_id, G, mask=ep_mask, **kw)
        adv = jnp.where(rollout.mask, adv_ep[None, :], 0.0)
    else:
        gid = jnp.broadcast_to(rollout.group_id[None, :], (T, N)).ravel()
        r, std, zero = group_normalize(reward.ravel(), gid, G, mask=rollout.mask.ravel(), **kw)
        adv = reverse_discounted_cumsum(r.reshape(T, N), gamma, rollout.mask)
    metrics = {"reward_std": jnp.mean(std), "frac_reward_zero_std": jnp.mean(zero),
               "adv_abs": jnp.sum(jnp.abs(adv)) / jnp.maximum(jnp.sum(rollout.mask), 1),
               **extra}
    return adv, metrics


def stream_weights(batch: StreamBatch, loss_type, horizon):
    """``loss_weights`` of a stream batch [K], whose episodes may be partly in it: the number
    of episodes is the sum of 1 / episode length over its steps (their count when whole
    episodes are in the batch)."""
    m = batch.mask.astype(jnp.float32)
    n_ep = jnp.maximum(jnp.sum(m / jnp.maximum(batch.ep_len, 1.0)), 1e-6)
    return step_weights(m, batch.ep_len, n_ep, loss_type, horizon)


def score(config, policy, params, rollout, hp, ref_params=None):
    """-> (batch of flat [T'*N] samples, weight [T'*N], mask [T'*N], metrics), T' = the rows
    the loss trains on (all T for episodes; the first for state branches); with
    ``config.by_episode``, whole episodes: (batch of [N, T, ...], weight [N, T], mask [N] (the
    episodes that ran), metrics), the batch with each step's ``mask`` [N, T] and the batch's
    step count ``batch_steps`` [N]. A stream batch
    (scored as its groups ended) is passed on with its loss weights. ``ref_params``: the
    reference policy, for ``advantage="reinforce_pp"``'s KL penalty in the reward
    (``kl_reward_coef``; its forward pass runs only when the coefficient is > 0)."""
    if not config.on_policy:
        batch, metrics = rollout
        weight = stream_weights(batch, config.loss_type, config.max_episode_steps)
        m = batch.mask.astype(jnp.float32)
        metrics = {**metrics, "adv_abs": jnp.sum(jnp.abs(batch.adv) * m) / jnp.maximum(
            jnp.sum(m), 1.0)}
        return ({"obs": batch.obs, "action": batch.action, "logp": batch.logp,
                 "adv": batch.adv}, weight, batch.mask, metrics)
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    kl = None
    if config.advantage == "reinforce_pp" and ref_params is not None:
        ref_logp = jax.lax.cond(
            hp["kl_reward_coef"] > 0,
            lambda: policy.dist(ref_params, flat(rollout.obs)).log_prob(
                flat(rollout.action)).reshape(rollout.logp.shape),
            lambda: rollout.logp)
        kl = jax.lax.stop_gradient(rollout.logp - ref_logp)
    adv, metrics = advantages(config, rollout, hp["gamma"], kl,
                              hp.get("kl_reward_coef", 0.0))
    rows = rollout.obs.shape[0]
    adv, mask = adv[:rows], rollout.mask[:rows]
    weight = loss_weights(mask, config.loss_type, rows)
    metrics = {**metrics, "staleness/mean": jnp.float32(0), "staleness/max": jnp.float32(0)}
    if config.by_episode:   # samples are whole episodes: [N, T, ...]
        seq = lambda x: jnp.swapaxes(x, 0, 1)
        n_steps = jnp.sum(mask).astype(jnp.float32)
        batch = {"obs": seq(rollout.obs), "action": seq(rollout.action),
                 "logp": rollout.logp.T, "adv": adv.T, "mask": mask.T,
                 "batch_steps": jnp.full(mask.shape[1], n_steps)}
        return batch, weight.T, jnp.any(mask, axis=0), metrics
    batch = {"obs": flat(rollout.obs), "action": flat(rollout.action),
             "logp": flat(rollout.logp), "adv": flat(adv)}
    return batch, flat(weight), flat(mask), metrics


def loss(config, policy, params, ref_params, chunk, weight, mask, hp):
    """Whole episodes (``config.by_episode``): ``episode_loss``. Per-step samples: the
    ``loss_type``'s policy term (clipped surrogate; ``"cispo"``, ``"sapo"``:
    ``losses.cispo_token_loss``, ``losses.sapo_token_loss``) on the steps the entropy mask
    keeps (``top_entropy_quantile``: the chunk's steps whose entropy is in that top share,
    ``losses.high_entropy_mask_of_quantile``) + beta * KL(pi || pi_ref) - ent_coef * entropy
    (on the same steps), weighted by ``weight`` (the ``loss_type`` aggregation)."""
    if config.by_episode:
        return episode_loss(config, policy, params, ref_params, chunk, weight, mask, hp)
    dist = policy.dist(params, chunk["obs"])
    logp = dist.log_prob(chunk["action"])
    entropy = dist.entropy()
    # beta = 0 (the default) multiplies the KL by 0: skip the reference forward pass (under a
    # vmap over beta the cond becomes a select and both branches run, as before)
    ref_logp_fn = lambda: jax.lax.cond(
        hp["beta"] > 0,
        lambda: jax.lax.stop_gradient(policy.dist(ref_params, chunk["obs"]).log_prob(chunk["action"])),
        lambda: jax.lax.stop_gradient(logp))
    ratio = jnp.exp(logp - chunk["logp"])
    per_token, pg, kl, _ = grpo_token_loss(
        ratio, chunk["adv"], logp, ref_logp_fn, hp["beta"], hp["clip_eps"],
        hp["clip_eps_high"], kl_estimator=config.kl_estimator)
    del per_token
    extra = {}
    if config.loss_type == "cispo":
        pg = cispo_token_loss(ratio, chunk["adv"], logp, hp["clip_eps_high"])
        extra["cispo_clip_ratio"] = (ratio > hp["clip_eps_high"]) & (chunk["adv"] > 0)
    elif config.loss_type == "sapo":
        pg = sapo_token_loss(ratio, chunk["adv"], hp["sapo_temperature_pos"],
                             hp["sapo_temperature_neg"])
    # 1.0 on every step when top_entropy_quantile is 1 (the products are then exact)
    keep = high_entropy_mask_of_quantile(entropy, mask, hp["top_entropy_quantile"])
    keep = keep.astype(entropy.dtype)
    per_sample = pg * keep + hp["beta"] * kl - hp["ent_coef"] * (entropy * keep)
    m = mask.astype(jnp.float32)
    log_ratio = logp - chunk["logp"]
    s = lambda x: jnp.sum(x * m)
    aux = {"count": jnp.sum(m), "loss": s(per_sample), "pg_loss": s(pg), "kl": s(kl),
           "entropy": s(entropy),
           **clip_ratios(jnp.exp(log_ratio), chunk["adv"], hp["clip_eps"], hp["clip_eps_high"],
                         None, s),
           "approx_kl": s(jnp.expm1(log_ratio) - log_ratio),
           **{k: s(v.astype(jnp.float32)) for k, v in extra.items()}}
    return jnp.sum(weight * per_sample * m), aux


def episode_loss(config, policy, params, ref_params, chunk, weight, mask, hp):
    """The loss of a chunk of B whole episodes of T steps (``chunk`` of [B, T, ...],
    ``weight`` [B, T], ``mask`` [B] the episodes of the current minibatch): the policy's
    log-probs and entropies of every step, then ``losses.minibatch_policy_loss``, the text
    path's loss with its episodes for sequences (every loss type and option of
    ``policy_loss``)."""
    B, T = chunk["mask"].shape
    flat = lambda x: x.reshape(B * T, *x.shape[2:])
    dist = policy.dist(params, flat(chunk["obs"]))
    logp = dist.log_prob(flat(chunk["action"])).reshape(B, T)
    entropy = dist.entropy().reshape(B, T)
    ref_logp = jax.lax.cond(
        hp["beta"] > 0,
        lambda: jax.lax.stop_gradient(policy.dist(ref_params, flat(chunk["obs"])).log_prob(
            flat(chunk["action"])).reshape(B, T)),
        lambda: jax.lax.stop_gradient(logp))
    m = chunk["mask"] & mask[:, None]
    return minibatch_policy_loss(config, hp, logp, entropy, ref_logp, chunk["logp"],
                                 chunk["adv"], m, weight, chunk["batch_steps"][0], max_len=T)


def chunk_size(config) -> int:
    """Samples per chunk of the learn phase: ``chunk_size`` steps; whole episodes
    (``by_episode``): ``chunk_size // max_episode_steps`` episodes, at least one (a chunk then
    evaluates every step of the time limit: one episode of T steps when ``chunk_size`` < T);
    the stream collector: a minibatch."""
    if not config.on_policy:
        return config.num_envs * config.num_steps // config.num_minibatches
    if config.by_episode:
        return max(1, config.chunk_size // config.max_episode_steps)
    return config.chunk_size


GRPO = Algorithm(make_env=gymnax_env, make_policy=gymnax_policy(with_critic=False),
                 optimizer=adam, init_carry=init_carry, collect=collect, score=score, loss=loss,
                 learn=minibatch_learn(chunk_size, all_valid=lambda c: not c.on_policy),
                 reference=True, budgeted=lambda config: config.on_policy)
