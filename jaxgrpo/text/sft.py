"""Supervised warm start for text tasks: next-token cross-entropy on task samples, compiled.

``SFT`` is its entry in ``make_train``'s table (``jaxgrpo.algorithm.Algorithm``), so
``make_train(SFTConfig)`` has the interface of every run (``train(key, hparams)``,
``train.init``, ``train.run``), and run folders, checkpoints, resume, seeds and sweeps serve SFT
runs unchanged; ``jaxgrpo.sft(config, out)`` (``jaxgrpo sft`` on the command line) trains one
into a run folder, from which GRPO starts with ``GRPOConfig(init_from=out)``.

One iteration is one optimizer step on ``batch_size`` fresh prompts: the target is each
prompt's ``reference_completion`` (answer, EOS), learned by teacher forcing in one causal
forward pass over prompt + target.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ..algorithm import Algorithm, freeze_base, no_carry
from ..rollout import EpisodeStats
from ..update import clipped_adam
from .grpo import make_env, make_policy, token_mask
from .interface import completion_length, prompt_valid
from .tokenizer import EOS


def sft_loss(model, params, prompts, targets, eos_id=EOS):
    """Teacher-forced cross-entropy: prompts ``Prompt`` [B] (left-padded), targets int [B, M]
    (answer, EOS, PAD) -> (mean token cross-entropy over the target tokens up to and including
    EOS, metrics: ``token_accuracy`` (argmax = target), ``accuracy`` (every target token is the
    argmax: the completions greedy decoding gets exactly right))."""
    B, P = prompts.tokens.shape
    M = targets.shape[1]
    tokens = jnp.concatenate([prompts.tokens, targets], 1)
    valid = jnp.concatenate([prompt_valid(prompts.tokens, prompts.length),
                             jnp.ones((B, M), bool)], 1)
    logits = model.forward(params, tokens, valid)[:, P - 1:P + M - 1]          # [B, M, V]
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    mask = token_mask(completion_length(targets, eos_id), M)
    n = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)
    correct = jnp.argmax(logits, -1) == targets
    metrics = {"token_accuracy": jnp.sum(correct & mask) / n,
               "accuracy": jnp.mean(jnp.all(correct | ~mask, axis=1).astype(jnp.float32))}
    return -jnp.sum(jnp.where(mask, logp, 0.0)) / n, metrics


def collect(config, task, model, params, key, carry, active, hp):
    """``batch_size`` fresh prompts and their reference completions (answer, EOS, PAD)
    -> ({"prompts", "targets"}, EpisodeStats: one episode per prompt, its length the target's
    tokens), carry."""
    M = task.max_new_tokens
    prompts = jax.vmap(task.sample)(jax.random.split(key, config.batch_size))
    targets = jax.vmap(lambda p: task.reference_completion(p, M))(prompts)
    n = jnp.float32(config.batch_size)
    lengths = jnp.sum(token_mask(completion_length(targets, task.eos_id), M), 1).astype(jnp.float32)
    stats = EpisodeStats(return_sum=jnp.float32(0), length_sum=jnp.sum(lengths), count=n,
                         valid_steps=n, sim_steps=n)
    return {"prompts": prompts, "targets": targets}, stats, carry


def score(config, model, params, batch, hp):
    """Teacher forcing scores nothing: the batch as it is (all rows valid)."""
    return batch, None, None, {}


def loss(config, model, params, ref_params, batch, weight, mask, hp):
    """``sft_loss`` of the batch (with LoRA adapters, of the adapters only)."""
    return sft_loss(model, freeze_base(params), batch["prompts"], batch["targets"],
                    config.task.eos_id)


def learn(config, loss_fn, params, opt_state, optimizer, batch, weight, mask, key=None):
    """One optimizer step on the whole batch's loss; metrics ``loss``, ``token_accuracy``,
    ``accuracy``, and ``episode_return`` = accuracy."""
    (loss, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, weight, mask)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state,
            {"loss": loss, **m, "episode_return": m["accuracy"]})


def optimizer(config, hp, num_iterations):
    """Adam (eps 1e-8) after gradient clipping, with the config's warmup."""
    return clipped_adam(hp["lr"], hp["max_grad_norm"], config.warmup_steps)


# an iteration is one step on one batch: no env carry, no reference, no budget, no learn key
SFT = Algorithm(make_env=make_env, make_policy=make_policy, optimizer=optimizer,
                init_carry=no_carry, collect=collect, score=score, loss=loss, learn=learn,
                keys=2)
