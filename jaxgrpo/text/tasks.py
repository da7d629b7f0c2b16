"""The built-in verifiable text tasks and ``make_task``; the task interface (``TextTask``,
``Prompt``, ``exact_match``) is ``jaxgrpo.text.interface``, tasks from datasets are
``jaxgrpo.text.datasets``.

Built-ins (``TASKS``; build one with ``make_task(name, **options)``), numbers written in decimal,
operands uniform over ``[0, 10**digits)``:

* ``addition(digits=3, reverse_answer=False, leading_zeros=True)``: ``123+456=`` -> ``0579``
  (``9750`` reversed); numbers at fixed width, ``007+045=0052``; without leading zeros
  (``leading_zeros=False``) ``7+45=`` -> ``52``.
* ``multiply(digits=2, leading_zeros=True)``: ``12*34=`` -> ``0408``.
* ``chain_sum(terms=3, digits=1)``: ``3+5+2=`` -> ``10`` (no leading zeros).
* ``sort(length=5)``: ``sort:31415=`` -> ``11345`` (digits, ascending).
* ``reverse(length=5, alphabet=a-z)``: ``reverse:abcde=`` -> ``edcba``.
* ``count(length=8, alphabet="abc")``: ``count a:abcaab=`` -> ``3``.
* ``reasoning_gym(dataset, size=2000, seed=0, heldout=0.1, **options)``: a reasoning-gym dataset
  (``jaxgrpo.text.datasets.from_reasoning_gym``; needs ``pip install 'jaxgrpo[text]'``).

Every task also takes ``filler=K`` (default 0; ``with_filler``): its answers may end with up to
K filler dots ``.`` that the verifier ignores, so completion length varies without changing
correctness (``addition(digits=2, filler=4)``: ``12+34=`` -> ``046``, ``046..`` and
``046....`` are all right).
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..checks import check_count, fail
from .datasets import from_reasoning_gym
from .interface import Prompt, TextTask, completion_length, exact_match, reference_completion
from .tokenizer import BOS, PAD, TOKENIZER

__all__ = ["TASKS", "FILLER", "Prompt", "TextTask", "addition", "chain_sum", "completion_length",
           "count", "exact_match", "make_task", "multiply", "reasoning_gym",
           "reference_completion", "reverse", "sort", "with_filler"]

INT32_MAX = 2**31 - 1


# ----------------------------------------------------------------------------- building blocks

def _text(tok, s):
    """A fixed piece of prompt: (tokens [len(s)], mask [len(s)])."""
    return jnp.asarray(tok.encode(s)), jnp.ones(len(s), bool)


def _number(x, width, digit_ids, reverse=False, zeros=False):
    """int32 [] in [0, 10**width) -> (tokens [width], mask [width]): its decimal digits without
    leading zeros (most significant first, or least significant first with ``reverse``),
    left-aligned and padded with PAD; with ``zeros``, all ``width`` digits, leading zeros
    included."""
    powers = jnp.asarray(10 ** np.arange(width), jnp.int32)
    lsd_first = (x // powers) % 10
    n = width if zeros else 1 + (x >= powers[1:]).sum()
    j = jnp.arange(width)
    d = lsd_first if reverse else lsd_first[jnp.clip(n - 1 - j, 0, width - 1)]
    mask = j < n
    return jnp.where(mask, digit_ids[d], PAD).astype(jnp.int32), mask


def _randint(key, shape, high):
    """int32 [shape], uniform over [0, high) for a small ``high``: 32 random bits mod ``high``
    (bias below high / 2**32). One random_bits call, where jax.random.randint makes three (a
    split and two draws), which triples the compile time under vmap."""
    return (jax.random.bits(key, shape, jnp.uint32) % high).astype(jnp.int32)


def _uniform_numbers(key, count, digits):
    """int32 [count], uniform over [0, 10**digits), drawn digit by digit (exactly uniform up to
    _randint's bias; jax.random.randint is visibly biased for spans near 2**32)."""
    d = _randint(key, (count, digits), 10)
    return (d * jnp.asarray(10 ** np.arange(digits), jnp.int32)).sum(-1)


def _width(max_value):
    return len(str(max_value))


def _pack(pieces, prompt_len):
    """Pieces (tokens [w_i], mask [w_i]) -> (tokens [prompt_len], length []): the masked-in tokens
    concatenated in order, then left-padded with PAD."""
    tokens = jnp.concatenate([t for t, _ in pieces])
    mask = jnp.concatenate([m for _, m in pieces])
    length = mask.sum().astype(jnp.int32)
    pos = jnp.where(mask, prompt_len - length + jnp.cumsum(mask) - 1, prompt_len)
    return jnp.full(prompt_len, PAD, jnp.int32).at[pos].set(tokens, mode="drop"), length


def _task(name, tok, parts):
    """A TextTask from ``parts(key) -> (pieces, answer [A], answer_len [])``, graded by
    ``exact_match``; prompt_len is BOS plus the widest prompt, max_new_tokens is A + 1."""
    bos = (jnp.array([BOS], jnp.int32), jnp.ones(1, bool))
    pieces, answer, _ = jax.eval_shape(parts, jax.random.PRNGKey(0))
    prompt_len = 1 + sum(t.shape[0] for t, _ in pieces)

    def sample(key):
        pieces, answer, answer_len = parts(key)
        tokens, length = _pack([bos, *pieces], prompt_len)
        return Prompt(tokens, length, answer.astype(jnp.int32), jnp.asarray(answer_len, jnp.int32))

    return TextTask(name, tok, prompt_len, answer.shape[0] + 1, sample, exact_match)


def _digit_ids(tok):
    return jnp.asarray(tok.encode("0123456789"))


def _check_alphabet(task, alphabet):
    if not isinstance(alphabet, str) or not alphabet:
        fail(f"{task}: alphabet", f"must be a non-empty string, got {alphabet!r}")
    if len(set(alphabet)) != len(alphabet):
        fail(f"{task}: alphabet", f"must not repeat characters, got {alphabet!r}")
    return alphabet


# ----------------------------------------------------------------------------- built-in tasks

def addition(digits: int = 3, reverse_answer: bool = False,
             leading_zeros: bool = True) -> TextTask:
    """``a+b=`` -> ``a+b``; a, b uniform over [0, 10**digits). Numbers are written at fixed
    width with leading zeros: ``007+123=0130`` (``digits`` digits an operand, ``digits + 1`` the
    sum), so every digit has the same place in every prompt and answer; ``leading_zeros=False``
    writes them without (``7+123=130``: the sum's k-th digit is then a different place value
    depending on its length). With ``reverse_answer`` the sum's digits come least significant
    first (``0579`` -> ``9750``)."""
    digits = check_count("addition: digits", digits, 1, 9, " (int32 arithmetic)")
    if not isinstance(reverse_answer, bool):
        fail("addition: reverse_answer", f"must be a bool, got {reverse_answer!r}")
    return _binary("addition", "+", digits, digits + 1, jnp.add, reverse_answer, leading_zeros)


def multiply(digits: int = 2, leading_zeros: bool = True) -> TextTask:
    """``a*b=`` -> ``a*b``; a, b uniform over [0, 10**digits), written as in ``addition``
    (``07*12=0084``: ``2 * digits`` digits the product)."""
    digits = check_count("multiply: digits", digits, 1, 4, " (int32 arithmetic)")
    return _binary("multiply", "*", digits, 2 * digits, jnp.multiply, False, leading_zeros)


def _binary(name, op, digits, width, fn, reverse_answer, zeros):
    """``a<op>b=`` -> ``fn(a, b)`` (at most ``width`` digits; exactly, with ``zeros``)."""
    if not isinstance(zeros, bool):
        fail(f"{name}: leading_zeros", f"must be a bool, got {zeros!r}")
    tok, ids = TOKENIZER, _digit_ids(TOKENIZER)

    def parts(key):
        a, b = _uniform_numbers(key, 2, digits)
        answer, mask = _number(fn(a, b), width, ids, reverse_answer, zeros)
        pieces = [_number(a, digits, ids, zeros=zeros), _text(tok, op),
                  _number(b, digits, ids, zeros=zeros), _text(tok, "=")]
        return pieces, answer, mask.sum()

    return _task(name, tok, parts)


def chain_sum(terms: int = 3, digits: int = 1) -> TextTask:
    """``x1+x2+...+xn=`` -> the sum; terms uniform over [0, 10**digits), no leading zeros."""
    terms = check_count("chain_sum: terms", terms, 2, 64)
    digits = check_count("chain_sum: digits", digits, 1, 9)
    if terms * (10**digits - 1) > INT32_MAX:
        fail("chain_sum", f"terms * (10**digits - 1) must fit in int32, got terms={terms}, "
                           f"digits={digits}")
    tok, ids = TOKENIZER, _digit_ids(TOKENIZER)

    def parts(key):
        xs = _uniform_numbers(key, terms, digits)
        answer, mask = _number(xs.sum(), _width(terms * (10**digits - 1)), ids)
        pieces = []
        for i in range(terms):
            pieces += [_number(xs[i], digits, ids), _text(tok, "+" if i < terms - 1 else "=")]
        return pieces, answer, mask.sum()

    return _task("chain_sum", tok, parts)


def sort(length: int = 5) -> TextTask:
    """``sort:31415=`` -> ``11345``: ``length`` uniform digits, sorted ascending."""
    length = check_count("sort: length", length, 1, 256)
    tok, ids = TOKENIZER, _digit_ids(TOKENIZER)

    def parts(key):
        xs = _randint(key, (length,), 10)
        pieces = [_text(tok, "sort:"), (ids[xs], jnp.ones(length, bool)), _text(tok, "=")]
        return pieces, ids[jnp.sort(xs)], length

    return _task("sort", tok, parts)


def reverse(length: int = 5, alphabet: str = "abcdefghijklmnopqrstuvwxyz") -> TextTask:
    """``reverse:abcde=`` -> ``edcba``: ``length`` characters uniform over ``alphabet``."""
    length = check_count("reverse: length", length, 1, 256)
    alphabet = _check_alphabet("reverse", alphabet)
    tok = TOKENIZER.extended(alphabet)
    ids = jnp.asarray(tok.encode(alphabet))

    def parts(key):
        s = ids[_randint(key, (length,), len(alphabet))]
        pieces = [_text(tok, "reverse:"), (s, jnp.ones(length, bool)), _text(tok, "=")]
        return pieces, s[::-1], length

    return _task("reverse", tok, parts)


def count(length: int = 8, alphabet: str = "abc") -> TextTask:
    """``count a:abcaab=`` -> ``3``: how often a character (uniform over ``alphabet``) occurs in
    ``length`` characters uniform over ``alphabet``; the answer in decimal."""
    length = check_count("count: length", length, 1, 256)
    alphabet = _check_alphabet("count", alphabet)
    tok = TOKENIZER.extended(alphabet)
    ids, digit_ids = jnp.asarray(tok.encode(alphabet)), _digit_ids(tok)

    def parts(key):
        chars = ids[_randint(key, (1 + length,), len(alphabet))]
        c, s = chars[:1], chars[1:]
        answer, mask = _number((s == c).sum(), _width(length), digit_ids)
        pieces = [_text(tok, "count "), (c, jnp.ones(1, bool)), _text(tok, ":"),
                  (s, jnp.ones(length, bool)), _text(tok, "=")]
        return pieces, answer, mask.sum()

    return _task("count", tok, parts)


def reasoning_gym(dataset: str, size: int = 2000, seed: int = 0, heldout: float = 0.1,
                  **cfg) -> TextTask:
    """reasoning-gym's dataset ``dataset`` (``jaxgrpo.text.from_reasoning_gym``; needs
    ``jaxgrpo[text]``)."""
    return from_reasoning_gym(dataset, size, seed, heldout=heldout, **cfg)


TASKS: dict[str, Callable[..., TextTask]] = {
    "addition": addition, "multiply": multiply, "chain_sum": chain_sum,
    "sort": sort, "reverse": reverse, "count": count, "reasoning_gym": reasoning_gym,
}


FILLER = "."


def _drop(tokens, drop):
    """int32 [M], bool [M] -> int32 [M]: the tokens not dropped, in order, then PAD."""
    keep = ~drop
    pos = jnp.where(keep, jnp.cumsum(keep) - 1, tokens.shape[0])
    return jnp.full_like(tokens, PAD).at[pos].set(tokens, mode="drop")


def with_filler(task: TextTask, filler: int) -> TextTask:
    """``task`` whose answers may end with up to ``filler`` dots (``FILLER``) that do not count.

    ``sample`` appends k ~ uniform{0..filler} dots to each answer (so the SFT target's length
    varies for the same prompt, and a warm-started model samples a spread of lengths);
    ``verify`` removes every dot from the completion and from the answer, then applies the
    task's own verifier; ``max_new_tokens`` grows by ``filler``. Correctness is then independent
    of length up to truncation: the testbed of the loss-aggregation length-bias study
    (``experiments/text_length.yaml``). Needs a tokenizer with ``.`` whose answers have none."""
    filler = check_count(f"{task.name}: filler", filler, 0, 256)
    if filler == 0:
        return task
    if FILLER not in task.tokenizer.chars:
        fail(task.name, f"filler needs {FILLER!r} in the task's vocabulary")
    dot = int(task.tokenizer.encode(FILLER)[0])

    def padded(sample):
        def fn(key):
            p = sample(key)
            k = _randint(jax.random.fold_in(key, 0xF1), (), filler + 1)
            i = jnp.arange(p.answer.shape[0] + filler)
            answer = jnp.pad(p.answer, (0, filler), constant_values=PAD)
            answer = jnp.where(i < p.answer_len, answer,
                               jnp.where(i < p.answer_len + k, dot, PAD)).astype(jnp.int32)
            return p._replace(answer=answer, answer_len=p.answer_len + k)
        return fn

    def verify(prompt, completion, length):
        m = completion.shape[-1]
        before = jnp.arange(m) < length
        core_len = jnp.sum(before & (completion != dot)).astype(jnp.int32)
        a = prompt.answer
        core = prompt._replace(answer=_drop(a, a == dot), answer_len=jnp.sum(
            (a != dot) & (jnp.arange(a.shape[0]) < prompt.answer_len)).astype(jnp.int32))
        return task.verify(core, _drop(completion, completion == dot),
                           jnp.where(length >= m, m, core_len))

    return task._replace(sample=padded(task.sample), verify=verify,
                         max_new_tokens=task.max_new_tokens + filler,
                         sample_heldout=None if task.sample_heldout is None
                         else padded(task.sample_heldout))


def make_task(name: str, filler: int = 0, **options) -> TextTask:
    """``TASKS[name](**options)``, with a ValueError naming an unknown task or option;
    ``filler`` > 0 wraps it in ``with_filler``."""
    if name not in TASKS:
        close = difflib.get_close_matches(str(name), TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; tasks: {', '.join(TASKS)}")
    params = inspect.signature(TASKS[name]).parameters
    open_ended = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for option in options:
        if option not in params and not open_ended:
            close = difflib.get_close_matches(option, params, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{name}: unknown option {option!r}{hint}; "
                             f"options: {', '.join([*params, 'filler'])}")
    missing = [p for p, v in params.items() if v.default is v.empty
               and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL) and p not in options]
    if missing:
        raise ValueError(f"{name}: option {missing[0]!r} is required")
    return with_filler(TASKS[name](**options), filler)
