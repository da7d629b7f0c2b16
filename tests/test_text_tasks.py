"""jaxgrpo.text.tasks: prompts and rewards of every built-in task against plain-Python references
(the tokenizer: test_text_tokenizer.py; pass@k: test_text_evaluation.py; the TextTask interface,
completion_length, reference_completion and exact_match: test_text_interface.py)."""
import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.text import (
    BOS,
    EOS,
    PAD,
    TASKS,
    TOKENIZER,
    VOCAB_SIZE,
    Prompt,
    completion_length,
    make_task,
    reference_completion,
)

N = 2000          # prompts per case
N_CORRUPT = N     # completions scored per case (the shape verify is compiled for)
SLACK = 3         # completion budget past max_new_tokens, so tokens can follow the EOS

CASES = [
    ("addition", {}),
    ("addition", {"digits": 1, "reverse_answer": True}),
    ("addition", {"digits": 9}),
    ("addition", {"digits": 2, "leading_zeros": False}),
    ("addition", {"digits": 3, "leading_zeros": False, "reverse_answer": True}),
    ("multiply", {}),
    ("multiply", {"leading_zeros": False}),
    ("chain_sum", {}),
    ("chain_sum", {"terms": 4, "digits": 2}),
    ("sort", {}),
    ("reverse", {}),
    ("reverse", {"length": 3, "alphabet": "xyZ!"}),
    ("count", {}),
    ("count", {"length": 12, "alphabet": "ab"}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in opts.items()) for name, opts in CASES]


# ----------------------------------------------------------------------------- references

def _operand(s, digits, zeros=False):
    """An operand's text -> int: exactly ``digits`` digits with ``zeros`` (leading zeros
    written), else no leading zero and at most ``digits`` digits."""
    if zeros:
        assert len(s) == digits, f"{s!r} is not {digits} digits wide"
    else:
        assert s == str(int(s)), f"leading zero in {s!r}"
    assert int(s) < 10**digits
    return int(s)


def ref_parse(name, opts, text):
    """Prompt text -> (answer string, draws, K): draws are the uniform ints in [0, K) behind it."""
    if name in ("addition", "multiply"):
        d = opts.get("digits", 3 if name == "addition" else 2)
        op = "+" if name == "addition" else "*"
        zeros = opts.get("leading_zeros", True)
        m = re.fullmatch(rf"(\d+){re.escape(op)}(\d+)=", text)
        assert m, text
        a, b = (_operand(s, d, zeros) for s in m.groups())
        ans = str(a + b if name == "addition" else a * b)
        if zeros:       # the answer at full width: d + 1 digits a sum, 2 d a product
            ans = ans.zfill(d + 1 if name == "addition" else 2 * d)
        return (ans[::-1] if opts.get("reverse_answer") else ans), [a, b], 10**d
    if name == "chain_sum":
        terms, d = opts.get("terms", 3), opts.get("digits", 1)
        assert re.fullmatch(rf"\d+(\+\d+){{{terms - 1}}}=", text), text
        xs = [_operand(s, d) for s in text[:-1].split("+")]
        return str(sum(xs)), xs, 10**d
    if name == "sort":
        m = re.fullmatch(rf"sort:(\d{{{opts.get('length', 5)}}})=", text)
        assert m, text
        return "".join(sorted(m[1])), [int(ch) for ch in m[1]], 10
    alphabet = opts.get("alphabet", "abcdefghijklmnopqrstuvwxyz" if name == "reverse" else "abc")
    if name == "reverse":
        assert text.startswith("reverse:") and text.endswith("="), text
        s = text[len("reverse:"):-1]
        assert len(s) == opts.get("length", 5) and set(s) <= set(alphabet), text
        return s[::-1], [alphabet.index(ch) for ch in s], len(alphabet)
    assert name == "count"
    assert text.startswith("count ") and text[7] == ":" and text.endswith("="), text
    c, s = text[6], text[8:-1]
    assert len(s) == opts.get("length", 8) and set(s + c) <= set(alphabet), text
    return str(s.count(c)), [alphabet.index(ch) for ch in c + s], len(alphabet)


