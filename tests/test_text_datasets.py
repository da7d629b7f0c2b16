"""jaxgrpo.text.datasets: datasets from reasoning-gym (the ``jaxgrpo[text]`` extra, installed
by ``.ci/run``): prompts and answers as arrays sampled by index, and the in-graph exact-match
reward against reasoning-gym's own ``score_answer`` (thresholded at 1.0) on generated
entries."""
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reasoning_gym
from jaxgrpo.config import GRPOConfig
from jaxgrpo.text import EOS, PAD, Prompt, completion_length, from_reasoning_gym, heldout_prompts
from jaxgrpo.text.datasets import reasoning_gym_entries

SIZE = 300


def candidates(answer, alphabet, rng):
    """The answer and strings near it: every deletion, and random substitutions, insertions,
    an appended character, a prefix, a doubled answer and the empty string."""
    out = {answer, answer[:-1], answer + answer, ""}
    out |= {answer[:i] + answer[i + 1:] for i in range(len(answer))}
    for _ in range(6):
        i, c = rng.randrange(len(answer) + 1), rng.choice(alphabet)
        out.add(answer[:i] + c + answer[i:])
        if i < len(answer):
            out.add(answer[:i] + c + answer[i + 1:])
    out.add(answer + rng.choice(alphabet))
    return sorted(out)


def same_number(a, b):
    try:
        return float(a.replace(",", "")) == float(b)
    except ValueError:
        return False


@pytest.mark.parametrize("name", ["basic_arithmetic", "chain_sum", "spell_backward"])
def test_in_graph_reward_is_score_answer_at_one(name):
    task = from_reasoning_gym(name, size=SIZE, seed=7)
    entries = reasoning_gym_entries(name, SIZE, 7)
    scorer = reasoning_gym.create_dataset(name, size=SIZE, seed=7)
    tok, M = task.tokenizer, task.max_new_tokens
    # the characters the model can emit: every non-special token of the task's vocabulary
    alphabet = tok.chars
    rng = random.Random(0)
    rows, texts, scores, index = [], [], [], []
    for i, e in enumerate(entries):
        answer = e["answer"].lower() if name == "spell_backward" else e["answer"]
        for cand in candidates(answer, alphabet, rng):
            if len(cand) >= M:     # cannot end with EOS within max_new_tokens: always 0
                continue
            comp = np.full(M, PAD, np.int32)
            comp[:len(cand) + 1] = tok.encode(cand, eos=True)
            rows.append(comp)
            texts.append(cand)
            index.append(i)
            scores.append(scorer.score_answer(cand, e))
    # the prompt the verifier sees: the entry's answer, encoded here (the task's own stored
    # answers are checked against the entries in the sampling test below)
    width = max(len(e["answer"]) for e in entries)
    answers = np.full((len(entries), width), PAD, np.int32)
    for i, e in enumerate(entries):
        a = e["answer"].lower() if name == "spell_backward" else e["answer"]
        answers[i, :len(a)] = tok.encode(a)
    idx = np.asarray(index)
    data = Prompt(jnp.zeros((len(idx), 1), jnp.int32), jnp.ones(len(idx), jnp.int32),
                  jnp.asarray(answers[idx]), jnp.asarray((answers[idx] != PAD).sum(1)))
    comp = jnp.asarray(np.stack(rows))
    got = np.asarray(jax.jit(jax.vmap(task.verify))(data, comp, completion_length(comp)))
    scores = np.asarray(scores)
    expected = (scores >= 1.0).astype(np.float32)
    assert len(rows) > 5 * SIZE and expected.sum() >= SIZE     # every answer is among them
    differ = np.flatnonzero(got != expected)
    if name == "chain_sum":
        # the one documented difference: chain_sum's scorer accepts other spellings of the
        # number (leading zeros, '+6'); exact match never accepts what the scorer rejects
        assert all(expected[j] == 1 and got[j] == 0 and same_number(texts[j],
                   entries[index[j]]["answer"]) for j in differ)
    elif name == "spell_backward":
        # spell_backward's scorer gives a completion that extends the answer 1/len per matching
        # character, and takes 0.2 off only when that sum is exactly 1.0: for some lengths the
        # float sum is 1 + 1 ulp, so 'talps,' scores above 1.0. Exact match counts it wrong.
        assert all(scores[j] > 1.0 and got[j] == 0 and texts[j].startswith(
                   entries[index[j]]["answer"].lower()) for j in differ)
        assert (got[scores <= 1.0] == expected[scores <= 1.0]).all()
    else:
        assert differ.size == 0, [(texts[j], entries[index[j]]["answer"]) for j in differ[:5]]


