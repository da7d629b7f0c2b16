"""Text tasks from datasets: prompts tokenized on the host once, left-padded, stored as arrays
and sampled by index inside the compiled loop.

* ``from_records(records, tokenizer)``: any dataset of rows (a list of dicts, a JSONL file, a
  ``datasets.Dataset``) with a prompt column (text or chat messages) and any other columns,
  which Python reward functions (``jaxgrpo.text.rewardfns``) receive; ``env="text:dataset"``.
* ``from_reasoning_gym(name)``: a reasoning-gym dataset, in a compact form graded by exact
  match in the graph (no host round trip, no Python reward function), or in its natural form
  (``natural=True``: the question as chat messages, for pretrained models).

reasoning-gym needs the optional extra: ``pip install 'jaxgrpo[text]'``.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .interface import Prompt, TextTask, exact_match
from .tokenizer import BOS, EOS, PAD, TOKENIZER, CharTokenizer


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
                       prompt=None, natural: bool = False, tokenizer=None,
                       system_prompt: str | None = None, max_prompt_len: int | None = None,
                       **cfg) -> TextTask:
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

    ``natural=True``: the natural-language form for pretrained models, ``from_records`` of
    ``reasoning_gym_records(name, size, seed, system_prompt, **cfg)``: each prompt is the
    entry's question as chat messages (after a system message ``system_prompt``, if given),
    tokenized with ``tokenizer``'s chat template (the ``init_from`` checkpoint's in a config),
    and reward functions receive the columns ``answer``, ``question`` and ``metadata``; the
    held-out rows are a random ``heldout`` fraction (drawn with ``seed``).
    """
    if natural:
        if prompt is not None:
            raise ValueError("reasoning_gym: natural=True builds its own prompts; drop prompt")
        return from_records(reasoning_gym_records(name, size, seed, system_prompt, **cfg),
                            tokenizer, heldout=heldout, seed=seed,
                            max_prompt_len=max_prompt_len, name=f"reasoning_gym:{name}")
    for option, value in (("tokenizer", tokenizer), ("system_prompt", system_prompt),
                          ("max_prompt_len", max_prompt_len)):
        if value is not None:
            raise ValueError(f"reasoning_gym: {option} is an option of the natural form "
                             "(natural=True); the compact form uses a character tokenizer")
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



def reasoning_gym_records(name: str, size: int = 2000, seed: int = 0,
                          system_prompt: str | None = None, **cfg) -> list[dict]:
    """reasoning-gym's dataset ``name`` in its natural form, as rows for ``from_records``:
    ``{"prompt": [{"role": "system", "content": system_prompt} (if given), {"role": "user",
    "content": question}], "answer": answer, "question": question, "metadata": metadata}``
    (metadata as JSON values: what reasoning-gym's ``score_answer(answer, entry)`` reads)."""
    rows = []
    for e in reasoning_gym_entries(name, size, seed, **cfg):
        messages = [{"role": "user", "content": e["question"]}]
        if system_prompt is not None:
            messages.insert(0, {"role": "system", "content": system_prompt})
        rows.append({"prompt": messages, "answer": e["answer"], "question": e["question"],
                     "metadata": json.loads(json.dumps(e.get("metadata", {}), default=str))})
    return rows


# ----------------------------------------------------------------------------- from_records

def is_conversational(prompt) -> bool:
    """Whether a prompt is chat messages (a list of dicts with ``role`` and ``content``), as
    TRL's ``is_conversational`` decides; else it is text."""
    return (isinstance(prompt, (list, tuple)) and len(prompt) > 0
            and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in prompt))


def _json_like(v) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_json_like(x) for x in v)
    if isinstance(v, Mapping):
        return all(isinstance(k, str) and _json_like(x) for k, x in v.items())
    return False


