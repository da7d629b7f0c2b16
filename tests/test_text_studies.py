"""The language-model studies (experiments/text_*.yaml, ``experiments.text_studies``): every
study YAML validates in full; bad specs fail with one message before anything compiles; the
exact-KL probe and the estimator gradients match NumPy and the theory; and each study runs at
its tiny size through ``python -m experiments.run NAME --tiny``'s code path."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import run, text_studies as ts

STUDIES = {"text_passk": "passk", "text_length": "length", "text_kl": "kl"}


def path(name):
    return os.path.join(run.HERE, f"{name}.yaml")


@pytest.mark.parametrize("name", STUDIES)
def test_study_yaml_validates(name):
    assert run.is_study(path(name))
    spec, tasks = ts.load(name, run.read(path(name)))
    assert spec["study"] == STUDIES[name] and spec["seeds"] >= 8
    n_cases = {"passk": 1, "length": 8, "kl": 6}[spec["study"]]
    assert all(len(t.cases) == n_cases for t in tasks)
    assert len(tasks) == (2 if name == "text_passk" else 1)
    for t in tasks:   # the warm start and GRPO share the model's shape
        assert t.sft.model_config() == t.grpo.model_config()
    _, tiny = ts.load(name, run.read(path(name)), tiny=True)
    assert all(len(t.cases) == 1 and t.grpo.num_iterations <= 2 for t in tiny)


@pytest.mark.parametrize("change, message", [
    ({"studdy": 1}, "unknown key 'studdy'"),
    ({"study": "nope"}, "study: must be one of passk, length, kl"),
    ({"seeds": 0}, "seeds: must be an int >= 1"),
    ({"eval": {"promts": 3}}, "eval: unknown key 'promts'"),
    ({"eval": {"prompts": 0}}, "eval: prompts must be an int >= 1"),
    ({"grpo": {"num_iterations": 5, "lrr": 1}}, "tasks\\[0\\] \\(t\\): .*'lrr'"),
    ({"grpo": {"num_iterations": 5, "beta": -1}}, "tasks\\[0\\] \\(t\\): beta"),
    ({"grpo": {}}, "num_iterations must be given"),
    ({"grid": {"loss_type": ["grpo", "bogus"]}}, "loss_type"),
    ({"tasks": [{"name": "t", "env": "text:nope"}]}, "unknown text task 'nope'"),
    ({"tasks": [{"name": "t", "env": "text:sort"}, {"name": "u", "env": "text:sort"}]},
     "the length study takes one task"),
])
def test_bad_specs_fail_with_one_message(change, message):
    spec = {"study": "length", "tasks": [{"name": "t", "env": "text:sort"}],
            "grpo": {"num_iterations": 5}, **change}
    with pytest.raises(ValueError, match=message):
        ts.load("s", spec)


def test_bad_spec_stops_the_command(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: kl\ntasks: [{name: t, env: 'text:sort'}]\ngrpo: {num_iterations: 2, "
                   "kl_estimator: k4}\n")
    assert run.main([str(bad), "--tiny", "--out", str(tmp_path)]) == 2
    assert "kl_estimator" in capsys.readouterr().err
    assert not list(tmp_path.glob("bad.*json"))


def test_equal_compute_sft_steps():
    from jaxgrpo.config import GRPOConfig, SFTConfig
    g = GRPOConfig(env="text:sort", num_iterations=100, num_groups=16, group_size=8)
    s = SFTConfig(env="text:sort", batch_size=128)
    # per completion: 1 generation forward + 3 (forward and backward) per epoch; SFT: 3
    assert ts.equal_compute_sft_steps(g, s) == round(100 * 128 * 4 / (128 * 3))
    assert ts.equal_compute_sft_steps(g.replace(beta=0.04, update_epochs=2), s) == \
        round(100 * 128 * (1 + 2 * 4) / (128 * 3))


@pytest.fixture(scope="module")
def far_policy():
    """A tiny random policy, a reference far from it, and completions sampled from it."""
    from jaxgrpo.config import GRPOConfig
    from jaxgrpo.text import heldout_prompts
    from jaxgrpo.text.evaluation import completion_scores
    from jaxgrpo.text.grpo import make_policy
    c = GRPOConfig(env="text:sort", env_kwargs={"length": 3}, width=16, num_heads=2)
    model, task = make_policy(c), c.task
    params = model.init(jax.random.key(0))
    leaves, tree = jax.tree.flatten(params)
    noise = jax.random.split(jax.random.key(1), len(leaves))
    ref = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                    for x, k in zip(leaves, noise)])
    prompts = heldout_prompts(task, 6, seed=0)
    key = jax.random.key(5)
    comp, reward = completion_scores(model, task, params, prompts, key, 2, 1.0)
    return model, task, params, ref, prompts, key, comp, reward


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_kl_probe_matches_numpy(far_policy):
    from jaxgrpo.text import PAD
    model, task, params, ref, prompts, key, comp, reward = far_policy
    got = jax.jit(ts.kl_probe(model, task, 1.0, prompts, key, 2))(params, ref)
    B, P = prompts.tokens.shape
    comp = np.asarray(comp).reshape(B * 2, -1)
    M = comp.shape[1]
    tokens = np.concatenate([np.repeat(prompts.tokens, 2, 0), comp], 1)
    valid = tokens != PAD
    valid[:, P:] = True
    lp, lq = (_log_softmax(np.asarray(model.forward(p, jnp.asarray(tokens), jnp.asarray(valid)),
                                      np.float64)[:, P - 1:P + M - 1]) for p in (params, ref))
    from jaxgrpo.text import EOS
    length = np.array([list(r).index(EOS) if EOS in r else M for r in comp])
    mask = np.arange(M)[None] <= np.minimum(length, M - 1)[:, None]
    kl_tok = (np.exp(lp) * (lp - lq)).sum(-1)
    r = np.take_along_axis(lp - lq, comp[..., None], -1)[..., 0]
    want = {"exact": kl_tok[mask].mean(), "exact_seq": np.where(mask, kl_tok, 0).sum(1).mean(),
            "k1": r[mask].mean(), "k2": (0.5 * r ** 2)[mask].mean(),
            "k3": (np.exp(-r) - 1 + r)[mask].mean(), "accuracy": (np.asarray(reward) >= 1).mean()}
    for k, v in want.items():
        np.testing.assert_allclose(float(got[k]), v, rtol=2e-4, atol=1e-6, err_msg=k)
    assert want["exact"] > 0.05            # the reference is far enough for the test to mean it


def test_estimator_gradients_follow_the_theory(far_policy):
    """E[grad k1] = 0, E[grad k2] = grad of the exact KL, E[grad k3] = grad of the forward
    KL(pi_ref || pi); on one batch."""
    from jax.flatten_util import ravel_pytree
    model, task, params, ref, prompts, key, comp, _ = far_policy
    comp = comp[:, 0]
    g = jax.jit(lambda p: ts.estimator_gradients(model, p, ref, prompts.tokens, comp, 1.0))(params)
    exact = np.linalg.norm(g["exact"])
    assert exact > 1e-3
    assert np.linalg.norm(g["k1"]) < 1e-4 * exact
    np.testing.assert_allclose(g["k2"], g["exact"], rtol=1e-3, atol=1e-5 * exact)

    def forward_kl(p):
        lp, lq, mask = ts.token_logits(model, p, ref, prompts.tokens, comp, 1.0)
        x = jnp.sum(jnp.exp(lq) * (lq - lp), -1)
        return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.sum(mask)
    fwd = ravel_pytree(jax.grad(forward_kl)(params))[0]
    np.testing.assert_allclose(g["k3"], fwd, rtol=1e-3, atol=1e-5 * exact)
    b = ts.gradient_bias(model, params, ref, prompts.tokens, comp, 1.0)
    assert abs(float(b["k1"]["bias"]) - 1) < 1e-3 and float(b["k2"]["bias"]) < 1e-3
    assert float(b["k3"]["bias"]) > 1e-2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    return out, {n: run.main([n, "--tiny", "--out", str(out)]) for n in STUDIES}


@pytest.mark.parametrize("name", STUDIES)
def test_tiny_study_writes_results(tiny, name):
    out, codes = tiny
    assert codes[name] == 0
    res = json.loads((out / f"{name}.json").read_text())
    assert res["meta"]["seeds"] == 2
    md = (out / f"{name}.md").read_text()
    rows = [l for l in md.splitlines() if l.startswith("| ") and "---" not in l]
    assert len(rows) == 1 + {"passk": 3, "length": 1, "kl": 1}[STUDIES[name]]
    assert (out / f"{name}.png").stat().st_size > 1000
    if STUDIES[name] == "passk":
        arms = res["tasks"][0]["arms"]
        assert set(arms) == {"SFT start", "GRPO", "continued SFT"}
        for a in arms.values():
            p = [a["pass_at_k"][k]["mean"] for k in sorted(a["pass_at_k"], key=int)]
            assert list(p) == sorted(p) and 0 <= p[0] <= p[-1] <= 1   # pass@k grows with k
        assert res["tasks"][0]["cont_sft_steps"] >= 1
    elif STUDIES[name] == "length":
        c = res["cases"][0]
        assert np.asarray(c["completions/mean_length"]).shape == (2, 2)
        assert np.all(np.asarray(c["completions/mean_length"]) >= 1)
    else:
        c = res["cases"][0]
        assert [p["iteration"] for p in c["curve"]] == [0, 1, 2]
        assert np.asarray(c["curve"][0]["exact"]).shape == (2,)
        # at iteration 0 the policy is the reference: exact KL 0
        np.testing.assert_allclose(c["curve"][0]["exact"], 0, atol=1e-5)
        assert np.asarray(c["gradient"]["k1"]["bias"]).shape == (2,)
