"""Policies (actor) and critics: flax MLPs, a small CNN torso for image observations.

Discrete actions: distrax Categorical. Continuous: diagonal Gaussian with a state-independent
log-std; samples are clipped to the action bounds by the env wrapper, log-probs are of the
unclipped sample.
"""
from __future__ import annotations

from typing import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .envs import ActionSpec

_ACT = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "silu": nn.silu, "elu": nn.elu}


def orthogonal(scale=1.0):
    """Orthogonal initializer, as ``flax.linen.initializers.orthogonal`` (Q of the QR of a normal
    matrix, signs fixed so R's diagonal is positive), computed by Gram-Schmidt in plain XLA ops.

    flax's version calls LAPACK's QR; vmapped over seeds inside a jitted train function on
    jaxlib 0.10.2's CPU backend, that batched custom call can deadlock waiting on the thread
    pool it runs in (seen on a 2-core machine). Gram-Schmidt (twice, for stability) gives the
    same matrix up to rounding without any custom call.
    """
    def init(key, shape, dtype=jnp.float32):
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        n, m = max(rows, cols), min(rows, cols)
        a = jax.random.normal(key, (n, m), jnp.float32)

        def column(j, q):
            v = q[:, j]
            for _ in range(2):                      # classical Gram-Schmidt, twice
                coef = (q.T @ v) * (jnp.arange(m) < j)
                v = v - q @ coef
            return q.at[:, j].set(v / jnp.linalg.norm(v))

        q = jax.lax.fori_loop(0, m, column, a)
        if rows < cols:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


class Torso(nn.Module):
    """obs: [B, *obs_shape] -> features [B, hidden_sizes[-1]]. Image obs ([H, W, C]) go through
    a small conv layer first; anything else is flattened."""

    hidden_sizes: Sequence[int]
    activation: str
    image: bool

    @nn.compact
    def __call__(self, obs):
        act = _ACT[self.activation]
        x = obs.astype(jnp.float32)
        if self.image:
            # A 3x3 VALID convolution with 16 channels, written as patches @ kernel: the same
            # function as nn.Conv, but XLA:CPU runs it ~7x faster inside while loops.
            H, W = x.shape[1] - 2, x.shape[2] - 2
            x = jnp.concatenate([x[:, i:i + H, j:j + W] for i in range(3) for j in range(3)], -1)
            x = nn.relu(nn.Dense(16, kernel_init=orthogonal(np.sqrt(2)))(x))
        x = x.reshape(x.shape[0], -1)
        for h in self.hidden_sizes:
            x = act(nn.Dense(h, kernel_init=orthogonal(np.sqrt(2)))(x))
        return x


class Actor(nn.Module):
    spec: ActionSpec
    hidden_sizes: Sequence[int]
    activation: str
    image: bool

    @nn.compact
    def __call__(self, obs):
        x = Torso(self.hidden_sizes, self.activation, self.image)(obs)
        out = nn.Dense(self.spec.n, kernel_init=orthogonal(0.01))(x)
        if self.spec.discrete:
            return out, None
        log_std = self.param("log_std", nn.initializers.zeros, (self.spec.n,))
        return out, log_std


class Critic(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str
    image: bool

    @nn.compact
    def __call__(self, obs):
        x = Torso(self.hidden_sizes, self.activation, self.image)(obs)
        return nn.Dense(1, kernel_init=orthogonal(1.0))(x)[:, 0]


class Policy:
    """The actor (and, for PPO, the critic) of a config, as pure functions of params.

    params: ``{"actor": ..., "critic": ...}`` (critic only when ``with_critic``).
    """

    def __init__(self, config, spec: ActionSpec, obs_shape: tuple, with_critic: bool):
        image = len(obs_shape) == 3
        self.spec, self.obs_shape, self.with_critic = spec, obs_shape, with_critic
        self.actor = Actor(spec, config.hidden_sizes, config.activation, image)
        self.critic = Critic(config.hidden_sizes, config.activation, image)

    def init(self, key):
        k1, k2 = jax.random.split(key)
        dummy = jnp.zeros((1, *self.obs_shape), jnp.float32)
        params = {"actor": self.actor.init(k1, dummy)}
        if self.with_critic:
            params["critic"] = self.critic.init(k2, dummy)
        return params

    def dist(self, params, obs):
        """obs: [B, *obs_shape] -> a batch-B distrax distribution over actions."""
        out, log_std = self.actor.apply(params["actor"], obs)
        if self.spec.discrete:
            return distrax.Categorical(logits=out)
        return distrax.MultivariateNormalDiag(out, jnp.exp(log_std) * jnp.ones_like(out))

    def noise(self, key, shape):
        """The randomness of ``prod(shape)`` action samples in one draw: ``[*shape, n]`` standard
        Gumbel (discrete) or standard normal (continuous) noise for ``sample``.

        Collectors draw a whole segment's noise before their loop: XLA:CPU lowers every
        threefry draw as a small rolled loop, so one draw per env step (plus the key splits)
        cost more than the rest of the step."""
        draw = jax.random.gumbel if self.spec.discrete else jax.random.normal
        return draw(key, (*shape, self.spec.n), jnp.float32)

    def sample(self, params, obs, noise):
        """obs: [B, *obs_shape], noise: [B, n] from ``noise`` -> (action, log-prob [B]).

        Discrete: ``argmax(logits + gumbel)`` (a sample of the categorical); continuous:
        ``mean + std * normal``; ``noise=None``: the mode (greedy). Actions: [B] int32 or
        [B, n] float32."""
        dist = self.dist(params, obs)
        if noise is None:
            action = dist.mode()
        elif self.spec.discrete:
            action = jnp.argmax(dist.logits + noise, axis=-1).astype(jnp.int32)
        else:
            action = dist.loc + dist.scale_diag * noise
        return action, dist.log_prob(action)

    def act(self, params, obs, key, greedy=False):
        """One action per observation: sampled with ``key``, or the mode when ``greedy``.
        obs: [B, *obs_shape] -> (action, log-prob [B])."""
        return self.sample(params, obs, None if greedy else self.noise(key, obs.shape[:1]))

    def value(self, params, obs):
        """obs: [B, *obs_shape] -> values [B]."""
        return self.critic.apply(params["critic"], obs)