def load_records(data) -> list[dict]:
    """A dataset's rows as a list of dicts: ``data`` is a list (or tuple) of dicts, the path of
    a JSONL file (one JSON object per line; ``.json``: one list of objects) or a
    ``datasets.Dataset`` (anything with ``column_names`` and ``to_list()``). ValueError naming
    the problem (a missing file, a line that is not JSON, a row that is not a dict, no rows)."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        try:
            text = path.read_text()
        except OSError as e:
            raise ValueError(f"data: cannot read {path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ValueError(f"data: {path} is not a text file") from None
        if path.suffix == ".json":
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"data: {path} is not valid JSON: {e}") from None
            if not isinstance(rows, list):
                raise ValueError(f"data: {path} must hold a JSON list of objects, got "
                                 f"{type(rows).__name__}")
        else:
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"data: {path} line {n} is not JSON: {e}") from None
        where = str(path)
    elif hasattr(data, "column_names") and hasattr(data, "to_list"):     # datasets.Dataset
        rows, where = data.to_list(), "the Dataset"
    elif isinstance(data, (list, tuple)):
        rows, where = list(data), "the list"
    else:
        raise ValueError(f"data: must be a list of dicts, a JSONL path or a datasets.Dataset, "
                         f"got {type(data).__name__}")
    if not rows:
        raise ValueError(f"data: {where} has no rows")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise ValueError(f"data: row {i} of {where} must be a dict of columns, got "
                             f"{type(r).__name__}")
    return [dict(r) for r in rows]


class Rows(tuple):
    """A dataset's rows (dicts of JSON values) as a tuple compared and hashed by content: what
    a config holds in ``env_kwargs["data"]`` for a list of dicts or a ``datasets.Dataset``, so
    the config stays comparable, its task is built once (cached by this hash) and its
    config.yaml holds the rows."""

    def __new__(cls, data):
        rows = load_records(data)
        for i, r in enumerate(rows):
            for k, v in r.items():
                if not _json_like(v):
                    raise ValueError(f"data: row {i}, column {k!r}: a dataset in a config holds "
                                     f"JSON values (text, numbers, lists, dicts), got "
                                     f"{type(v).__name__}")
        return super().__new__(cls, rows)

    def __hash__(self):
        h = self.__dict__.get("_hash")
        if h is None:
            blob = json.dumps(list(self), sort_keys=True).encode()
            h = self.__dict__["_hash"] = hash(hashlib.sha256(blob).hexdigest())
        return h

    def __repr__(self):
        return f"Rows({len(self)} rows)"


class Records:
    """The host-side rows of a dataset task (``TextTask.data``): what Python reward functions
    receive. ``rows`` list of dicts, ``prompt_column``, ``answer_column`` (None when the rows
    have none). Compared and hashed by identity (a task is built once per dataset)."""

    def __init__(self, rows, prompt_column, answer_column):
        self.rows, self.prompt_column, self.answer_column = rows, prompt_column, answer_column
        self.keys = list(dict.fromkeys(k for r in rows for k in r
                                       if k not in (prompt_column, "completion",
                                                    "completion_ids")))

    def __len__(self):
        return len(self.rows)

    def prompts(self, index) -> list:
        """The prompt column of rows ``index`` (ints)."""
        return [self.rows[i][self.prompt_column] for i in index]

    def columns(self, index) -> dict:
        """Every other column of rows ``index``: ``{name: [value per row]}`` (None where a row
        lacks it), as TRL passes a dataset's columns to reward functions."""
        return {k: [self.rows[i].get(k) for i in index] for k in self.keys}

    def __repr__(self):
        return (f"Records({len(self.rows)} rows, prompt {self.prompt_column!r}, columns "
                f"{self.keys})")


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str):
    """The tokenizer of a Hugging Face checkpoint folder (``tokenizer.json`` and its configs:
    ``jaxgrpo.text.hf_tokenizer.HFTokenizer``), cached by path."""
    if not Path(path).is_dir():
        raise ValueError(f"tokenizer: {path} is not a folder (a Hugging Face checkpoint's, "
                         "with tokenizer.json)")
    try:
        from .hf_tokenizer import HFTokenizer
    except ImportError as e:
        raise ValueError(f"tokenizer: Hugging Face tokenizers need jaxgrpo.text.hf_tokenizer "
                         f"({e})") from None
    for name in ("from_pretrained", "from_dir", "load"):
        if hasattr(HFTokenizer, name):
            return getattr(HFTokenizer, name)(path)
    return HFTokenizer(path)


