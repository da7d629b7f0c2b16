"""Python reward functions for text GRPO, with TRL's signature and semantics.

A reward function is ``f(prompts, completions, **columns) -> list[float | None]``, called with
keyword arguments as TRL's ``GRPOTrainer`` calls it: ``prompts`` the batch's prompts (a
dataset row's prompt column: text, or chat messages), ``completions`` the decoded completions
(text, or ``[{"role": "assistant", "content": text}]`` when the prompts are chat messages),
``completion_ids`` (lists of token ids, the EOS included when there is one) and every other
column of the prompts' rows (``answer``, ``metadata``, ...; for a generated task without rows,
``answer``: the decoded answer). It returns one reward per completion, or None where it does
not apply.

``GRPOConfig(reward_funcs=(f, "module:function", ...), reward_weights=(1.0, 0.5, ...))``: each
iteration the completions are decoded on the host (``jax.pure_callback``, one call for every
seed of a vmapped run; one per device when the seeds are spread over several, the calls taking
turns) and every function is called once on all of them; a completion's
reward is ``nansum_i(weight_i * reward_i)`` (a None counts as nothing), and a completion all
of whose functions return None gets no advantage: it is left out of its group's statistics
and of the loss (TRL's "unscorable" completions). Each function logs ``rewards/{name}/mean``
and ``rewards/{name}/std`` (over its non-None rewards; name = ``__name__``, a repeated name
numbered ``name_2``, ...). Without reward functions the task's in-graph verifier scores
completions (no host round trip: the fast path).

Built in: ``exact_match_reward`` (``extract_answer`` of the completion equals the ``answer``
column), ``format_reward(pattern)`` (the completion matches a regular expression; ready-made:
``think_answer_format``), ``math_verify_reward`` (the optional ``math-verify`` package) and
``reasoning_gym_reward`` (reasoning-gym's own scorer, for ``reasoning_gym_records`` rows).
A function is named in a config or on the command line as ``module:function`` (``--set
reward_funcs=[jaxgrpo.text.rewardfns:exact_match_reward,mymodule:my_reward]``), a factory's
result as ``module:factory(literal arguments)``; config.yaml stores those strings.
"""
from __future__ import annotations

import ast
import functools
import importlib
import math
import re
import threading
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import numpy as np

__all__ = ["DEFAULT_FORMAT", "RewardFns", "check_reward_funcs", "exact_match_reward",
           "extract_answer", "format_reward", "math_verify_reward", "reasoning_gym_reward", "resolve", "reward_names",
           "spec_of", "think_answer_format"]


# ----------------------------------------------------------------------------- built-ins

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)")


