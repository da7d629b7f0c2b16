"""jaxgrpo.text.interface: Prompt and TextTask, and the helpers every task uses
(completion_length, reference_completion, exact_match) on hand-made prompts and against a
plain-Python reference (the built-in tasks: test_text_tasks.py)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.text import (
    BOS,
    EOS,
    PAD,
    TOKENIZER,
    Prompt,
    TextTask,
    completion_length,
    exact_match,
    make_task,
    reference_completion,
)

A, B, C = (int(t) for t in TOKENIZER.encode("123"))          # three answer tokens


def prompt(answer, width=3):
    """A Prompt whose answer is ``answer`` (token list) padded to ``width``."""
    tokens = np.concatenate([TOKENIZER.encode("q:", bos=True), [PAD] * 2]).astype(np.int32)
    padded = np.array(list(answer) + [PAD] * (width - len(answer)), np.int32)
    return Prompt(jnp.asarray(tokens), jnp.int32(3), jnp.asarray(padded), jnp.int32(len(answer)))


def py_exact_match(answer, completion):
    """1.0 when the tokens before the first EOS are exactly ``answer`` (no EOS: 0.0)."""
    completion = list(completion)
    if EOS not in completion:
        return 0.0
    return float(completion[:completion.index(EOS)] == list(answer))


# ----------------------------------------------------------------------------- completion_length

def test_completion_length():
    comps = np.array([[A, B, EOS, C], [EOS, A, EOS, B], [A, B, C, A], [PAD, BOS, A, EOS]],
                     np.int32)
    got = completion_length(comps)
    np.testing.assert_array_equal(got, [2, 0, 4, 3])        # first EOS; none: M
    assert got.dtype == jnp.int32
    assert completion_length(jnp.asarray(comps[0])).shape == ()
    batched = completion_length(np.stack([comps, comps[::-1]]))            # [2, 4, M]
    np.testing.assert_array_equal(batched, [[2, 0, 4, 3], [3, 4, 0, 2]])
    np.testing.assert_array_equal(jax.jit(completion_length)(comps), [2, 0, 4, 3])


# ----------------------------------------------------------------------------- reference_completion

@pytest.mark.parametrize("m, want", [
    (6, [A, B, EOS, PAD, PAD, PAD]),
    (3, [A, B, EOS]),
    (2, [A, B]),                                             # EOS cut off
    (1, [A]),                                                # and the answer's tail
])
def test_reference_completion(m, want):
    p = prompt([A, B])
    got = reference_completion(p, m)
    assert got.dtype == jnp.int32 and got.tolist() == want
    task = TextTask("t", TOKENIZER, 5, m, lambda key: p, exact_match)
    assert task.reference_completion(p).tolist() == want                # max_new_tokens
    assert task.reference_completion(p, 4).tolist() == reference_completion(p, 4).tolist()


def test_reference_completion_of_an_empty_answer_and_under_vmap():
    assert reference_completion(prompt([]), 3).tolist() == [EOS, PAD, PAD]
    prompts = jax.tree.map(lambda *x: jnp.stack(x), prompt([A]), prompt([A, B, C]), prompt([]))
    got = jax.jit(jax.vmap(reference_completion, (0, None)), static_argnums=1)(prompts, 4)
    assert got.tolist() == [[A, EOS, PAD, PAD], [A, B, C, EOS], [EOS, PAD, PAD, PAD]]


# ----------------------------------------------------------------------------- exact_match

@pytest.mark.parametrize("completion, length, reward", [
    ([A, B, EOS, C], 2, 1.0),                # the answer, EOS, anything after
    ([A, B, EOS, EOS], 2, 1.0),
    ([A, B, EOS, C], 3, 0.0),                # a wrong length is not trusted
    ([A, C, EOS, PAD], 2, 0.0),              # a wrong token
    ([A, EOS, PAD, PAD], 1, 0.0),            # too short
    ([A, B, C, EOS], 3, 0.0),                # too long
    ([A, B, C, A], 4, 0.0),                  # truncated: no EOS
    ([A, PAD, B, EOS], 3, 0.0),              # a PAD inside is a wrong token, not skipped
    ([BOS, A, B, EOS], 3, 0.0),
])
def test_exact_match_hand_cases(completion, length, reward):
    got = exact_match(prompt([A, B]), jnp.asarray(completion, jnp.int32), jnp.int32(length))
    assert got.dtype == jnp.float32 and float(got) == reward


def test_exact_match_against_python():
    """Every completion of width 3 over {A, B, EOS, PAD} against answers of 0 to 3 tokens
    (answer width 3: the answer may fill the completion, then there is no room for EOS)."""
    comps = np.array(list(itertools.product([A, B, EOS, PAD], repeat=3)), np.int32)
    verify = jax.jit(jax.vmap(exact_match, (None, 0, 0)))
    for answer in ([], [A], [B, A], [A, B, A]):
        got = np.asarray(verify(prompt(answer), comps, completion_length(comps)))
        want = np.array([py_exact_match(answer, c) for c in comps], np.float32)
        np.testing.assert_array_equal(got, want)
        assert want.sum() == (1.0 if len(answer) < 3 else 0.0) * 4 ** (2 - len(answer))


def test_verify_short_budgets():
    """Completions narrower than the answer: truncated, reward 0; the answer then EOS still 1."""
    task = make_task("sort")
    assert task.verify is exact_match
    prompt = task.sample(jax.random.PRNGKey(0))                                   # M == A + 1
    answer = prompt.answer[:5]
    comps = [np.concatenate([answer, answer])[:m] for m in (1, 3, 5)]
    comps += [np.concatenate([answer, [EOS]])] * 3
    lengths = [completion_length(c) for c in comps[:3]] + [5, 6, 4]   # the last two wrong
    verify = jax.jit(task.verify)
    assert [float(verify(prompt, c, n)) for c, n in zip(comps, lengths)] == [0, 0, 0, 1, 0, 0]


# ----------------------------------------------------------------------------- TextTask

def test_text_task_is_static_and_replaceable():
    p = prompt([A])
    task = TextTask("t", TOKENIZER, 5, 2, lambda key: p, exact_match)
    assert task.sample_heldout is None and isinstance(hash(task), int)
    longer = task._replace(max_new_tokens=4)
    assert longer.reference_completion(p).tolist() == [A, EOS, PAD, PAD]
    assert Prompt._fields == ("tokens", "length", "answer", "answer_len", "index")
    assert p.index is None and task.data is None     # a generated task: no dataset rows


def test_user_defined_task():
    digits = jnp.asarray(TOKENIZER.encode("0123456789"))

    def sample(key):
        d = digits[jax.random.randint(key, (), 0, 10)]
        tokens = jnp.concatenate([TOKENIZER.encode("echo:", bos=True), d[None],
                                  TOKENIZER.encode("=")])
        return Prompt(tokens, jnp.int32(tokens.shape[0]), d[None], jnp.int32(1))

    echo = TextTask("echo", TOKENIZER, 8, 2, sample, exact_match)

    @jax.jit    # unbatched: randint under vmap compiles slowly
    def run(key):
        prompt = echo.sample(key)
        ref = echo.reference_completion(prompt)
        return prompt, echo.verify(prompt, ref, completion_length(ref))

    runs = [run(key) for key in jax.random.split(jax.random.PRNGKey(0), 64)]
    assert {TOKENIZER.decode(p.tokens) for p, _ in runs} == {f"echo:{d}=" for d in range(10)}
    assert all(r == 1.0 for _, r in runs)