def _ids(out) -> np.ndarray:
    """Token ids as int32 [n] from what a tokenizer returns (an array, a list, or a mapping
    with ``input_ids``, as transformers' tokenizers return)."""
    if isinstance(out, Mapping):
        out = out["input_ids"]
    return np.asarray(out, np.int32).reshape(-1)


def encode_prompt(tokenizer, prompt) -> np.ndarray:
    """One prompt as tokens int32 [n]: chat messages through ``tokenizer.apply_chat_template(
    messages, add_generation_prompt=True)``; text with BOS first (the character tokenizer) or
    with the tokenizer's special tokens (``encode(text, add_special_tokens=True)``)."""
    if is_conversational(prompt):
        if not hasattr(tokenizer, "apply_chat_template"):
            raise ValueError("chat-message prompts need a tokenizer with a chat template (a "
                             "pretrained model's: init_from a Hugging Face folder); the "
                             "character tokenizer takes text prompts")
        return _ids(tokenizer.apply_chat_template([dict(m) for m in prompt],
                                                  add_generation_prompt=True))
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.encode(prompt, bos=True)
    return _ids(tokenizer.encode(prompt, add_special_tokens=True))


def encode_answer(tokenizer, answer) -> np.ndarray:
    """An answer as tokens int32 [n] (no special tokens)."""
    text = str(answer)
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.encode(text)
    return _ids(tokenizer.encode(text, add_special_tokens=False))


