"""Python reward functions (``jaxgrpo.text.rewardfns``) against hand-computed values: the
built-ins, TRL's combination (weights, None), the host callback's inputs (rows, decoded
completions, columns) and its vmapped form (one call for every seed), scoring with unscorable
completions, config fields and their errors, and a short GRPO run on a dataset task that
learns what its Python reward asks for, with metrics equal to what the function returned."""
import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from jaxgrpo.config import GRPOConfig
from jaxgrpo.configio import apply_override, config_from_dict, config_to_dict
from jaxgrpo.text import EOS, PAD, TOKENIZER, from_records
from jaxgrpo.text import grpo as tg
from jaxgrpo.text.rewardfns import (RewardFns, call_reward_func, combine_numpy,
                                    exact_match_reward, extract_answer, format_reward,
                                    math_verify_reward, resolve, reward_names, spec_of,
                                    think_answer_format)
from jaxgrpo.train import make_train

TINY = dict(num_layers=1, width=16, num_heads=2, max_len=16)
ROWS = [{"prompt": f"{a}+{b}=", "answer": str(a + b), "level": a} for a in range(3)
        for b in range(3)]


def zero_reward(prompts, completions, **kwargs):
    return [0.0] * len(completions)


def digit_reward(prompts, completions, **kwargs):
    """1 for a completion starting with a digit, 0 otherwise, None for an empty one."""
    return [None if c == "" else float(c[:1].isdigit()) for c in completions]


def cfg(**kw):
    base = dict(env="text:dataset", env_kwargs={"data": ROWS}, num_groups=2, group_size=4,
                chunk_size=8, num_iterations=2, reward_funcs=[zero_reward], **TINY)
    return GRPOConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- built-ins

def test_extract_answer():
    assert extract_answer("<think>2+2</think><answer> 4 </answer>") == "4"
    assert extract_answer("<answer>1</answer> then <answer>x y</answer>") == "x y"
    assert extract_answer("so it is 1,000.") == "1000"
    assert extract_answer("a 3 b -4.5") == "-4.5"
    assert extract_answer("no number") is None


def test_exact_match_and_format_rewards():
    comps = ["<answer>6</answer>", "it is 6.0", "x", "7", "06"]
    assert exact_match_reward(None, comps, ["6", "6", "6", None, "6"]) == \
        [1.0, 1.0, 0.0, None, 1.0]
    chat = [[{"role": "assistant", "content": "<answer>12</answer>"}]]
    assert exact_match_reward(None, chat, ["12"]) == [1.0]
    good = ["<think>a</think><answer>b</answer>", " <think>\na\n</think>\n<answer>b</answer>\n"]
    bad = ["<answer>b</answer>", "<think>a</think><answer>b</answer> extra", "<think>a</think>"]
    assert think_answer_format(None, good + bad) == [1.0, 1.0, 0.0, 0.0, 0.0]
    ends = format_reward(r"[0-9]+")
    assert ends(None, ["123", "12a", ""]) == [1.0, 0.0, 0.0]
    assert reward_names([ends, think_answer_format, zero_reward]) == \
        ("format_reward", "format_reward_2", "zero_reward")
    with pytest.raises(ValueError, match="not a regular expression"):
        format_reward("(")


def test_math_verify_reward():
    importlib.import_module("math_verify")     # the test extra has it: a failure, not a skip
    comps = ["The answer is $0.5$", r"so $\boxed{3}$", "4", "x",
             [{"role": "assistant", "content": r"$\frac{2}{4}$"}]]
    assert math_verify_reward(None, comps, [r"\frac{1}{2}", "3", "3", None, "0.5"]) == \
        [1.0, 1.0, 0.0, None, 1.0]


def test_reasoning_gym_reward_is_its_scorer():
    from jaxgrpo.text.datasets import reasoning_gym_records
    from jaxgrpo.text.rewardfns import reasoning_gym_reward
    rows = reasoning_gym_records("chain_sum", 3, 0)
    cols = {k: [r[k] for r in rows] for k in ("answer", "metadata", "question")}
    comps = [f"<think>add</think><answer>{rows[0]['answer']}</answer>", "nonsense",
             f" {rows[2]['answer']} "]
    assert reasoning_gym_reward(None, comps, **cols) == [1.0, 0.0, 1.0]
    assert reasoning_gym_reward(None, ["1"], ["1"], [{}]) == [None]


def test_math_verify_missing_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(ValueError, match="needs the math-verify package: pip install"):
        math_verify_reward(None, ["1"], ["1"])


