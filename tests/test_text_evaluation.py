"""jaxgrpo.text.evaluation: the unbiased pass@k estimator against math.comb; held-out prompts;
completion scoring and ``evaluate_text`` on a tiny random model (one compile each, shared)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.config import GRPOConfig
from jaxgrpo.text import evaluate_text, heldout_prompts, pass_at_k
from jaxgrpo.text.evaluation import completion_scores
from jaxgrpo.text.model import Transformer
from jaxgrpo.text.tokenizer import EOS


# ----------------------------------------------------------------------------- pass@k

def ref_pass_at_k(n, c, k):
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k():
    grid = [(n, c, k) for n in (1, 2, 5, 10, 37, 120)
            for c in range(n + 1) for k in range(1, n + 1)]
    n, c, k = (np.array(v) for v in zip(*grid))
    expected = np.array([ref_pass_at_k(*g) for g in grid])
    got = pass_at_k(n, c, k)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == n.shape
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    got32 = pass_at_k(jnp.asarray(n), jnp.asarray(c), jnp.asarray(k))
    assert isinstance(got32, jax.Array) and got32.dtype == jnp.float32
    np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=5e-5)
    # the usual call: scalar n and k, c per problem, c traced
    cs = np.arange(11)
    np.testing.assert_allclose(jax.jit(lambda c: pass_at_k(10, c, 3))(jnp.asarray(cs)),
                               [ref_pass_at_k(10, c, 3) for c in cs], rtol=1e-5, atol=1e-6)
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 1) == 1.0 and pass_at_k(10, 8, 3) == 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(5, 1, 6)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(5, np.array([1, 6]), 1)
    with pytest.raises(TypeError, match="n must be concrete"):
        jax.jit(lambda n: pass_at_k(n, 1, 1))(5)


def test_pass_at_k_is_the_sampling_probability():
    """pass@k = P(at least one correct among k drawn without replacement), by enumeration."""
    import itertools
    n, correct = 6, np.array([1, 0, 0, 1, 0, 0], bool)
    for k in range(1, n + 1):
        draws = list(itertools.combinations(range(n), k))
        p = np.mean([correct[list(d)].any() for d in draws])
        assert pass_at_k(n, int(correct.sum()), k) == pytest.approx(p)


# ----------------------------------------------------------------------------- held-out prompts

CFG = GRPOConfig(env="text:sort", env_kwargs={"length": 3}, width=16, num_heads=2, num_layers=1)


def test_heldout_prompts_are_a_fixed_stream_apart_from_training():
    task = CFG.task
    a, b = heldout_prompts(task, 8, seed=0), heldout_prompts(task, 8, seed=0)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    key = jax.random.fold_in(jax.random.key(0), 0x5EED)
    want = jax.vmap(task.sample)(jax.random.split(key, 8))
    jax.tree.map(np.testing.assert_array_equal, a, want)
    assert not np.array_equal(heldout_prompts(task, 8, seed=1).tokens, a.tokens)


def test_heldout_prompts_use_the_held_out_split_when_there_is_one():
    task = CFG.task
    other = task._replace(sample_heldout=lambda k: task.sample(jax.random.fold_in(k, 3)))
    key = jax.random.fold_in(jax.random.key(0), 0x5EED)
    want = jax.vmap(other.sample_heldout)(jax.random.split(key, 5))
    jax.tree.map(np.testing.assert_array_equal, heldout_prompts(other, 5), want)


# ----------------------------------------------------------------------------- scoring

@pytest.fixture(scope="module")
def tiny():
    model = Transformer(CFG.model_config())
    params = model.init(jax.random.key(0))
    return model, CFG.task, params, heldout_prompts(CFG.task, 6)


def test_completion_scores_are_the_verifier_of_the_completions(tiny):
    model, task, params, prompts = tiny
    score = jax.jit(completion_scores, static_argnums=(0, 1, 5), static_argnames="greedy")
    comp, reward = score(model, task, params, prompts, jax.random.key(1), 3)
    M = task.max_new_tokens
    assert comp.shape == (6, 3, M) and comp.dtype == jnp.int32 and reward.shape == (6, 3)
    assert reward.dtype == jnp.float32
    rep = jax.tree.map(lambda x: jnp.repeat(x, 3, axis=0), prompts)
    flat = comp.reshape(18, M)
    length = jnp.where((flat == EOS).any(1), jnp.argmax(flat == EOS, 1), M)
    np.testing.assert_array_equal(reward.reshape(-1), jax.vmap(task.verify)(rep, flat, length))
    g_comp, _ = score(model, task, params, prompts, jax.random.key(2), 3, greedy=True)
    assert (g_comp == g_comp[:, :1]).all()                # greedy: every sample the same
    assert not (comp == comp[:, :1]).all()                # sampled: they differ


@pytest.fixture(scope="module")
def evaluated(tiny):
    _, _, params, _ = tiny
    two = jax.tree.map(lambda x: jnp.stack([x, x]), params)     # 2 seeds, the same params
    return evaluate_text(CFG, two, num_prompts=6, num_samples=3, examples=2)


def test_evaluate_text_summaries(evaluated):
    r = evaluated
    assert (r["num_prompts"], r["num_samples"], r["seed"]) == (6, 3, 0)
    assert r["temperature"] == CFG.temperature
    g = r["greedy_accuracy"]
    assert len(g["per_seed"]) == 2 and g["per_seed"][0] == g["per_seed"][1] == g["mean"]
    assert set(r["pass_at_k"]) == {1, 2, 3}              # powers of two up to 3, and 3
    p = [r["pass_at_k"][k]["mean"] for k in (1, 2, 3)]
    assert p == sorted(p) and 0 <= p[0] and p[-1] <= 1
    assert len(r["examples"]) == 2
    for e in r["examples"]:
        assert set(e) == {"prompt", "completion", "reward"} and e["reward"] in (0.0, 1.0)
        assert isinstance(e["prompt"], str) and e["prompt"]


def test_evaluate_text_greedy_only(tiny, evaluated):
    _, _, params, _ = tiny
    r = evaluate_text(CFG, jax.tree.map(lambda x: x[None], params), num_prompts=6,
                      num_samples=0, examples=0)
    assert r["pass_at_k"] == {} and r["examples"] == []
    assert r["greedy_accuracy"]["mean"] == evaluated["greedy_accuracy"]["mean"]