def from_records(records, tokenizer=None, prompt_column: str = "prompt", heldout: float = 0.1,
                 seed: int = 0, max_prompt_len: int | None = None,
                 answer_column: str | None = "answer", name: str = "dataset") -> TextTask:
    """A ``TextTask`` over a dataset's rows (``load_records``: a list of dicts, a JSONL path,
    a ``datasets.Dataset``).

    Each row's ``prompt_column`` is text or chat messages (``[{"role": ..., "content": ...}]``,
    given to ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)``); text is
    encoded with BOS first by the character tokenizer, with the tokenizer's special tokens
    (``add_special_tokens=True``) by a pretrained one. ``tokenizer`` None: ``TOKENIZER``
    extended with every character of the prompts and answers. Prompts are tokenized here, once,
    left-padded with the tokenizer's pad id (``pad_id``, PAD for the character tokenizer) to
    the longest (``prompt_len``), and stored as arrays; ``task.sample(key)`` draws a training
    row uniformly by index inside the compiled loop, ``task.sample_heldout`` a held-out one
    (a random ``heldout`` fraction of the rows, at least one, drawn with ``seed``; 0: none, and
    evaluation draws training rows). Each ``Prompt`` carries its row (``index``), by which
    Python reward functions get the row's other columns (``task.data``, a ``Records``).

    ``answer_column`` (when the rows have it): its values (as text) become the prompts'
    ``answer`` tokens, the target of SFT warm starts and of the in-graph ``exact_match``
    verifier (ending at the tokenizer's EOS ids), used when a run has no reward functions; ``max_new_tokens`` defaults to the
    longest answer plus EOS. A prompt longer than ``max_prompt_len`` tokens is a ValueError
    naming the row.

    Also reachable as an env id: ``GRPOConfig(env="text:dataset", env_kwargs={"data": ...,
    "prompt_column": "prompt", "heldout": 0.1, "seed": 0, "max_prompt_len": None,
    "answer_column": "answer"})``.
    """
    rows = load_records(records)
    if not isinstance(prompt_column, str):
        raise ValueError(f"prompt_column: must be a column name, got {prompt_column!r}")
    if not isinstance(heldout, (int, float)) or isinstance(heldout, bool) or not 0 <= heldout < 1:
        raise ValueError(f"heldout: must be a fraction in [0, 1), got {heldout!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed: must be an integer, got {seed!r}")
    if max_prompt_len is not None and (not isinstance(max_prompt_len, (int, np.integer))
                                       or isinstance(max_prompt_len, bool) or max_prompt_len < 1):
        raise ValueError(f"max_prompt_len: must be a positive integer, got {max_prompt_len!r}")
    for i, r in enumerate(rows):
        p = r.get(prompt_column)
        if p is None:
            have = ", ".join(map(repr, r)) or "none"
            raise ValueError(f"prompt_column: row {i} has no column {prompt_column!r} (it has "
                             f"{have})")
        if not isinstance(p, str) and not is_conversational(p):
            raise ValueError(f"data: row {i}'s prompt must be text or chat messages (a list "
                             f"of {{'role': ..., 'content': ...}}), got {p!r:.80}")
        if isinstance(p, str) and not p:
            raise ValueError(f"data: row {i}'s prompt is empty")
    if answer_column is not None and not any(r.get(answer_column) is not None for r in rows):
        answer_column = None
    answers = [("" if answer_column is None or r.get(answer_column) is None
                else str(r[answer_column])) for r in rows]
    if tokenizer is None:
        text = "".join(r[prompt_column] for r in rows if isinstance(r[prompt_column], str))
        tokenizer = TOKENIZER.extended("".join(dict.fromkeys(text + "".join(answers))))
    prompts, longest = [], (0, 0)
    for i, r in enumerate(rows):
        try:
            ids = encode_prompt(tokenizer, r[prompt_column])
        except ValueError as e:
            raise ValueError(f"data: row {i}: {e}") from None
        if len(ids) == 0:
            raise ValueError(f"data: row {i}'s prompt has no tokens")
        prompts.append(ids)
        longest = max(longest, (len(ids), -i))
    if max_prompt_len is not None and longest[0] > max_prompt_len:
        over = sum(len(p) > max_prompt_len for p in prompts)
        raise ValueError(f"max_prompt_len: row {-longest[1]}'s prompt has {longest[0]} tokens, "
                         f"more than max_prompt_len {max_prompt_len} ({over} of {len(rows)} "
                         "rows are longer); shorten them or raise max_prompt_len")
    answer_ids = [encode_answer(tokenizer, a) for a in answers]
    n = len(rows)
    pad = int(getattr(tokenizer, "pad_id", PAD))
    prompt_len = longest[0]
    answer_width = max(1, max(len(a) for a in answer_ids))
    order = np.random.default_rng(int(seed)).permutation(n)
    n_heldout = 0 if heldout == 0 else max(1, int(round(heldout * n)))
    if n_heldout >= n:
        raise ValueError(f"heldout: {heldout} of {n} rows leaves no training rows")
    n_train = n - n_heldout
    tokens = np.full((n, prompt_len), pad, np.int32)
    answers_arr = np.full((n, answer_width), PAD, np.int32)
    lengths, answer_lens = np.zeros(n, np.int32), np.zeros(n, np.int32)
    for j, i in enumerate(order):          # stored in split order: training rows first
        p, a = prompts[i], answer_ids[i]
        tokens[j, prompt_len - len(p):] = p
        answers_arr[j, :len(a)] = a
        lengths[j], answer_lens[j] = len(p), len(a)
    data = Prompt(jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(answers_arr),
                  jnp.asarray(answer_lens), jnp.asarray(order.astype(np.int32)))

    def at(i):
        return jax.tree.map(lambda x: x[i], data)

    def sample(key):
        return at(jax.random.randint(key, (), 0, n_train))

    def sample_heldout(key):
        return at(jax.random.randint(key, (), n_train, n))

    eos = tuple(int(i) for i in getattr(tokenizer, "eos_token_ids", ()))
    verify = exact_match if eos in ((), (EOS,)) else functools.partial(
        exact_match, eos_id=eos if len(eos) > 1 else eos[0])    # a pretrained tokenizer's EOS
    return TextTask(name, tokenizer, prompt_len, answer_width + 1, sample, verify,
                    sample_heldout if n_heldout else None,
                    data=Records(rows, prompt_column, answer_column))
