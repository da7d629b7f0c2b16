"""The interface of an algorithm in ``make_train``'s table, and the pieces algorithms share.

An iteration of every algorithm is collect -> score -> learn (-> reference sync), and an
algorithm is the set of functions below (``Algorithm``), one module each: ``grpo`` (gymnax
envs: episode, batch and state groups), ``ppo``, ``text.grpo`` and ``text.sft``. ``make_train``
(``jaxgrpo.train``) looks the config's algorithm up in its table and runs these functions; it
knows nothing else about any algorithm. Adding one is a module that builds an ``Algorithm``
and one entry in ``train.ALGORITHMS`` (see docs/configs.md).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import update
from .envs import action_spec, make_env, obs_shape
from .networks import Policy


class Algorithm(NamedTuple):
    """What ``make_train`` needs of an algorithm. With ``config`` the frozen config, ``hp`` the
    dynamic hyperparameters (dict of float32 scalars) and ``env`` what ``make_env`` returns:

    - ``make_env(config) -> env``: the environment (gymnax ``(env, env_params)``, a text task).
    - ``make_policy(config, env) -> policy``: has ``init(key) -> params``.
    - ``optimizer(config, hp, num_iterations) -> optax transformation``.
    - ``init_carry(config, env, policy, params, key) -> carry``: what the envs carry from one
      iteration to the next (``TrainState.env_carry``; None when nothing).
    - ``collect(config, env, policy, params, key, carry, active, hp) -> (rollout, stats,
      carry)``: one iteration's samples, ``rollout`` in whatever form ``score`` takes,
      ``stats`` a ``rollout.EpisodeStats``; with ``active`` False (a run past its budget)
      nothing is simulated and every mask is False.
    - ``score(config, policy, params, rollout, hp) -> (batch, weight, mask, metrics)``: the
      samples to learn from (pytree of ``[C, ...]``), their loss weights ``[C, ...]`` and
      validity ``[C]`` as ``update.learn`` takes them (an algorithm with its own ``learn``
      may pass None), and scoring metrics (scalars).
    - ``loss(config, policy, params, ref_params, chunk, weight, mask, hp) -> (loss, aux)``:
      for ``update.learn``, the weighted loss of a chunk of the batch and metric sums with a
      ``"count"``; for an algorithm's own ``learn``, whatever that takes (SFT: the mean loss
      and its metrics).
    - ``learn(config, loss_fn, params, opt_state, optimizer, batch, weight, mask, key) ->
      (params, opt_state, metrics)``, ``loss_fn(params, chunk, weight, mask)``; its metrics
      override the ``EpisodeStats`` ones of the same name (SFT's ``episode_return`` is its
      accuracy).
    - ``reference``: keeps a reference policy (GRPO's KL anchor, synced every
      ``ref_sync_every`` iterations); ``budgeted`` (a bool, or a function of the config):
      iterations run while fewer than ``total_timesteps`` steps were used (GRPO collecting
      on-policy, whose iterations vary in length); otherwise every one of
      ``config.iterations`` runs. ``keys``: the keys split from the run's key at
      init and at every iteration (3: next key, collect, learn; 2: no learn key).
    """

    make_env: Callable[..., Any]
    make_policy: Callable[..., Any]
    optimizer: Callable[..., Any]
    init_carry: Callable[..., Any]
    collect: Callable[..., Any]
    score: Callable[..., Any]
    loss: Callable[..., Any]
    learn: Callable[..., Any]
    reference: bool = False
    budgeted: bool | Callable[..., bool] = False
    keys: int = 3


def gymnax_env(config):
    """``make_env`` of the gymnax algorithms: ``(env, env_params)``."""
    return make_env(config)


def gymnax_policy(with_critic: bool):
    """``make_policy`` of the gymnax algorithms: a ``networks.Policy`` for the env's action
    and observation spaces, with a critic head or not."""
    def make_policy(config, env):
        env, env_params = env
        return Policy(config, action_spec(env, env_params), obs_shape(env, env_params),
                      with_critic=with_critic)
    return make_policy


def no_carry(config, env, policy, params, key=None):
    """``init_carry`` of algorithms whose envs carry nothing between iterations."""
    return None


def adam(config, hp, num_iterations, lr=None):
    """Adam after gradient clipping (``update.clipped_adam``, eps 1e-5 as in PureJaxRL) at
    ``lr`` (default ``hp["lr"]``; may be a schedule), with the config's warmup if it has one."""
    return update.clipped_adam(hp["lr"] if lr is None else lr, hp["max_grad_norm"],
                               getattr(config, "warmup_steps", 0), eps=1e-5)