def test_resolve_and_spec_round_trip():
    f = resolve("jaxgrpo.text.rewardfns:exact_match_reward")
    assert f is exact_match_reward and spec_of(f) == "jaxgrpo.text.rewardfns:exact_match_reward"
    g = resolve("jaxgrpo.text.rewardfns:format_reward('<a>[0-9]</a>')")
    assert g == format_reward("<a>[0-9]</a>") and g(None, ["<a>5</a>"]) == [1.0]
    assert resolve(spec_of(g)) == g
    assert spec_of(lambda prompts, completions: []) is None
    assert spec_of(zero_reward) == f"{__name__}:zero_reward"
    for bad, msg in [("exact_match_reward", "is not 'module:function'"),
                     ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
                     ("jaxgrpo.text.rewardfns:nope", "has no 'nope'"),
                     ("jaxgrpo.text.rewardfns:format_reward(x)", "must be Python literals"),
                     ("jaxgrpo.text.rewardfns:DEFAULT_FORMAT", "is not callable"), (3, "got 3")]:
        with pytest.raises(ValueError, match=msg):
            resolve(bad)


# ----------------------------------------------------------------------------- combining

def test_combine_is_trls_weighted_nansum_with_unscorable_rows():
    nan = np.nan
    per = np.array([[1.0, 0.0], [nan, 1.0], [0.5, nan], [nan, nan], [0.0, 2.0]], np.float32)
    w = (1.0, 0.5)
    expected = [1.0, 0.5, 0.5, nan, 1.0]            # by hand: 1*a + 0.5*b, None counts nothing
    fns = RewardFns((zero_reward, zero_reward), w, ("a", "b"), None)
    np.testing.assert_allclose(np.asarray(fns.combine(jnp.asarray(per))), expected)
    np.testing.assert_allclose(combine_numpy(per, w), expected)


def test_call_reward_func_checks_the_output_and_names_the_function():
    ok = call_reward_func(lambda **k: np.array([1, 0.5]), "f", ["p", "q"], ["a", "b"],
                          [[3], [4]], {})
    np.testing.assert_array_equal(ok, [1.0, 0.5])
    assert np.isnan(call_reward_func(lambda **k: [None], "f", ["p"], ["a"], [[3]], {})).all()
    cases = [(lambda **k: 1 / 0, "my_fn raised ZeroDivisionError: division by zero"),
             (lambda **k: [1.0], "my_fn returned 1 rewards for 2 completions"),
             (lambda **k: ["1", 2], "my_fn returned '1' for completion 0"),
             (lambda **k: 1.0, "my_fn must return a list of 2 floats")]
    for f, msg in cases:
        with pytest.raises(ValueError, match=msg):
            call_reward_func(f, "my_fn", ["p", "q"], ["a", "b"], [[3], [4]], {})


# ----------------------------------------------------------------------------- the callback

@pytest.fixture(scope="module")
def task():
    return from_records(ROWS, heldout=0)


def batch(task, rows, texts, ended):
    """A Prompt batch of ``rows`` and completions ``texts`` (EOS after those ``ended``; the
    others fill all M = 4 tokens, as a truncated completion does)."""
    tok, M = task.tokenizer, 4
    idx = jnp.asarray(rows, jnp.int32)
    data = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 64))
    pos = {int(i): j for j, i in enumerate(np.asarray(data.index))}
    prompts = jax.tree.map(lambda x: x[jnp.asarray([pos[r] for r in rows])], data)
    comp = np.full((len(rows), M), PAD, np.int32)
    for r, (t, e) in enumerate(zip(texts, ended)):
        ids = tok.encode(t, eos=e)[:M]
        comp[r, :len(ids)] = ids
    length = np.asarray([len(t) if e else M for t, e in zip(texts, ended)], np.int32)
    assert (np.asarray(prompts.index) == np.asarray(idx)).all()
    return prompts, jnp.asarray(comp), jnp.asarray(length)


class Recorder:
    """A reward function that records its keyword arguments and returns len(completion)."""
    __name__ = "recorder"

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, **kwargs):
        self.calls.append(dict(prompts=prompts, completions=completions, **kwargs))
        return [float(len(c)) if c != "7" else None for c in completions]


