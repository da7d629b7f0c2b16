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


# ----------------------------------------------------------------------------- from_records

from jaxgrpo.text import TOKENIZER, exact_match, from_records           # noqa: E402
from jaxgrpo.text.datasets import Records, Rows, reasoning_gym_records  # noqa: E402
from jaxgrpo.text.tokenizer import BOS                                  # noqa: E402

ROWS = [{"prompt": "1+2=", "answer": "3", "level": 1},
        {"prompt": "10+20=", "answer": "30", "level": 2},
        {"prompt": "4+4=", "answer": "8", "level": 1},
        {"prompt": "12+1=", "answer": "13", "level": 2},
        {"prompt": "0+0=", "answer": "0", "level": 0}]


class ChatTokenizer:
    """A stand-in for a pretrained tokenizer (``HFTokenizer``'s methods) over characters: a
    chat template ``<u>content<a>`` (what ``apply_chat_template`` receives is recorded)."""

    def __init__(self):
        self.char = TOKENIZER.extended("|ABCDEFGHIJKLMNOPQRSTUVWXYZ!'\"")
        self.vocab_size, self.pad_id, self.calls = self.char.vocab_size, 0, []

    def apply_chat_template(self, messages, add_generation_prompt=False):
        self.calls.append((messages, add_generation_prompt))
        text = "".join(f"<{m['role'][0]}>{m['content']}" for m in messages)
        return list(self.char.encode(text + ("<a>" if add_generation_prompt else ""), bos=True))

    def encode(self, text, add_special_tokens=False):
        return self.char.encode(text, bos=add_special_tokens)

    def decode(self, ids, skip_special_tokens=True):
        return self.char.decode(ids)


def test_from_records_left_pads_with_bos_and_samples_rows_by_index():
    task = from_records(ROWS, heldout=0.4, seed=1)
    tok = task.tokenizer
    assert isinstance(task.data, Records) and task.data.keys == ["answer", "level"]
    assert task.prompt_len == 1 + max(len(r["prompt"]) for r in ROWS)
    assert task.max_new_tokens == 3                     # the longest answer and EOS
    p = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 200))
    t, idx = np.asarray(p.tokens), np.asarray(p.index)
    for row, i in zip(t, idx):
        text = ROWS[i]["prompt"]
        assert row.tolist() == [PAD] * (task.prompt_len - len(text) - 1) + [BOS] + \
            tok.encode(text).tolist()
    np.testing.assert_array_equal(np.asarray(p.length),
                                  [len(ROWS[i]["prompt"]) + 1 for i in idx])
    assert all(tok.decode(a) == ROWS[i]["answer"] for a, i in zip(np.asarray(p.answer), idx))
    h = np.asarray(jax.vmap(task.sample_heldout)(jax.random.split(jax.random.key(1), 100)).index)
    # 2 of 5 rows held out, drawn with the seed; training draws never see them
    assert len(set(h)) == 2 and len(set(idx)) == 3 and not set(h) & set(idx)
    order = np.random.default_rng(1).permutation(5)
    assert set(h) == set(order[3:].tolist())
    assert from_records(ROWS, heldout=0).sample_heldout is None


def test_from_records_reads_jsonl_json_and_datasets_alike(tmp_path):
    import json
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    sources = [ROWS, str(tmp_path / "d.jsonl"), tmp_path / "d.json"]
    import datasets
    sources.append(datasets.Dataset.from_list(ROWS))
    key = jax.random.split(jax.random.key(0), 16)
    ref = jax.vmap(from_records(ROWS).sample)(key)
    for src in sources:
        task = from_records(src)
        assert task.data.rows == ROWS
        got = jax.vmap(task.sample)(key)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_array_equal(a, b)


