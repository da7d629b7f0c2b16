"""The interface of a verifiable text task for language-model GRPO: a prompt sampler and a
reward function, both pure JAX (jittable, vmappable), and the helpers every task uses.

A ``TextTask`` is ``(name, tokenizer, prompt_len, max_new_tokens, sample, verify)``:

* ``sample(key) -> Prompt``: ``tokens`` int32 [prompt_len], left-padded with PAD and starting
  with BOS, so the last position holds the last prompt token; ``length`` int32 [] (non-pad
  tokens, BOS included); ``answer`` int32 [A], the answer tokens padded with PAD; ``answer_len``
  int32 []; ``index`` int32 [] or None: the prompt's row in the task's dataset (``task.data``),
  which Python reward functions read the row's columns by (None for generated tasks).
* ``verify(prompt, completion, length) -> reward`` float32 []: ``completion`` int32 [M] (any
  static M, normally ``max_new_tokens``); ``length`` int32 [] is the number of completion tokens
  before the first EOS, M if there is none (``completion_length``).

``jax.vmap(task.sample)(keys)`` gives a batch of prompts; ``jax.vmap(task.verify)`` scores a batch.
The built-in tasks all use ``exact_match``: 1.0 when the completion is exactly the answer tokens
followed by EOS (tokens after the EOS are ignored; a truncated completion, without EOS, gets 0),
else 0.0. A PAD or BOS inside the completion is a wrong token, not skipped.
``data`` (optional): the host-side rows of a dataset task (``jaxgrpo.text.datasets.Records``),
whose columns Python reward functions (``jaxgrpo.text.rewardfns``) receive.
``sample_heldout(key) -> Prompt`` (optional) draws evaluation prompts kept apart from training
ones (a dataset's held-out split); without it evaluation draws from ``sample`` with its own keys.
``max_new_tokens`` defaults to the answer's width plus one (room for the longest answer and its
EOS); change it with ``task._replace(max_new_tokens=...)``. A task is static: close over it or
pass it as a static argument (its fields are functions, not arrays). A task whose alphabet goes
beyond ``TOKENIZER`` gets an extended tokenizer, so size a model by ``task.tokenizer.vocab_size``.

A user-defined task is just a ``TextTask``; for example, echo one digit::

    from jaxgrpo.text import TOKENIZER, Prompt, TextTask, exact_match
    DIGITS = jnp.asarray(TOKENIZER.encode("0123456789"))

    def sample(key):
        d = DIGITS[jax.random.randint(key, (), 0, 10)]
        tokens = jnp.concatenate([TOKENIZER.encode("echo:", bos=True), d[None],
                                  TOKENIZER.encode("=")])
        return Prompt(tokens, jnp.int32(tokens.shape[0]), d[None], jnp.int32(1))

    echo = TextTask("echo", TOKENIZER, 8, 2, sample, exact_match)

``reference_completion(prompt, max_new_tokens)`` (or ``task.reference_completion(prompt)``) is the
answer followed by EOS, the target for supervised warm starts; it assumes, as the built-ins do,
that ``prompt.answer`` holds the tokens to generate.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .tokenizer import EOS, PAD, CharTokenizer


class Prompt(NamedTuple):
    """One prompt (a pytree; batched under vmap, with a leading batch axis on every field)."""
    tokens: jax.Array      # int32 [prompt_len], left-padded with PAD, BOS first
    length: jax.Array      # int32 [], non-pad tokens
    answer: jax.Array      # int32 [A], answer tokens padded with PAD
    answer_len: jax.Array  # int32 []
    index: jax.Array | None = None   # int32 []: the row in task.data (dataset tasks), else None


class TextTask(NamedTuple):
    """A task; hashable, so it can be a static argument or closed over by a jitted function."""
    name: str
    tokenizer: CharTokenizer
    prompt_len: int
    max_new_tokens: int
    sample: Callable[[jax.Array], Prompt]
    verify: Callable[[Prompt, jax.Array, jax.Array], jax.Array]
    sample_heldout: Callable[[jax.Array], Prompt] | None = None  # held-out prompts, if apart
    data: Any = None       # host-side rows (datasets.Records) for Python reward functions

    def reference_completion(self, prompt: Prompt, max_new_tokens: int | None = None):
        """int32 [max_new_tokens] (default ``self.max_new_tokens``): the answer, EOS, PAD
        (the tokenizer's first EOS id)."""
        eos = eos_ids(self.tokenizer)[0]
        return reference_completion(prompt, self.max_new_tokens if max_new_tokens is None
                                    else max_new_tokens, eos)

    @property
    def eos_id(self):
        """What ``Transformer.generate`` takes as ``eos_id``: the tokenizer's EOS id, or a
        tuple of them (a pretrained model may end a completion at any of several)."""
        ids = eos_ids(self.tokenizer)
        return ids[0] if len(ids) == 1 else ids


# ----------------------------------------------------------------------------- tokens

def eos_ids(tokenizer) -> tuple:
    """The ids that end a completion: a pretrained tokenizer's ``eos_token_ids``, else EOS."""
    return tuple(int(i) for i in getattr(tokenizer, "eos_token_ids", (EOS,)))


def prompt_valid(tokens, length):
    """The real tokens of left-padded prompts: tokens int [..., P], length int [...] -> bool
    [..., P], the last ``length`` positions. (Not ``tokens != PAD``: a pretrained tokenizer's
    pad id may be a real token of its prompts, as Llama 3's ``<|eot_id|>`` is.)"""
    P = tokens.shape[-1]
    return jnp.arange(P) >= P - jnp.asarray(length)[..., None]


# ----------------------------------------------------------------------------- completions

def completion_length(completion, eos_id=EOS):
    """int tokens [..., M] -> int32 [...]: the index of the first EOS, M where there is none;
    ``eos_id`` an int or a tuple of ids (any of them ends the completion)."""
    is_eos = jnp.isin(completion, jnp.asarray(eos_id)) if isinstance(eos_id, tuple) else (
        completion == eos_id)
    return jnp.where(is_eos.any(-1), jnp.argmax(is_eos, -1), completion.shape[-1]).astype(jnp.int32)


def reference_completion(prompt: Prompt, max_new_tokens: int, eos_id: int = EOS):
    """Prompt (unbatched) -> int32 [max_new_tokens]: answer tokens, ``eos_id``, then PAD (the
    EOS or the answer's tail is cut off if max_new_tokens is too small)."""
    i = jnp.arange(max_new_tokens)
    answer = jnp.pad(prompt.answer, (0, max(0, max_new_tokens - prompt.answer.shape[0])),
                     constant_values=PAD)[:max_new_tokens]
    out = jnp.where(i < prompt.answer_len, answer, jnp.where(i == prompt.answer_len, eos_id, PAD))
    return out.astype(jnp.int32)


def exact_match(prompt: Prompt, completion, length, eos_id=EOS):
    """float32 []: 1.0 when ``completion`` [M] is ``prompt.answer[:answer_len]`` then EOS at
    position ``length``; 0.0 otherwise (including truncated completions, length == M).
    ``eos_id``: the EOS id, or a tuple of ids any of which ends a completion (a pretrained
    tokenizer's; a dataset task binds its tokenizer's)."""
    m, a = completion.shape[-1], prompt.answer.shape[-1]
    w = min(m, a)
    same = (completion[:w] == prompt.answer[:w]) | (jnp.arange(w) >= prompt.answer_len)
    end = completion[jnp.clip(length, 0, m - 1)]
    is_eos = jnp.isin(end, jnp.asarray(eos_id)) if isinstance(eos_id, tuple) else end == eos_id
    ended = (length < m) & is_eos
    return (same.all() & ended & (length == prompt.answer_len)).astype(jnp.float32)