def ref_verify(tok, completion, answer):
    """Exact match of the tokens before the first EOS with the answer; 0 without an EOS. PAD
    and BOS before the EOS are wrong tokens (decode would skip them)."""
    completion = list(completion)
    if EOS not in completion:
        return 0.0
    head = completion[:completion.index(EOS)]
    return float(all(t > EOS for t in head) and tok.decode(head) == answer)


# ----------------------------------------------------------------------------- shared runs

@functools.cache
def task_of(case):
    """The task and two jitted functions: keys [B] -> (prompts, reference completions at
    max_new_tokens and at max_new_tokens + SLACK), and the vmapped verify."""
    name, opts = CASES[case]
    task = make_task(name, **opts)

    @jax.jit
    def sample(keys):
        prompts = jax.vmap(task.sample)(keys)
        ref = jax.vmap(reference_completion, (0, None))
        return prompts, ref(prompts, task.max_new_tokens), ref(prompts, task.max_new_tokens + SLACK)

    return task, sample, jax.jit(jax.vmap(task.verify))


@functools.cache
def sampled(case):
    """Prompts, reference completions (both widths; NumPy), prompt texts, Python answers."""
    task, sample, _ = task_of(case)
    prompts, *refs = jax.tree.map(np.asarray, sample(jax.random.split(jax.random.PRNGKey(case), N)))
    texts = [task.tokenizer.decode(t) for t in prompts.tokens]
    parsed = [ref_parse(*CASES[case], text) for text in texts]
    return prompts, refs, texts, parsed


def corrupted(task, answers, rng):
    """int32 [len(answers), max_new_tokens + SLACK] completions near the answers, of kinds:
    exact (with tokens after the EOS), one token replaced, no EOS, empty, a PAD/BOS inserted,
    answer cut short or extended, all random."""
    m, v = task.max_new_tokens + SLACK, task.tokenizer.vocab_size
    out = rng.integers(0, v, (len(answers), m)).astype(np.int32)
    for row, ans in zip(out, answers):
        ref = list(task.tokenizer.encode(ans)) + [EOS]
        kind = rng.integers(8)
        if kind == 1:
            ref[rng.integers(len(ref))] = rng.integers(v)
        elif kind == 2:
            ref[-1] = rng.integers(EOS + 1, v)
            row[:] = np.where(row == EOS, PAD, row)
        elif kind == 3:
            ref = [EOS]
        elif kind == 4:
            ref.insert(rng.integers(len(ref)), rng.choice([PAD, BOS]))
        elif kind == 5:
            ref = ref[:-2] + [EOS]
        elif kind == 6:
            ref = ref[:-1] + [int(task.tokenizer.encode(ans[-1])[0]), EOS]
        if kind != 7:
            row[:len(ref)] = ref[:m]
    return out


# ----------------------------------------------------------------------------- prompts