def completion_text(completion) -> str:
    """A completion as text: itself, or the content of its last message (chat form)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1],
                                                                            Mapping):
        return str(completion[-1].get("content", ""))
    return str(completion)


def extract_answer(text: str) -> str | None:
    """The answer a completion gives: the text inside its last ``<answer>...</answer>``
    (stripped) if it has one, else its last number (``-12``, ``3.5``, ``1,000`` -> ``1000``),
    else None."""
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", "").rstrip(".") or None
    return None


def _same(extracted: str, answer: str) -> bool:
    """Equal as text (stripped), or both numbers of equal value (``06`` == ``6.0``)."""
    a, b = extracted.strip(), answer.strip()
    if a == b:
        return True
    try:
        return float(a.replace(",", "")) == float(b.replace(",", ""))
    except ValueError:
        return False


def exact_match_reward(prompts, completions, answer, **kwargs) -> list[float | None]:
    """1.0 when ``extract_answer`` of the completion equals the row's ``answer`` column (as
    text, stripped; or as numbers of equal value), 0.0 when it does not or has no answer;
    None for a row whose answer is None."""
    out = []
    for c, a in zip(completions, answer):
        if a is None:
            out.append(None)
            continue
        got = extract_answer(completion_text(c))
        out.append(1.0 if got is not None and _same(got, str(a)) else 0.0)
    return out


DEFAULT_FORMAT = r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*"


class FormatReward:
    """``format_reward(pattern)``'s reward function: 1.0 when the whole completion matches
    ``pattern`` (``re.fullmatch`` with ``re.DOTALL``), else 0.0. Named ``format_reward``;
    written to a config as ``jaxgrpo.text.rewardfns:format_reward('PATTERN')``."""

    __name__ = "format_reward"

    def __init__(self, pattern: str):
        if not isinstance(pattern, str):
            raise ValueError(f"format_reward: pattern must be a regular expression string, "
                             f"got {pattern!r}")
        try:
            self.regex = re.compile(pattern, re.DOTALL)
        except re.error as e:
            raise ValueError(f"format_reward: {pattern!r} is not a regular expression: {e}") \
                from None
        self.pattern = pattern
        self.spec = f"{__name__}:format_reward({pattern!r})"

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return [1.0 if self.regex.fullmatch(completion_text(c)) else 0.0 for c in completions]

    def __eq__(self, other):
        return isinstance(other, FormatReward) and other.pattern == self.pattern

    def __hash__(self):
        return hash(("FormatReward", self.pattern))

    def __repr__(self):
        return f"format_reward({self.pattern!r})"


def format_reward(pattern: str = DEFAULT_FORMAT) -> FormatReward:
    """A reward function: 1.0 when the completion (its text) matches ``pattern`` in full
    (``re.fullmatch``, ``.`` matching newlines too), else 0.0. The default is
    ``<think>...</think><answer>...</answer>`` with optional whitespace around and between."""
    return FormatReward(pattern)


think_answer_format = format_reward(DEFAULT_FORMAT)


def _math_verify():
    try:
        import math_verify
    except ImportError:
        raise ValueError("math_verify_reward needs the math-verify package: "
                         "pip install 'math-verify[antlr4_13_2]'") from None
    return math_verify


def math_verify_reward(prompts, completions, answer, **kwargs) -> list[float | None]:
    """1.0 when the completion's final answer is mathematically equivalent to the row's
    ``answer`` column, as the ``math-verify`` package decides (``parse`` of both,
    ``verify(gold, prediction)``: LaTeX and plain expressions, ``\\boxed{}``, fractions,
    sets...), else 0.0; None when the gold answer is None or cannot be parsed (TRL's
    ``accuracy_reward`` rule). Needs ``pip install math-verify``. Its timeouts are off: they
    use signals, which work only in the main thread, and the callback runs in another."""
    mv = _math_verify()
    out = []
    for c, a in zip(completions, answer):
        if a is None:
            out.append(None)
            continue
        gold = mv.parse(str(a), parsing_timeout=None)
        if not gold:
            out.append(None)
            continue
        pred = mv.parse(completion_text(c), parsing_timeout=None)
        try:
            ok = bool(mv.verify(gold, pred, timeout_seconds=None))
        except Exception:  # noqa: BLE001 - an unverifiable prediction is a wrong one
            ok = False
        out.append(1.0 if ok else 0.0)
    return out


def reasoning_gym_reward(prompts, completions, answer, metadata, question=None,
                         **kwargs) -> list[float | None]:
    """reasoning-gym's own score of each completion (``score_answer`` of the dataset named by
    ``metadata["source_dataset"]``) for rows of ``reasoning_gym_records`` (the natural form):
    the answer scored is the text inside the completion's last ``<answer>...</answer>``, or
    the whole completion (stripped) without one; None for a row without a source dataset."""
    try:
        from reasoning_gym import get_score_answer_fn
    except ImportError:
        raise ValueError("reasoning_gym_reward needs the reasoning-gym package: "
                         "pip install 'jaxgrpo[text]'") from None
    out = []
    questions = question if question is not None else [None] * len(completions)
    for c, a, m, q in zip(completions, answer, metadata, questions):
        name = m.get("source_dataset") if isinstance(m, Mapping) else None
        if name is None:
            out.append(None)
            continue
        text = completion_text(c)
        tags = _ANSWER_TAG.findall(text)
        given = tags[-1].strip() if tags else text.strip()
        entry = {"question": q, "answer": a, "metadata": m}
        out.append(float(get_score_answer_fn(name)(answer=given, entry=entry)))
    return out


# ----------------------------------------------------------------------------- names, specs

def _import(module: str, name: str, spec: str):
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"reward_funcs: cannot import {module!r} for {spec!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed: one line, where and why
        raise ValueError(f"reward_funcs: importing {module!r} for {spec!r} raised "
                         f"{type(e).__name__}{_where(e)}: {_first_line(e)}") from None
    obj = mod
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"reward_funcs: {module} has no {name!r} ({spec!r})")
        obj = getattr(obj, part)
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e.msg if isinstance(e, SyntaxError) else e)
    return text.splitlines()[0] if text else ""


def _where(e: BaseException) -> str:
    """`` at FILE:LINE`` of an exception raised while importing a module: a SyntaxError's own,
    else the innermost frame of its traceback ("" if it has none)."""
    if isinstance(e, SyntaxError) and e.filename:
        return f" at {e.filename}:{e.lineno}"
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""


def resolve(spec) -> Callable:
    """A reward function from a callable (itself) or a string ``"module:function"`` (imported),
    or ``"module:factory(args)"`` with Python literal arguments (the factory's result, e.g.
    ``"jaxgrpo.text.rewardfns:format_reward('<a>.*</a>')"``). ValueError naming the spec."""
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"reward_funcs: each must be a function or a 'module:function' "
                         f"string, got {spec!r}")
    s = spec.strip()
    module, sep, rest = s.partition(":")
    if not sep or not module or not rest:
        raise ValueError(f"reward_funcs: {spec!r} is not 'module:function' (for example "
                         "'jaxgrpo.text.rewardfns:exact_match_reward')")
    name, paren, args = rest.partition("(")
    f = _import(module.strip(), name.strip(), spec)
    if paren:
        if not args.endswith(")"):
            raise ValueError(f"reward_funcs: {spec!r}: unbalanced parentheses")
        try:
            values = ast.literal_eval(f"({args[:-1]},)") if args[:-1].strip() else ()
        except (ValueError, SyntaxError):
            raise ValueError(f"reward_funcs: {spec!r}: the arguments of {name.strip()} must "
                             "be Python literals") from None
        try:
            f = f(*values)
        except (TypeError, ValueError) as e:
            raise ValueError(f"reward_funcs: {spec!r}: {e}") from None
    if not callable(f):
        raise ValueError(f"reward_funcs: {spec!r} is not callable")
    return f


def spec_of(f) -> str | None:
    """The string ``resolve`` turns back into ``f`` (what config.yaml stores), or None when
    there is none (a lambda, a closure, a function defined inside another). A function of a
    script is ``__main__:name``, which resolves in that script's process only: for a run
    folder whose config.yaml loads anywhere (``jaxgrpo eval``), put it in a module."""
    spec = getattr(f, "spec", None)
    if isinstance(spec, str):
        return spec
    module, qualname = getattr(f, "__module__", None), getattr(f, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    spec = f"{module}:{qualname}"
    try:
        return spec if resolve(spec) is f else None
    except ValueError:
        return None


def _name(f) -> str:
    if isinstance(f, functools.partial):
        return _name(f.func)
    name = getattr(f, "__name__", None)
    return name if isinstance(name, str) else type(f).__name__


def reward_names(funcs) -> tuple[str, ...]:
    """Each function's metric name: its ``__name__`` (a partial's function's, an object's
    class name), a name already taken numbered ``_2``, ``_3``, ..."""
    out, seen = [], {}
    for f in funcs:
        n = _name(f)
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return tuple(out)


# ----------------------------------------------------------------------------- calling

class RewardFunctionError(ValueError):
    """A reward function raised, or returned the wrong length or type (names the function)."""


def call_reward_func(f, name, prompts, completions, completion_ids, columns) -> np.ndarray:
    """``f`` on one batch -> float64 [n] (None -> NaN). RewardFunctionError naming ``name``
    if it raises or returns anything but ``n`` numbers or None."""
    n = len(completions)
    try:
        out = f(prompts=prompts, completions=completions, completion_ids=completion_ids,
                **columns)
    except Exception as e:  # noqa: BLE001 - the user's function's error, with its name
        first = str(e).splitlines()[0] if str(e) else ""
        raise RewardFunctionError(f"reward_funcs: {name} raised {type(e).__name__}: "
                                  f"{first}") from e
    if isinstance(out, np.ndarray):
        out = out.tolist()
    if not isinstance(out, (list, tuple)):
        raise RewardFunctionError(f"reward_funcs: {name} must return a list of {n} floats "
                                  f"(or None), got {type(out).__name__}")
    if len(out) != n:
        raise RewardFunctionError(f"reward_funcs: {name} returned {len(out)} rewards for "
                                  f"{n} completions")
    vals = np.empty(n, np.float64)
    for i, v in enumerate(out):
        if v is None:
            vals[i] = np.nan
        elif isinstance(v, (int, float, np.integer, np.floating, np.bool_)):
            vals[i] = float(v)
        else:
            raise RewardFunctionError(f"reward_funcs: {name} returned {v!r} for completion "
                                      f"{i}; rewards are floats or None")
    return vals


def _is_chat(prompt) -> bool:
    from .datasets import is_conversational
    return is_conversational(prompt)


_HOST_LOCK = threading.Lock()     # one reward-function call at a time (they need not be
                                  # thread-safe: TRL calls them from one thread)


class RewardFns(NamedTuple):
    """A run's reward functions, static (hashable by identity of its parts): ``funcs``,
    ``weights`` (float per function), ``names`` (metric names), the task's ``tokenizer``
    and ``data`` (``datasets.Records`` or None)."""
    funcs: tuple
    weights: tuple
    names: tuple
    tokenizer: Any
    data: Any = None

    @classmethod
    def of(cls, config, task) -> RewardFns | None:
        """The config's reward functions on ``task``; None without any (the in-graph path)."""
        funcs = tuple(getattr(config, "reward_funcs", ()) or ())
        if not funcs:
            return None
        weights = getattr(config, "reward_weights", None) or (1.0,) * len(funcs)
        return cls(funcs, tuple(float(w) for w in weights), reward_names(funcs),
                   task.tokenizer, task.data)

    def inputs(self, index, prompt_tokens, answer_tokens, answer_len, completion, length):
        """The keyword arguments of every function for rows of NumPy arrays: (prompts,
        completions, completion_ids, columns)."""
        tok = self.tokenizer
        M = completion.shape[-1]
        ids = [completion[r, :min(int(length[r]) + 1, M)].tolist() for r in range(len(length))]
        try:
            texts = [tok.decode(completion[r, :int(length[r])]) for r in range(len(length))]
        except Exception as e:  # noqa: BLE001 - say where it happened
            raise RewardFunctionError(f"reward_funcs: decoding the completions for the reward "
                                      f"functions failed: {type(e).__name__}: {e}") from e
        if self.data is not None:
            rows = [int(i) for i in index]
            prompts = self.data.prompts(rows)
            columns = self.data.columns(rows)
        else:
            prompts = [tok.decode(p) for p in prompt_tokens]
            columns = {"answer": [tok.decode(a[:int(n)]) for a, n in zip(answer_tokens,
                                                                         answer_len)]}
        if prompts and _is_chat(prompts[0]):
            completions = [[{"role": "assistant", "content": t}] for t in texts]
        else:
            completions = texts
        return prompts, completions, ids, columns

    def host(self, index, prompt_tokens, answer_tokens, answer_len, completion, length, valid):
        """The host side of ``per_function``: NumPy arrays with any leading axes ``L`` (seeds
        of a vmapped run) before the completions' axis C -> float32 [*L, C, F], NaN where a
        function returned None and on rows not ``valid``. Each function is called once, on
        the valid rows of every leading index together."""
        lead = np.shape(length)
        flat = lambda x: np.asarray(x).reshape(math.prod(lead), *np.shape(x)[len(lead):])
        index, prompt_tokens, answer_tokens, answer_len, completion, length, valid = map(
            flat, (index, prompt_tokens, answer_tokens, answer_len, completion, length, valid))
        out = np.full((len(length), len(self.funcs)), np.nan, np.float32)
        rows = np.flatnonzero(valid)
        if rows.size:
            args = self.inputs(index[rows], prompt_tokens[rows], answer_tokens[rows],
                               answer_len[rows], completion[rows], length[rows])
            with _HOST_LOCK:     # seeds spread over devices call back from several threads
                for j, (f, name) in enumerate(zip(self.funcs, self.names)):
                    out[rows, j] = call_reward_func(f, name, *args)
        return out.reshape(*lead, len(self.funcs))

    def per_function(self, prompts, completion, length, valid):
        """In the graph: every function's rewards, float32 [C, F] (NaN where one returned None
        or the row is not ``valid``), from ``prompts`` (a batched ``Prompt`` [C]),
        ``completion`` int32 [C, M], ``length`` int32 [C], ``valid`` bool [C]. A
        ``jax.pure_callback``; under ``jax.vmap`` (seeds) one call takes every seed's
        completions (``vmap_method="broadcast_all"``)."""
        import jax
        import jax.numpy as jnp
        C = completion.shape[0]
        index = (prompts.index if prompts.index is not None
                 else jnp.full((C,), -1, jnp.int32))
        shape = jax.ShapeDtypeStruct((C, len(self.funcs)), jnp.float32)
        return jax.pure_callback(self.host, shape, index, prompts.tokens, prompts.answer,
                                 prompts.answer_len, completion, length, valid,
                                 vmap_method="broadcast_all")

    def combine(self, per_function):
        """float32 [C, F] -> [C]: ``nansum`` of the weighted rewards; NaN where every function
        returned None (an unscorable completion)."""
        import jax.numpy as jnp
        w = jnp.asarray(self.weights, jnp.float32)
        total = jnp.nansum(per_function * w, axis=-1)
        return jnp.where(jnp.all(jnp.isnan(per_function), axis=-1), jnp.nan, total)