def test_host_gets_rows_decoded_completions_and_columns(task):
    rec = Recorder()
    fns = RewardFns((rec, zero_reward), (1.0, 2.0), ("recorder", "zero_reward"),
                    task.tokenizer, task.data)
    prompts, comp, length = batch(task, [4, 0, 8], ["12", "7", "3+4="], [True, True, False])
    valid = np.asarray([True, True, True])
    out = np.asarray(jax.jit(fns.per_function)(prompts, comp, length, jnp.asarray(valid)))
    (call,) = rec.calls
    assert call["prompts"] == ["1+1=", "0+0=", "2+2="]
    assert call["completions"] == ["12", "7", "3+4="]
    assert call["answer"] == ["2", "0", "4"] and call["level"] == [1, 0, 2]
    tok = task.tokenizer
    assert call["completion_ids"] == [tok.encode("12", eos=True).tolist(),
                                      tok.encode("7", eos=True).tolist(),
                                      tok.encode("3+4=").tolist()]       # truncated: no EOS
    np.testing.assert_array_equal(out, [[2.0, 0.0], [np.nan, 0.0], [4.0, 0.0]])
    # rows that are not valid (a spent run's) are not passed and get NaN
    out = np.asarray(fns.per_function(prompts, comp, length, jnp.asarray([True, False, True])))
    assert rec.calls[-1]["completions"] == ["12", "3+4="]
    assert np.isnan(out[1]).all() and out[2, 0] == 4.0


class ChatTokenizer:
    """A stand-in for a pretrained tokenizer over characters, template ``<u>content<a>``."""

    def __init__(self):
        self.char = TOKENIZER.extended("|")
        self.vocab_size, self.pad_id = self.char.vocab_size, PAD

    def apply_chat_template(self, messages, add_generation_prompt=False):
        text = "".join(f"<{m['role'][0]}>{m['content']}" for m in messages)
        return self.char.encode(text + "<a>" * add_generation_prompt, bos=True)

    def encode(self, text, add_special_tokens=False):
        return self.char.encode(text, bos=add_special_tokens)

    def decode(self, ids, skip_special_tokens=True):
        return self.char.decode(ids)


def test_chat_prompts_get_assistant_message_completions():
    rows = [{"prompt": [{"role": "user", "content": f"say {i}"}], "answer": str(i)}
            for i in range(3)]
    task = from_records(rows, ChatTokenizer(), heldout=0)
    rec = Recorder()
    fns = RewardFns((rec, exact_match_reward), (1.0, 1.0), ("recorder", "exact_match_reward"),
                    task.tokenizer, task.data)
    prompts = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 4))
    idx = np.asarray(prompts.index)
    comp = np.full((4, 3), PAD, np.int32)
    comp[:, 0] = task.tokenizer.char.encode("1")
    comp[:, 1] = EOS
    out = np.asarray(fns.per_function(prompts, jnp.asarray(comp), jnp.ones(4, jnp.int32),
                                      jnp.ones(4, bool)))
    call = rec.calls[0]
    assert call["prompts"] == [rows[i]["prompt"] for i in idx]
    assert call["completions"] == [[{"role": "assistant", "content": "1"}]] * 4
    np.testing.assert_array_equal(out[:, 1], (idx == 1).astype(np.float32))


def test_vmapped_seeds_make_one_call(task):
    rec = Recorder()
    fns = RewardFns((rec,), (1.0,), ("recorder",), task.tokenizer, task.data)
    p0, c0, l0 = batch(task, [1, 2], ["1", "22"], [True, True])
    p1, c1, l1 = batch(task, [3, 5], ["333", "7"], [False, True])
    stack = lambda a, b: jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
    valid = jnp.ones((2, 2), bool)
    out = jax.jit(jax.vmap(lambda p, c, n, v: fns.combine(fns.per_function(p, c, n, v))))(
        stack(p0, p1), stack(c0, c1), stack(l0, l1), valid)
    assert len(rec.calls) == 1
    assert rec.calls[0]["completions"] == ["1", "22", "333", "7"]    # seed-major
    assert rec.calls[0]["prompts"] == ["0+1=", "0+2=", "1+0=", "1+2="]
    np.testing.assert_array_equal(np.asarray(out), [[1.0, 2.0], [3.0, np.nan]])
    # nested vmaps (a sweep of hparams x seeds): still one call, rows in row-major order
    nest = lambda x: x.reshape(2, 1, *x.shape[1:])
    f = lambda p, c, n, v: fns.combine(fns.per_function(p, c, n, v))
    out2 = jax.jit(jax.vmap(jax.vmap(f)))(jax.tree.map(nest, stack(p0, p1)),
                                          nest(stack(c0, c1)), nest(stack(l0, l1)),
                                          nest(valid))
    assert len(rec.calls) == 2 and rec.calls[1]["completions"] == ["1", "22", "333", "7"]
    np.testing.assert_array_equal(np.asarray(out2)[:, 0], np.asarray(out))