@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_prompts_match_python(case):
    task = task_of(case)[0]
    prompts, _, texts, parsed = sampled(case)
    p = task.prompt_len
    for tokens, length, answer, answer_len, text, (ans, _, _) in zip(*prompts[:4], texts, parsed):
        assert 0 < length <= p
        assert np.all(tokens[:p - length] == PAD) and tokens[p - length] == BOS
        assert np.all(tokens[p - length + 1:] > EOS)
        assert length == len(text) + 1
        assert answer_len == len(ans) and task.tokenizer.decode(answer) == ans
        assert np.all(answer[answer_len:] == PAD) and np.all(answer[:answer_len] > EOS)
    assert max(prompts.length) == p, "prompt_len is wider than the longest prompt"
    assert task.max_new_tokens == prompts.answer.shape[1] + 1
    assert max(prompts.answer_len) == prompts.answer.shape[1], "answer padded wider than needed"
    draws = np.concatenate([d for _, d, _ in parsed])
    k = parsed[0][2]
    assert abs(draws.mean() - (k - 1) / 2) < 5 * math.sqrt((k * k - 1) / 12 / len(draws))
    if k <= 100:
        assert set(draws.tolist()) == set(range(k))


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_reference_completion_verifies(case):
    task, _, verify = task_of(case)
    prompts, refs, _, parsed = sampled(case)
    for ref, m in zip(refs, (task.max_new_tokens, task.max_new_tokens + SLACK)):
        assert ref.shape == (N, m) and ref.dtype == np.int32
        for row, (ans, _, _) in zip(ref, parsed):
            want = task.tokenizer.encode(ans).tolist() + [EOS] + [PAD] * (m - len(ans) - 1)
            assert row.tolist() == want
    assert np.all(np.asarray(verify(prompts, refs[1], completion_length(refs[1]))) == 1.0)


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_verify_matches_python(case):
    task, _, verify = task_of(case)
    prompts, _, _, parsed = sampled(case)
    rng = np.random.default_rng(case)
    idx = rng.integers(0, N, N_CORRUPT)
    answers = [parsed[i][0] for i in idx]
    comps = corrupted(task, answers, rng)
    lengths = np.array([c.tolist().index(EOS) if EOS in c else len(c) for c in comps], np.int32)
    np.testing.assert_array_equal(completion_length(comps), lengths)
    rewards = np.asarray(verify(jax.tree.map(lambda x: x[idx], prompts), comps, lengths))
    expected = np.array([ref_verify(task.tokenizer, c, a) for c, a in zip(comps, answers)])
    np.testing.assert_array_equal(rewards, expected)
    assert rewards.dtype == np.float32
    assert 0.05 < expected.mean() < 0.6, "corruptions should mix right and wrong completions"


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_same_key_same_prompt_and_static_shapes(case):
    task, sample, _ = task_of(case)
    keys = jax.random.split(jax.random.PRNGKey(case), N)
    prompts = sampled(case)[0]
    again = sample(jnp.broadcast_to(keys[1], keys.shape))[0]    # one key in every row
    for x, y in zip(again[:4], prompts[:4]):    # index: None (no dataset)
        np.testing.assert_array_equal(x, np.broadcast_to(y[1], x.shape))
    assert len({t.tobytes() for t in prompts.tokens}) > 1
    shape = jax.eval_shape(task.sample, keys[0])
    assert isinstance(shape, Prompt)
    assert (shape.tokens.shape, shape.tokens.dtype) == ((task.prompt_len,), jnp.int32)
    assert (shape.length.shape, shape.length.dtype) == ((), jnp.int32)
    assert shape.answer.dtype == jnp.int32 and shape.answer.shape[0] + 1 == task.max_new_tokens
    assert (shape.answer_len.shape, shape.answer_len.dtype) == ((), jnp.int32)
    comp = jax.ShapeDtypeStruct((task.max_new_tokens,), jnp.int32)
    reward = jax.eval_shape(task.verify, shape, comp, jax.ShapeDtypeStruct((), jnp.int32))
    assert (reward.shape, reward.dtype) == ((), jnp.float32)
    assert isinstance(hash(task), int)
    typed = jax.random.wrap_key_data(keys)                     # new-style keys trace the same
    batched = jax.vmap(task.sample)
    assert jax.eval_shape(batched, typed) == jax.eval_shape(batched, keys)


# ----------------------------------------------------------------------------- make_task

@pytest.mark.parametrize("name, opts, message", [
    ("additon", {}, "unknown task 'additon' \\(did you mean 'addition'\\?\\); tasks: addition"),
    ("nope", {}, "unknown task 'nope'; tasks:"),
    ("addition", {"digit": 3}, "addition: unknown option 'digit' \\(did you mean 'digits'\\?\\)"),
    ("sort", {"alphabet": "ab"}, "sort: unknown option 'alphabet'; options: length"),
    ("addition", {"digits": 0}, "addition: digits: must be >= 1, got 0"),
    ("addition", {"digits": 10}, "addition: digits: must be <= 9 \\(int32 arithmetic\\), got 10"),
    ("addition", {"digits": "3"}, "addition: digits: must be an int, got str '3'"),
    ("addition", {"digits": True}, "addition: digits: must be an int, got bool True"),
    ("addition", {"reverse_answer": 1}, "addition: reverse_answer: must be a bool, got 1"),
    ("addition", {"leading_zeros": "no"}, "addition: leading_zeros: must be a bool, got 'no'"),
    ("multiply", {"leading_zeros": 0}, "multiply: leading_zeros: must be a bool, got 0"),
    ("multiply", {"digits": 5}, "multiply: digits: must be <= 4"),
    ("chain_sum", {"terms": 1}, "chain_sum: terms: must be >= 2, got 1"),
    ("chain_sum", {"terms": 64, "digits": 9},
     "chain_sum: terms \\* \\(10\\*\\*digits - 1\\) must fit in int32, got terms=64, digits=9"),
    ("sort", {"length": 0}, "sort: length: must be >= 1, got 0"),
    ("reverse", {"alphabet": ""}, "reverse: alphabet: must be a non-empty string"),
    ("count", {"alphabet": "aba"}, "count: alphabet: must not repeat characters, got 'aba'"),
])
def test_make_task_errors(name, opts, message):
    with pytest.raises(ValueError, match=message):
        make_task(name, **opts)