def test_prompts_are_compact_and_sampled_by_index():
    entries = reasoning_gym_entries("chain_sum", 200, 3)
    task = from_reasoning_gym("chain_sum", size=200, seed=3)
    tok = task.tokenizer
    train = {entries[i]["metadata"]["expression"].replace(" ", "") + "=" for i in range(180)}
    held = {entries[i]["metadata"]["expression"].replace(" ", "") + "=" for i in range(180, 200)}
    p = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 400))
    seen = {tok.decode(t) for t in np.asarray(p.tokens)}
    assert seen <= train and len(seen) > 100
    answers = {tok.decode(t): tok.decode(a) for t, a in zip(np.asarray(p.tokens),
                                                             np.asarray(p.answer))}
    by_prompt = {e["metadata"]["expression"].replace(" ", "") + "=": e["answer"] for e in entries}
    assert all(by_prompt[q] == a for q, a in answers.items())
    h = heldout_prompts(task, 64)
    assert {tok.decode(t) for t in np.asarray(h.tokens)} <= held
    # left-padded with BOS first, as the built-in tasks
    t = np.asarray(p.tokens)
    assert (t[:, -1] != PAD).all() and (t == 1).sum(1).tolist() == [1] * len(t)
    assert (t != EOS).all()


def test_reachable_as_an_env_id_with_clear_errors():
    c = GRPOConfig(env="text:reasoning_gym", env_kwargs={"dataset": "spell_backward", "size": 100},
                   num_layers=1, width=32, num_heads=2, max_len=32)
    assert c.task.name == "reasoning_gym:spell_backward"
    with pytest.raises(ValueError, match="unknown dataset 'chain_sun' \\(did you mean 'chain_sum'"):
        GRPOConfig(env="text:reasoning_gym", env_kwargs={"dataset": "chain_sun"})
    with pytest.raises(ValueError, match="option 'dataset' is required"):
        GRPOConfig(env="text:reasoning_gym")
    with pytest.raises(ValueError, match="chain_sum does not accept options"):
        GRPOConfig(env="text:reasoning_gym", env_kwargs={"dataset": "chain_sum", "max_term": 3})
    with pytest.raises(ValueError, match="max_len"):
        GRPOConfig(env="text:reasoning_gym", env_kwargs={"dataset": "basic_arithmetic"},
                   max_len=16)


def test_trains_in_the_compiled_loop_and_evaluates_on_the_heldout_split():
    from jaxgrpo.text import evaluate_text
    from jaxgrpo.train import make_train
    c = GRPOConfig(env="text:reasoning_gym",
                   env_kwargs={"dataset": "chain_sum", "size": 200, "max_terms": 2,
                               "max_digits": 1},
                   num_layers=1, width=32, num_heads=2, max_len=16, num_groups=4, group_size=4,
                   num_iterations=2, chunk_size=8)
    state, m = jax.jit(make_train(c))(jax.random.key(0))
    assert np.isfinite(np.asarray(m["reward"])).all() and np.asarray(m["env_steps"])[-1] > 0
    params = jax.tree.map(lambda x: x[None], state.params)
    res = evaluate_text(c, params, num_prompts=16, num_samples=2, examples=2)
    assert 0.0 <= res["greedy_accuracy"]["mean"] <= 1.0
    held = {e["metadata"]["expression"].replace(" ", "") + "="
            for e in reasoning_gym_entries("chain_sum", 200, 0, max_terms=2, max_digits=1)[180:]}
    assert {ex["prompt"] for ex in res["examples"]} <= held
