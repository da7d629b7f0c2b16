"""Evaluation helpers for text tasks."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..stats import bootstrap_ci
from .grpo import make_policy, score_completions
from .rewardfns import RewardFns
from .interface import prompt_valid


def _value(x):
    """NumPy value of x, or None if x is traced."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def pass_at_k(n, c, k):
    """Unbiased pass@k (Chen et al. 2021): the chance that at least one of k samples, drawn without
    replacement from n of which c are correct, is correct; ``1 - C(n-c, k) / C(n, k)``.

    Computed in the stable product form ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``; 1.0 where
    ``n - c < k``. ``n``, ``c``, ``k`` are ints or arrays that broadcast together (e.g. ``c``
    [problems] with scalar ``n`` and ``k``); the result has their broadcast shape, float64 NumPy
    for NumPy/Python inputs and float32 JAX when any input is a JAX array. ``c`` and ``k`` may be
    traced under jit; ``n`` must be concrete (it sizes the product). Concrete inputs must satisfy
    0 <= c <= n and 1 <= k <= n (ValueError otherwise).
    """
    use_jax = any(isinstance(x, jax.Array) for x in (n, c, k))
    n_val, c_val, k_val = _value(n), _value(c), _value(k)
    if n_val is None:
        raise TypeError("pass_at_k: n must be concrete (a Python int or array), not traced")
    if k_val is not None and (np.any(k_val < 1) or np.any(k_val > n_val)):
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n_val}, k={k_val}")
    if c_val is not None and (np.any(c_val < 0) or np.any(c_val > n_val)):
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n_val}, c={c_val}")
    xp, dtype = (jnp, jnp.float32) if use_jax else (np, np.float64)
    n, c, k = (x.astype(dtype) for x in xp.broadcast_arrays(*map(xp.asarray, (n, c, k))))
    j = xp.arange(int(n_val.max()), dtype=dtype)
    i = xp.maximum(n[..., None] - j, 1.0)         # n, n-1, ..., n-c+1 where j < c
    terms = xp.where(j < c[..., None], 1.0 - k[..., None] / i, 1.0)
    return xp.where(n - c < k, 1.0, 1.0 - xp.prod(terms, axis=-1)).astype(dtype)


def heldout_prompts(task, num_prompts: int, seed: int = 0):
    """``num_prompts`` evaluation prompts (a batched ``Prompt``): from ``task.sample_heldout``
    where the task has a held-out split (a dataset), else from ``task.sample`` with a key stream
    no training run uses (``fold_in(key(seed), 0x5EED)``; training draws its prompts from splits
    of ``key(base_seed)``). Sampled prompts are random, so a held-out prompt can coincide with one
    seen in training when the task has few distinct prompts (3-digit addition has 10**6)."""
    key = jax.random.fold_in(jax.random.key(seed), 0x5EED)
    sample = task.sample if task.sample_heldout is None else task.sample_heldout
    return jax.vmap(sample)(jax.random.split(key, num_prompts))


def completion_scores(model, task, params, prompts, key, num_samples: int,
                      temperature=1.0, greedy=False, rewards=None):
    """Generate ``num_samples`` completions of every prompt and verify them: -> (completion
    int32 [B, num_samples, M], reward float32 [B, num_samples]). Jittable (``num_samples``,
    ``greedy`` static). ``rewards``: a run's Python reward functions
    (``rewardfns.RewardFns``), which then score instead of ``task.verify`` (NaN: unscorable)."""
    B = prompts.tokens.shape[0]
    rep = jax.tree.map(lambda x: jnp.repeat(x, num_samples, axis=0), prompts)
    completion, _, length = model.generate(params, key, rep.tokens,
                                           prompt_valid(rep.tokens, rep.length),
                                           task.max_new_tokens, temperature=temperature,
                                           eos_id=task.eos_id, greedy=greedy)
    reward, _ = score_completions(task, rewards, rep, completion, length)
    return (completion.reshape(B, num_samples, -1),
            reward.reshape(B, num_samples).astype(jnp.float32))


def evaluate_text(config, params, *, num_prompts: int = 512, num_samples: int = 64,
                  seed: int = 0, temperature=None, examples: int = 4) -> dict:
    """Held-out evaluation of a text policy (``params`` with a leading seed axis [S, ...]):
    greedy accuracy, and pass@k for k = 1, 2, 4, ..., ``num_samples`` from ``num_samples``
    sampled completions per prompt (at ``temperature``, default the config's) with the unbiased
    estimator (none with ``num_samples=0``); a completion is correct when its reward is >= 1:
    the task's verifier's, or the combined reward of the config's ``reward_funcs`` when it has
    them. Seeds run one after another (``lax.map``). Returns ``{"greedy_accuracy":
    {"per_seed", "mean", "ci95"}, "pass_at_k": {k: {"per_seed", "mean", "ci95"}},
    "examples": [{"prompt", "completion", "reward"}] (seed 0's greedy completions)}``."""
    task, model = config.task, make_policy(config)
    rewards = RewardFns.of(config, task)      # None: the task's in-graph verifier
    temp = getattr(config, "temperature", 1.0) if temperature is None else temperature
    prompts = heldout_prompts(task, num_prompts, seed)
    key = jax.random.fold_in(jax.random.key(seed), 1)

    def one(p):
        g_comp, g_rew = completion_scores(model, task, p, prompts, key, 1, greedy=True,
                                          rewards=rewards)
        if num_samples == 0:
            return g_comp[:, 0], g_rew[:, 0], jnp.zeros(num_prompts, jnp.int32)
        _, s_rew = completion_scores(model, task, p, prompts, key, num_samples, temp,
                                     rewards=rewards)
        return g_comp[:, 0], g_rew[:, 0], jnp.sum(s_rew >= 1.0, axis=1)

    comp, greedy, correct = jax.jit(lambda ps: jax.lax.map(one, ps))(params)
    comp, greedy, correct = map(np.asarray, (comp, greedy, correct))

    def summary(per_seed):
        m, lo, hi = bootstrap_ci(np.asarray(per_seed, np.float64))
        return {"per_seed": [float(x) for x in per_seed], "mean": m, "ci95": [lo, hi]}

    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= num_samples]
    if num_samples and num_samples not in ks:
        ks.append(num_samples)
    out = {"num_prompts": num_prompts, "num_samples": num_samples, "temperature": float(temp),
           "seed": seed, "greedy_accuracy": summary((greedy >= 1.0).mean(1)),
           "pass_at_k": {k: summary(pass_at_k(num_samples, correct, k).mean(1)) for k in ks}}
    tok = task.tokenizer
    out["examples"] = [{"prompt": tok.decode(np.asarray(prompts.tokens[i])),
                        "completion": tok.decode(comp[0, i]), "reward": float(greedy[0, i])}
                       for i in range(min(examples, num_prompts))]
    return out