def combine_numpy(per_function, weights) -> np.ndarray:
    """``RewardFns.combine`` in NumPy (the reference): [C, F], [F] -> [C]."""
    per_function = np.asarray(per_function, np.float64)
    total = np.nansum(per_function * np.asarray(weights, np.float64), axis=-1)
    return np.where(np.all(np.isnan(per_function), axis=-1), np.nan, total)


# ----------------------------------------------------------------------------- config checks

def check_weights(weights, n: int):
    """``reward_weights`` as a tuple of ``n`` finite floats (None stays None)."""
    if weights is None:
        return None
    if isinstance(weights, (int, float)) and not isinstance(weights, bool):
        weights = (weights,)
    if not isinstance(weights, (list, tuple)):
        raise ValueError(f"reward_weights: must be a list of numbers, got {weights!r}")
    if len(weights) != n:
        raise ValueError(f"reward_weights: {len(weights)} weights for {n} reward functions")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"reward_weights: each must be a finite number, got {w!r}")
    return tuple(float(w) for w in weights)


def resolve_all(funcs) -> tuple:
    """``reward_funcs`` as a tuple of callables (strings imported)."""
    if funcs is None:
        return ()
    if callable(funcs) or isinstance(funcs, str):
        funcs = (funcs,)
    if not isinstance(funcs, (list, tuple)):
        raise ValueError(f"reward_funcs: must be a list of functions or 'module:function' "
                         f"strings, got {funcs!r}")
    return tuple(resolve(f) for f in funcs)