def minibatch_learn(chunk_size: Callable[..., int], all_valid=False):
    """``learn`` of the policy-gradient algorithms: ``update_epochs`` x ``num_minibatches``
    steps of ``update.learn`` in chunks of ``chunk_size(config)`` samples; ``all_valid``
    (a bool, or a function of the config) takes its fixed-size path."""
    def learn(config, loss_fn, params, opt_state, optimizer, batch, weight, mask, key):
        dense = all_valid(config) if callable(all_valid) else all_valid
        return update.learn(loss_fn, params, opt_state, optimizer, batch, weight, mask, key,
                            epochs=config.update_epochs, num_minibatches=config.num_minibatches,
                            chunk=chunk_size(config), all_valid=dense)
    return learn


def sync_reference(config, iteration, params, ref_params, hp):
    """The reference policy after an update: every ``ref_sync_every``-th iteration (0: never)
    it moves to ``alpha * params + (1 - alpha) * ref`` (``ref_mixup_alpha``, TRL's names);
    with LoRA adapters only the reference's adapters (``reference_params``) move."""
    if config.ref_sync_every <= 0:
        return ref_params
    a = jnp.where((iteration + 1) % config.ref_sync_every == 0, hp["ref_mixup_alpha"], 0.0)
    if has_adapters(params):
        params = {"lora": params["lora"]}
    return jax.tree.map(lambda p, r: a * p + (1.0 - a) * r, params, ref_params)


# ----------------------------------------------------------------------------- LoRA adapters
# A text model's params with a "lora" entry train only their adapters: the base weights get no
# gradient (``freeze_base``) and no optimizer state (``adapters_only``), and the reference
# policy is the base with adapters of its own (``reference_params``: zeros, i.e. the adapters
# off, moved by ``sync_reference``), so the base weights are held once.

def has_adapters(params) -> bool:
    """Whether ``params`` are a text model's with LoRA adapters (a ``"lora"`` entry)."""
    return isinstance(params, dict) and "lora" in params


def with_adapters(policy, params, key):
    """``params`` with fresh LoRA adapters (``policy.init_lora(key)``) when the policy's model
    has ``lora_rank`` > 0 and they have none (a pretrained or SFT model's weights); else as
    they are."""
    rank = getattr(getattr(policy, "cfg", None), "lora_rank", 0)
    if rank > 0 and not has_adapters(params):
        return {**params, "lora": policy.init_lora(key)}
    return params


def reference_params(params):
    """The reference policy kept in ``TrainState.ref_params``: a copy of ``params``, or, with
    adapters, only zero adapters (the base model with the adapters off; the loss completes it
    with the base weights, ``reference_of``)."""
    if has_adapters(params):
        return {"lora": jax.tree.map(jnp.zeros_like, params["lora"])}
    return params


def reference_of(params, ref_params):
    """The full reference params from the current ``params`` and ``ref_params``
    (``reference_params``): the base weights are shared."""
    return {**params, **ref_params} if has_adapters(params) else ref_params


def freeze_base(params):
    """``params`` with ``stop_gradient`` on everything but the adapters (no weight gradient
    is computed for the frozen base); unchanged without adapters."""
    if not has_adapters(params):
        return params
    return {k: v if k == "lora" else jax.lax.stop_gradient(v) for k, v in params.items()}


def adapters_only(optimizer):
    """``optimizer`` applied to the ``"lora"`` entry of the params alone: its state holds the
    adapters' moments only, and the base weights' updates are zeros."""
    import optax

    def init(params):
        return optimizer.init(params["lora"])

    def update(grads, state, params=None):
        updates, state = optimizer.update(grads["lora"], state,
                                          None if params is None else params["lora"])
        zeros = {k: jax.tree.map(jnp.zeros_like, v) for k, v in grads.items() if k != "lora"}
        return {**zeros, "lora": updates}, state

    return optax.GradientTransformation(init, update)
