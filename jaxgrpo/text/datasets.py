"""Text tasks from pre-generated datasets: ``from_reasoning_gym`` turns a reasoning-gym dataset
into a ``TextTask`` whose prompts and answers are arrays, sampled by index inside the compiled
loop and graded by exact match in the graph (no host round trip, no Python reward function).

Needs the optional extra: ``pip install 'jaxgrpo[text]'`` (the ``reasoning-gym`` package).
"""
from __future__ import annotations

import difflib
import functools

import jax
import jax.numpy as jnp
import numpy as np

from .interface import Prompt, TextTask, exact_match
from .tokenizer import BOS, PAD, TOKENIZER


def _expression(entry):
    return entry["metadata"]["expression"].replace(" ", "") + "="


# Compact prompts from each entry's metadata: (prompt text, answer text). reasoning-gym's
# questions are English sentences ("State the final answer to the following arithmetic problem:
# 4 - 1 - 7 =") that a character-level toy model would spend most of its context on; the
# metadata holds the problem itself. spell_backward is lower-cased: its scorer compares
# lower-cased strings, so the lower-case answer is the one exact match must accept.
COMPACT = {
    "basic_arithmetic": lambda e: (_expression(e), e["answer"]),
    "chain_sum": lambda e: (_expression(e), e["answer"]),
    "spell_backward": lambda e: ("backward:" + e["metadata"]["word"].lower() + "=",
                                 e["answer"].lower()),
}


def _import_reasoning_gym():
    try:
        import reasoning_gym
    except ImportError:
        raise ValueError("from_reasoning_gym needs the reasoning-gym package: "
                         "pip install 'jaxgrpo[text]'") from None
    return reasoning_gym


def reasoning_gym_entries(name: str, size: int, seed: int, **cfg) -> list[dict]:
    """The ``size`` entries of reasoning-gym's dataset ``name`` with ``seed`` and options ``cfg``
    (reasoning-gym's own config fields), as dicts with ``question``, ``answer``, ``metadata``."""
    rg = _import_reasoning_gym()
    from reasoning_gym.factory import DATASETS
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"reasoning_gym: unknown dataset {name!r}{hint}")
    try:
        return list(rg.create_dataset(name, size=size, seed=seed, **cfg))
    except TypeError as e:
        raise ValueError(f"reasoning_gym: {name} does not accept options {cfg}: {e}") from None
    except (AssertionError, ValueError) as e:
        raise ValueError(f"reasoning_gym: {name} options {cfg}: {e}") from None


@functools.lru_cache(maxsize=16)
def _cached(name, size, seed, heldout, cfg_items):
    return _build(name, size, seed, heldout, None, dict(cfg_items))


def from_reasoning_gym(name: str, size: int = 2000, seed: int = 0, *, heldout: float = 0.1,
                       prompt=None, **cfg) -> TextTask:
    """A ``TextTask`` over ``size`` entries of reasoning-gym's dataset ``name`` (generated with
    ``seed`` and reasoning-gym options ``cfg``, e.g. ``max_terms=3``).

    Prompts are ``prompt(entry) -> (prompt_text, answer_text)``; the default is a compact form
    built from the entry's metadata for ``basic_arithmetic`` and ``chain_sum`` (the expression
    without spaces and ``=``: ``4-1-7=`` -> ``-4``) and ``spell_backward`` (``backward:word=`` ->
    ``drow``), and the full question otherwise. The tokenizer is ``TOKENIZER`` extended with every
    character of the prompts and answers. The last ``heldout`` fraction of the entries (at least
    one) is kept out of training: ``task.sample`` draws a training entry uniformly by index,
    ``task.sample_heldout`` a held-out one (what ``jaxgrpo eval`` and ``evaluate_text`` use).
    The reward is ``exact_match``: the answer, then EOS. That is reasoning-gym's ``score_answer
    >= 1.0`` for these three datasets on every completion the tests try, except that chain_sum's
    scorer also accepts other spellings of the same number (``06``, ``+6``, ``6.0``), and
    spell_backward's scores some completions that extend the answer (``talps,``) at 1 + 1 ulp
    (a float sum of per-character credit); exact match counts both wrong.

    Also reachable as an env id: ``GRPOConfig(env="text:reasoning_gym", env_kwargs={"dataset":
    "chain_sum", "size": 2000, "max_terms": 3})`` (built once per set of options, then cached).
    """
    if prompt is not None:
        return _build(name, size, seed, heldout, prompt, cfg)
    try:
        items = tuple(sorted(cfg.items()))
        hash(items)
    except TypeError:
        return _build(name, size, seed, heldout, None, cfg)
    return _cached(name, size, seed, heldout, items)


def _build(name, size, seed, heldout, prompt, cfg):
    for option, value in (("size", size), ("seed", seed)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"reasoning_gym: {option} must be an integer, got {value!r}")
    if size < 2:
        raise ValueError(f"reasoning_gym: size must be >= 2 (training and held-out entries), "
                         f"got {size}")
    if not isinstance(heldout, (int, float)) or not 0 < heldout < 1:
        raise ValueError(f"reasoning_gym: heldout must be a fraction in (0, 1), got {heldout!r}")
    if prompt is None:
        prompt = COMPACT.get(name, lambda e: (e["question"], e["answer"]))
    entries = reasoning_gym_entries(name, int(size), int(seed), **cfg)
    pairs = [prompt(e) for e in entries]
    tok = TOKENIZER.extended("".join(dict.fromkeys("".join(p + a for p, a in pairs))))
    prompt_len = 1 + max(len(p) for p, _ in pairs)
    answer_width = max(1, max(len(a) for _, a in pairs))
    tokens = np.full((len(pairs), prompt_len), PAD, np.int32)
    answers = np.full((len(pairs), answer_width), PAD, np.int32)
    for i, (p, a) in enumerate(pairs):
        tokens[i, prompt_len - len(p) - 1:] = tok.encode(p, bos=True)
        answers[i, :len(a)] = tok.encode(a)
    lengths = (tokens != PAD).sum(1).astype(np.int32)
    answer_lens = (answers != PAD).sum(1).astype(np.int32)
    assert (tokens[:, -lengths.min()] != PAD).all() and (tokens == BOS).sum() == len(pairs)
    n_heldout = max(1, int(round(heldout * len(pairs))))
    if n_heldout >= len(pairs):
        raise ValueError(f"reasoning_gym: heldout={heldout} leaves no training entries of {size}")
    n_train = len(pairs) - n_heldout
    data = Prompt(jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(answers),
                  jnp.asarray(answer_lens))

    def at(i):
        return jax.tree.map(lambda x: x[i], data)

    def sample(key):
        return at(jax.random.randint(key, (), 0, n_train))

    def sample_heldout(key):
        return at(jax.random.randint(key, (), n_train, len(pairs)))

    return TextTask(f"reasoning_gym:{name}", tok, prompt_len, answer_width + 1, sample,
                    exact_match, sample_heldout)