def test_chat_prompts_go_through_the_chat_template():
    rows = [{"prompt": [{"role": "system", "content": "Be brief"},
                        {"role": "user", "content": "2+2?"}], "answer": "4"},
            {"prompt": "plain 3+3?", "answer": "6"}]
    tok = ChatTokenizer()
    task = from_records(rows, tok, heldout=0)
    assert tok.calls == [(rows[0]["prompt"], True)]
    first = tok.char.encode("<s>Be brief<u>2+2?<a>", bos=True)
    second = tok.char.encode("plain 3+3?", bos=True)
    data = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 64))
    got = {int(i): np.asarray(t)[-n:].tolist() for i, t, n in zip(data.index, data.tokens,
                                                                     data.length)}
    assert got == {0: first.tolist(), 1: second.tolist()}
    with pytest.raises(ValueError, match="row 0: chat-message prompts need a tokenizer"):
        from_records(rows)


def test_from_records_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="row 1 has no column 'question'"):
        from_records([{"question": "a"}, {"prompt": "b"}], prompt_column="question")
    with pytest.raises(ValueError, match="row 0 of the list must be a dict"):
        from_records(["1+1="])
    with pytest.raises(ValueError, match="has no rows"):
        from_records([])
    with pytest.raises(ValueError, match="cannot read"):
        from_records(str(tmp_path / "missing.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        from_records(str(tmp_path / "bad.jsonl"))
    with pytest.raises(ValueError, match="max_prompt_len: row 1's prompt has 7 tokens, more "
                                         "than max_prompt_len 6 \\(1 of 5 rows"):
        from_records(ROWS, max_prompt_len=6)
    with pytest.raises(ValueError, match="heldout: must be a fraction"):
        from_records(ROWS, heldout=1.0)
    with pytest.raises(ValueError, match="prompt must be text or chat messages"):
        from_records([{"prompt": 3}])
    task = from_records([{"prompt": "a="}, {"prompt": "b="}], heldout=0)
    assert task.data.answer_column is None and task.data.keys == []


def test_rows_hash_by_content_and_configs_cache_the_task(tmp_path):
    assert hash(Rows(ROWS)) == hash(Rows([dict(r) for r in ROWS])) and Rows(ROWS) == Rows(ROWS)
    assert hash(Rows(ROWS)) != hash(Rows(ROWS[:4]))
    with pytest.raises(ValueError, match="row 0, column 'x'"):
        Rows([{"prompt": "a", "x": object()}])
    kw = dict(num_layers=1, width=16, num_heads=2, max_len=16)
    a = GRPOConfig(env="text:dataset", env_kwargs={"data": ROWS}, **kw)
    b = GRPOConfig(env="text:dataset", env_kwargs={"data": [dict(r) for r in ROWS]}, **kw)
    assert a == b and a.task is b.task and isinstance(a.env_kwargs["data"], Rows)
    assert a.replace(max_new_tokens=5).task.max_new_tokens == 5
    path = tmp_path / "d.jsonl"
    import json
    path.write_text("\n".join(json.dumps(r) for r in ROWS))
    c = GRPOConfig(env="text:dataset", env_kwargs={"data": str(path), "heldout": 0.2}, **kw)
    assert c.task.data.rows == ROWS and c.task.sample_heldout is not None
    path.write_text("\n".join(json.dumps(r) for r in ROWS[:3]))     # a changed file: rebuilt
    assert len(c.replace().task.data.rows) == 3
    with pytest.raises(ValueError, match="env_kwargs: dataset: unknown option 'promt_column' "
                                         "\\(did you mean 'prompt_column'"):
        GRPOConfig(env="text:dataset", env_kwargs={"data": ROWS, "promt_column": "q"}, **kw)
    with pytest.raises(ValueError, match="option 'data' is required"):
        GRPOConfig(env="text:dataset", **kw)
    with pytest.raises(ValueError, match="env_kwargs: the dataset's rows have no answer column"):
        GRPOConfig(env="text:dataset", env_kwargs={"data": [{"prompt": "a="}] * 3}, **kw)


def test_reasoning_gym_natural_form_is_chat_messages_with_columns():
    rows = reasoning_gym_records("chain_sum", 12, 5, system_prompt="Answer in <answer> tags")
    entries = reasoning_gym_entries("chain_sum", 12, 5)
    assert [r["answer"] for r in rows] == [e["answer"] for e in entries]
    assert rows[0]["prompt"] == [{"role": "system", "content": "Answer in <answer> tags"},
                                 {"role": "user", "content": entries[0]["question"]}]
    tok = ChatTokenizer()
    task = from_reasoning_gym("chain_sum", 12, 5, natural=True, tokenizer=tok,
                              system_prompt="Answer in <answer> tags")
    assert task.data.rows == rows and task.data.keys == ["answer", "question", "metadata"]
    assert len(tok.calls) == 12 and all(add for _, add in tok.calls)
    with pytest.raises(ValueError, match="tokenizer is an option of the natural form"):
        from_reasoning_gym("chain_sum", 12, 5, tokenizer=tok)


def test_pretrained_tokenizer_prompts_equal_transformers(tmp_path):
    """With a Hugging Face tokenizer folder (``env_kwargs["tokenizer"]``, or ``init_from``'s):
    chat prompts are transformers' ``apply_chat_template(..., add_generation_prompt=True)``
    ids and text prompts its ``add_special_tokens=True`` ids, left-padded with the pad id;
    Python rewards decode completions with it."""
    import importlib

    import transformers
    make_tokenizer = importlib.import_module("test_hf_tokenizer").make_tokenizer
    from jaxgrpo.text.rewardfns import RewardFns, exact_match_reward
    make_tokenizer(tmp_path / "tok")
    rows = [{"prompt": [{"role": "user", "content": f"what is {a}+7? think"}],
             "answer": str(a + 7)} for a in range(4)] + [{"prompt": "the cat sat", "answer": "x"}]
    c = GRPOConfig(env="text:dataset", env_kwargs={"data": rows, "heldout": 0,
                                                   "tokenizer": str(tmp_path / "tok")},
                   num_layers=1, width=16, num_heads=2, max_len=64)
    task, tok = c.task, c.task.tokenizer
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    p = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 32))
    assert set(np.asarray(p.index).tolist()) == set(range(5))
    for t, n, i in zip(np.asarray(p.tokens), np.asarray(p.length), np.asarray(p.index)):
        r = rows[i]["prompt"]
        ref = (hf.apply_chat_template(r, add_generation_prompt=True, tokenize=True)
               if isinstance(r, list) else hf(r, add_special_tokens=True)["input_ids"])
        ref = ref["input_ids"] if hasattr(ref, "keys") else ref
        assert t[-n:].tolist() == list(ref) and (t[:-n] == tok.pad_id).all()
    fns = RewardFns((exact_match_reward,), (1.0,), ("exact_match_reward",), tok, task.data)
    ans = [tok.encode(f"<answer>{rows[i]['answer']}</answer>") for i in np.asarray(p.index)]
    comp = np.full((32, max(map(len, ans)) + 1), tok.pad_id, np.int32)
    for r, a in enumerate(ans):
        comp[r, :len(a) + 1] = [*a, tok.eos_token_ids[0]]
    out = fns.per_function(p, jnp.asarray(comp), jnp.asarray([len(a) for a in ans]),
                           jnp.ones(32, bool))
    np.testing.assert_array_equal(np.asarray(out), np.ones((32, 1)))
    # the in-graph exact match ends answers at this tokenizer's EOS
    ref = jax.vmap(task.reference_completion)(p) if hasattr(task, "eos_id") else None
    if ref is not None:
        n = jnp.asarray(p.answer_len)
        assert (np.asarray(jax.vmap(task.verify)(p, ref, n)) == 1).all()


def test_exact_match_takes_the_tokenizers_eos_ids():
    answer = jnp.asarray([7, 8, PAD])
    p = Prompt(jnp.zeros(2, jnp.int32), jnp.int32(2), answer, jnp.int32(2))
    for eos, ok in [((40, 41), [1, 1, 0]), (41, [0, 1, 0])]:
        comps = jnp.asarray([[7, 8, 40, PAD], [7, 8, 41, PAD], [7, 8, EOS, PAD]])
        got = [float(exact_match(p, c, jnp.int32(2), eos)) for c in comps]
        assert got == ok, (eos, got)
    assert float(exact_match(p, jnp.asarray([7, 8, EOS, PAD]), jnp.int32(2))) == 1.0