def test_tasks_registry():
    assert set(TASKS) == {"addition", "multiply", "chain_sum", "sort", "reverse", "count",
                          "reasoning_gym"}
    assert make_task("addition", digits=2).prompt_len == 1 + 2 + 1 + 2 + 1
    assert make_task("count", alphabet="ab").tokenizer is TOKENIZER
    assert make_task("reverse", alphabet="aZ").tokenizer.vocab_size == VOCAB_SIZE + 1


# ----------------------------------------------------------------------------- filler

def test_filler_answers_and_verifier_match_python():
    """``filler=K``: answers end with 0..K dots (each count drawn), the verifier ignores every
    dot, a completion that never ends still gets 0, and max_new_tokens grows by K."""
    K = 3
    task = make_task("addition", digits=2, filler=K)
    assert make_task("addition", digits=2, filler=0).max_new_tokens == 4
    assert task.max_new_tokens == 4 + K
    prompts = jax.jit(jax.vmap(task.sample))(jax.random.split(jax.random.key(0), 256))
    tok, M, rng = TOKENIZER, task.max_new_tokens, np.random.default_rng(0)
    counts, comps, want, rows = [], [], [], []
    for i in range(256):
        a, b = map(int, tok.decode(np.asarray(prompts.tokens[i])).rstrip("=").split("+"))
        answer = tok.decode(np.asarray(prompts.answer[i]))
        core, right = answer.rstrip("."), str(a + b).zfill(3)     # 3 digits, leading zeros
        assert core == right and set(answer[len(core):]) <= {"."}
        assert int(prompts.answer_len[i]) == len(answer)
        counts.append(len(answer) - len(core))
        for _ in range(3):
            s = list(core if rng.random() < 0.7 else str(a + b + 1).zfill(3))
            for _ in range(rng.integers(0, 6)):                  # dots anywhere, maybe too many
                s.insert(rng.integers(0, len(s) + 1), ".")
            s = "".join(s)
            ids = list(tok.encode(s)) + [EOS]
            ids = (ids + [PAD] * M)[:M]
            comps.append(ids)
            rows.append(i)
            want.append(float(len(s) < M and s.replace(".", "") == right))
    assert set(counts) == set(range(K + 1))
    comps = jnp.asarray(comps, jnp.int32)
    got = jax.jit(jax.vmap(task.verify))(jax.tree.map(lambda x: x[np.asarray(rows)], prompts),
                                         comps, completion_length(comps))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert 0.2 < np.mean(want) < 0.8
    refs = jax.vmap(task.reference_completion)(prompts)
    assert np.all(np.asarray(jax.vmap(task.verify)(prompts, refs, completion_length(refs))) == 1)
    with pytest.raises(ValueError, match="addition: filler: must be >= 0, got -1"):
        make_task("addition", filler=-1)


def test_filler_in_a_config():
    from jaxgrpo.config import GRPOConfig
    c = GRPOConfig(env="text:addition", env_kwargs={"digits": 2, "filler": 4})
    assert c.task.max_new_tokens == 8
    with pytest.raises(ValueError, match="env_kwargs: addition: filler: must be an int"):
        GRPOConfig(env="text:addition", env_kwargs={"filler": 1.5})