# ----------------------------------------------------------------------------- scoring

def test_score_masks_unscorable_completions_and_logs_per_function(task):
    c = cfg(reward_funcs=[zero_reward, digit_reward], reward_weights=[1.0, 0.5])
    C, M = 8, 3
    nan = np.nan
    per = np.array([[1, 0], [0, nan], [nan, nan], [1, 1],
                    [0, 0], [nan, 1], [1, 0], [nan, nan]], np.float32)
    fns = RewardFns.of(c, c.task)
    reward = fns.combine(jnp.asarray(per))
    length = np.array([1, 2, 0, 3, 1, 1, 2, 0], np.int32)
    roll = tg.Completions(jnp.zeros((C, 4), jnp.int32), jnp.ones((C, 4), bool),
                          jnp.full((C, M), EOS, jnp.int32),
                          jnp.zeros((C, M)), jnp.asarray(length), tg.token_mask(length, M),
                          reward, jnp.repeat(jnp.arange(2), 4), jnp.asarray(per))
    b, weight, keep, m = tg.score(c, None, None, roll, c.hparams())
    r = combine_numpy(per, (1.0, 0.5))
    ok = ~np.isnan(r)
    adv = np.zeros(C)
    for g in range(2):
        s = slice(4 * g, 4 * g + 4)
        x, k = r[s], ok[s]
        a = (x - x[k].mean()) / (x[k].std(ddof=1) + c.adv_eps)
        adv[s] = np.where(k, a, 0.0)
    np.testing.assert_allclose(np.asarray(b["adv"]), adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(keep), ok)
    assert not np.asarray(b["mask"])[~ok].any()
    np.testing.assert_allclose(m["reward"], r[ok].mean(), rtol=1e-6)
    for j, name in enumerate(("zero_reward", "digit_reward")):
        np.testing.assert_allclose(m[f"rewards/{name}/mean"], np.nanmean(per[:, j]), rtol=1e-6)
        x = per[:, j][~np.isnan(per[:, j])]
        np.testing.assert_allclose(m[f"rewards/{name}/std"], x.std(ddof=1), rtol=1e-5)


# ----------------------------------------------------------------------------- config

def test_config_resolves_writes_and_reads_reward_funcs():
    c = cfg(reward_funcs="jaxgrpo.text.rewardfns:exact_match_reward")
    assert c.reward_funcs == (exact_match_reward,) and c.reward_weights is None
    d = dict(algo="grpo", env="text:dataset", env_kwargs={"data": ROWS}, **TINY)
    for text in ["reward_funcs=[jaxgrpo.text.rewardfns:exact_match_reward, "
                 "jaxgrpo.text.rewardfns:think_answer_format]", "reward_weights=[1, 0.25]"]:
        d = apply_override(d, text)
    c2, _, _ = config_from_dict(d)
    assert c2.reward_funcs == (exact_match_reward, think_answer_format)
    assert c2.reward_weights == (1.0, 0.25)
    c3 = c2.replace(reward_funcs=[format_reward("[0-9]+"), zero_reward], reward_weights=None)
    saved = yaml.safe_load(yaml.safe_dump(config_to_dict(c3)))
    assert saved["reward_funcs"] == ["jaxgrpo.text.rewardfns:format_reward('[0-9]+')",
                                     f"{__name__}:zero_reward"]
    assert saved["env_kwargs"]["data"] == ROWS
    again, _, _ = config_from_dict(saved)
    assert again == c3
    with pytest.raises(ValueError, match="reward_funcs: <lambda> cannot be written"):
        config_to_dict(c3.replace(reward_funcs=[lambda prompts, completions, **k:
                                                [0.0] * len(completions)]))


def test_config_errors_name_the_field_and_the_function():
    def raises(prompts, completions, **kwargs):
        raise KeyError("answer")

    def short(prompts, completions, **kwargs):
        return [1.0]

    def wrong(prompts, completions, **kwargs):
        return "1"

    for f, msg in [(raises, "reward_funcs: raises raised KeyError: 'answer'"),
                   (short, "reward_funcs: short returned 1 rewards for 2 completions"),
                   (wrong, "reward_funcs: wrong must return a list of 2 floats")]:
        with pytest.raises(ValueError, match=msg):
            cfg(reward_funcs=[f])
    with pytest.raises(ValueError, match="reward_weights: 1 weights for 2 reward functions"):
        cfg(reward_funcs=[zero_reward, digit_reward], reward_weights=[1.0])
    with pytest.raises(ValueError, match="reward_weights: 1 weights for 0 reward functions"):
        cfg(reward_funcs=[], reward_weights=[1.0])
    with pytest.raises(ValueError, match="reward_weights: each must be a finite number"):
        cfg(reward_weights=[float("nan")])
    with pytest.raises(ValueError, match="reward_funcs: only for text tasks"):
        GRPOConfig(env="CartPole-v1", reward_funcs=[zero_reward])
    with pytest.raises(ValueError, match="reward_funcs: cannot import 'nosuch'"):
        cfg(reward_funcs=["nosuch:f"])