@functools.lru_cache(maxsize=64)
def _checked_once(funcs, task):
    return _checked(funcs, task)


def _checked(funcs, task):
    fns = RewardFns(funcs, (1.0,) * len(funcs), reward_names(funcs), task.tokenizer, task.data)
    tok = task.tokenizer
    rows = [0, min(1, len(task.data) - 1)] if task.data is not None else [0, 0]
    if task.data is not None and task.data.answer_column is not None:
        second = str(task.data.rows[rows[1]].get(task.data.answer_column) or "0")
    else:
        second = "0"
    comps = [np.asarray([], np.int32), _encode(tok, second)]
    M = max(1, max(len(c) for c in comps))
    pad = int(getattr(tok, "pad_id", 0))
    completion = np.full((2, M), pad, np.int32)
    for r, c in enumerate(comps):
        completion[r, :len(c)] = c
    length = np.asarray([len(c) for c in comps], np.int32)
    if task.data is None:
        import jax
        p = jax.jit(task.sample)(jax.random.key(0))      # jitted: far faster than eager
        prompt_tokens, answer, answer_len = (np.stack([np.asarray(x)] * 2) for x in (
            p.tokens, p.answer, p.answer_len))
    else:
        prompt_tokens = np.zeros((2, 1), np.int32)
        answer, answer_len = np.zeros((2, 1), np.int32), np.zeros(2, np.int32)
    fns.host(np.asarray(rows, np.int32), prompt_tokens, answer, answer_len, completion, length,
             np.ones(2, bool))
    return True


def _encode(tok, text):
    from .datasets import encode_answer
    try:
        return encode_answer(tok, text)
    except ValueError:
        return encode_answer(tok, "0") if text != "0" else np.asarray([], np.int32)


def check_reward_funcs(funcs, task) -> None:
    """Call every function once, before anything is compiled, on a batch of two completions
    of the task's first rows (an empty one, and the second row's answer or ``0``): a function
    that raises or returns the wrong length or type is a ValueError naming it. Done once per
    functions and task (functions that cannot be hashed: every time)."""
    funcs = tuple(funcs)
    try:
        hash((funcs, task))
    except TypeError:
        _checked(funcs, task)
        return
    _checked_once(funcs, task)
