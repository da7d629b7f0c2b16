"""Supervised warm start for text tasks: next-token cross-entropy on task samples, compiled.

``make_train(SFTConfig)`` has ``jaxgrpo.make_train``'s interface (``train(key, hparams)``,
``train.init``, ``train.run``), so run folders, checkpoints, resume, seeds and sweeps serve SFT
runs unchanged; ``sft(config, out)`` (``jaxgrpo sft`` on the command line) trains one into a
run folder, from which GRPO starts with ``GRPOConfig(init_from=out)``.

One iteration is one optimizer step on ``batch_size`` fresh prompts: the target is each
prompt's ``reference_completion`` (answer, EOS), learned by teacher forcing in one causal
forward pass over prompt + target.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from .grpo import token_mask
from .model import Transformer
from .tasks import completion_length
from .tokenizer import PAD


def sft_loss(model, params, prompts, targets):
    """Teacher-forced cross-entropy: prompts ``Prompt`` [B] (left-padded), targets int [B, M]
    (answer, EOS, PAD) -> (mean token cross-entropy over the target tokens up to and including
    EOS, metrics: ``token_accuracy`` (argmax = target), ``accuracy`` (every target token is the
    argmax: the completions greedy decoding gets exactly right))."""
    B, P = prompts.tokens.shape
    M = targets.shape[1]
    tokens = jnp.concatenate([prompts.tokens, targets], 1)
    valid = jnp.concatenate([prompts.tokens != PAD, jnp.ones((B, M), bool)], 1)
    logits = model.forward(params, tokens, valid)[:, P - 1:P + M - 1]          # [B, M, V]
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    mask = token_mask(completion_length(targets), M)
    n = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)
    correct = jnp.argmax(logits, -1) == targets
    metrics = {"token_accuracy": jnp.sum(correct & mask) / n,
               "accuracy": jnp.mean(jnp.all(correct | ~mask, axis=1).astype(jnp.float32))}
    return -jnp.sum(jnp.where(mask, logp, 0.0)) / n, metrics


def make_train(config, callback=None, callback_every=1):
    """The training function of an ``SFTConfig``: ``train(key, hparams=None) -> (TrainState,
    metrics)``, metrics ``[num_steps]`` each (``loss``, ``token_accuracy``, ``accuracy``,
    ``episode_return`` = accuracy, ``episode_length`` = mean target tokens, ``episodes`` = prompts
    per step, ``env_steps`` = prompts so far); see ``jaxgrpo.make_train``."""
    from ..train import (TrainState, clipped_adam, resolve_hparams, scan_iterations,
                         train_function)

    task = config.task
    model = Transformer(config.model_config())
    M = task.max_new_tokens
    n_iter = config.iterations

    def optimizer(hp):
        return clipped_adam(hp["lr"], hp["max_grad_norm"], config.warmup_steps)

    from ..runs import init_params
    start_params = init_params(config)      # None, or the params of config.init_from

    def init(key, hp) -> TrainState:
        key, k_init = jax.random.split(key)
        params = (model.init(k_init) if start_params is None
                  else jax.tree.map(jnp.asarray, start_params))
        return TrainState(params, optimizer(hp).init(params), None, key, jnp.int32(0),
                          jnp.float32(0), None)

    def iteration(state, hp):
        key, k_batch = jax.random.split(state.key)
        prompts = jax.vmap(task.sample)(jax.random.split(k_batch, config.batch_size))
        targets = jax.vmap(lambda p: task.reference_completion(p, M))(prompts)
        (loss, m), grads = jax.value_and_grad(
            lambda p: sft_loss(model, p, prompts, targets), has_aux=True)(state.params)
        updates, opt_state = optimizer(hp).update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        env_steps = state.env_steps + config.batch_size
        metrics = {"loss": loss, **m, "episode_return": m["accuracy"],
                   "episode_length": jnp.mean(jnp.sum(token_mask(completion_length(targets), M),
                                                      1).astype(jnp.float32)),
                   "episodes": jnp.float32(config.batch_size), "env_steps": env_steps}
        return TrainState(params, opt_state, None, key, state.iteration + 1, env_steps,
                          None), metrics

    def init_state(key, hparams=None) -> TrainState:
        return init(key, resolve_hparams(config, hparams))

    def run(state, hparams=None, num_iterations=n_iter):
        hp = resolve_hparams(config, hparams)
        return scan_iterations(lambda s: iteration(s, hp), state, num_iterations, callback,
                               callback_every)

    return train_function(init_state, run, optimizer, model, n_iter)


def sft(config, out, *, seeds: int = 1, base_seed: int = 0, **kwargs) -> dict:
    """Train ``config`` (an ``SFTConfig``) into the run folder ``out`` (``jaxgrpo.run_training``,
    whose keyword arguments it takes: progress, checkpoint_every, resume, ...). Returns the
    summary dict; the policy is then ``GRPOConfig(init_from=out)``'s starting point."""
    from ..config import SFTConfig
    from ..runs import run_training
    if not isinstance(config, SFTConfig):
        raise TypeError(f"sft: needs an SFTConfig, got {type(config).__name__}")
    return run_training(config, out, seeds=seeds, base_seed=base_seed, **kwargs)