def test_a_function_that_fails_in_the_compiled_program_is_named(task):
    calls = []

    def flaky(prompts, completions, **kwargs):
        calls.append(1)
        if len(calls) > 1:           # passes the check on a dummy batch, then fails
            raise RuntimeError("judge unavailable")
        return [0.0] * len(completions)

    c = cfg(reward_funcs=[flaky])
    fns = RewardFns.of(c, c.task)
    prompts, comp, length = batch(task, [0, 1], ["1", "2"], [True, True])
    with pytest.raises(Exception, match="reward_funcs: flaky raised RuntimeError: judge "
                                        "unavailable"):
        jax.block_until_ready(jax.jit(fns.per_function)(prompts, comp, length,
                                                        jnp.ones(2, bool)))


def test_builtin_tasks_take_python_rewards_with_decoded_answers():
    rec = Recorder()
    c = GRPOConfig(env="text:addition", env_kwargs={"digits": 1}, num_groups=2, group_size=2,
                   chunk_size=4, num_iterations=1, reward_funcs=[rec], **TINY)
    assert len(rec.calls) == 1    # the check on a dummy batch, before compiling
    task, tok = c.task, c.task.tokenizer
    prompts = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 5))
    comp = jnp.asarray(np.stack([tok.encode("12", eos=True)] * 5))
    out = RewardFns.of(c, task).per_function(prompts, comp, jnp.full(5, 2, jnp.int32),
                                             jnp.ones(5, bool))
    call = rec.calls[-1]
    for p, a in zip(call["prompts"], call["answer"]):
        x, y = p[:-1].split("+")
        assert p.endswith("=") and a == f"{int(x) + int(y):02d}"
    assert call["completions"] == ["12"] * 5
    np.testing.assert_array_equal(np.asarray(out), np.full((5, 1), 2.0))


# ----------------------------------------------------------------------------- a run

@pytest.fixture(scope="module")
def learned():
    rows = [{"prompt": f"say {a}:", "answer": "7"} for a in range(10)]
    calls = []

    def says_seven(prompts, completions, answer, **kwargs):
        out = [1.0 if c == a else 0.0 for c, a in zip(completions, answer)]
        calls.append(out)
        return out

    c = GRPOConfig(env="text:dataset", env_kwargs={"data": rows, "heldout": 0}, num_layers=1,
                   width=16, num_heads=2, max_len=12, num_groups=8, group_size=8, chunk_size=64,
                   num_minibatches=1, num_iterations=24, lr=3e-2, max_new_tokens=1,
                   reward_funcs=[says_seven, digit_reward], reward_weights=[1.0, 0.0])
    calls.clear()                    # the check on a dummy batch
    keys = jax.random.split(jax.random.key(0), 2)
    _, m = jax.jit(jax.vmap(make_train(c)))(keys)
    return c, jax.tree.map(np.asarray, m), calls


def test_vmapped_run_learns_its_python_reward(learned):
    c, m, calls = learned
    r = m["rewards/says_seven/mean"]
    assert r.shape == (2, 24) and (r[:, 0] < 0.2).all() and (r[:, -4:] > 0.7).all()
    np.testing.assert_allclose(m["reward"], r, rtol=1e-6)        # digit_reward has weight 0
    for name in ("rewards/says_seven/std", "rewards/digit_reward/mean",
                 "rewards/digit_reward/std"):
        assert m[name].shape == (2, 24)


def test_run_metrics_are_what_the_function_returned(learned):
    c, m, calls = learned
    C = c.num_groups * c.group_size
    assert len(calls) == c.num_iterations and all(len(x) == 2 * C for x in calls)
    got = np.asarray(calls).reshape(c.num_iterations, 2, C)     # one call for both seeds
    np.testing.assert_allclose(m["rewards/says_seven/mean"], got.mean(2).T, rtol=1e-6)
    np.testing.assert_allclose(m["rewards/says_seven/std"], got.std(2, ddof=1).T, rtol=1e-5,
                               atol=1e-7)
