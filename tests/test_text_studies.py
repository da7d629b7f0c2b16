"""The language-model studies (experiments/text_*.yaml, ``experiments.text_studies``): every
study YAML validates in full; bad specs fail with one message before anything compiles; the
exact-KL probe and the estimator gradients match NumPy and the theory; and each study's
command path after training (JSON, table, plot) runs at its tiny size on fake training results.
The studies themselves, at their smoke size, are run by ``python -m experiments.run NAME
--tiny`` (experiments/README.md), not by the suite."""
from __future__ import annotations

import os
import re

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
    c = GRPOConfig(env="text:sort", env_kwargs={"length": 3}, width=16, num_heads=2, num_layers=1)
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
    probe = jax.jit(ts.kl_probe(model, task, 1.0, prompts, key, 2))
    got = probe(params, ref)
    # the policy against itself (a KL study's iteration 0): every estimate is 0
    same = probe(params, params)
    for k in ("exact", "exact_seq", "k1", "k2", "k3"):
        np.testing.assert_allclose(float(same[k]), 0.0, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(float(same["accuracy"]), float(got["accuracy"]))
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


# ----------------------------------------------------------------------------- fake studies
# What each study function returns, built from the (tiny) spec and tasks without training, so
# that experiments.run's study path (JSON, table, plot, markdown) runs in a second.

def _seeds_curve(spec, tasks, lo, hi, iters=None):
    S = spec["seeds"]
    I = iters or tasks[0].grpo.num_iterations
    return np.linspace(lo, hi, S * I).reshape(S, I)


def fake_passk(spec, tasks, work):
    S = spec["seeds"]
    ks = [1, 2, 4, 8]
    arm = lambda g: {"greedy": ts.summary(np.full(S, g)),
                     "pass_at_k": {str(k): ts.summary(np.full(S, min(1.0, g * k ** 0.3)) + 0.0)
                                   for k in ks}}
    return {"tasks": [{"task": t.name, "env": t.grpo.env, "env_kwargs": dict(t.grpo.env_kwargs),
                       "sft_steps": t.sft.num_steps, "grpo_iterations": t.grpo.num_iterations,
                       "completions_per_iteration": t.grpo.num_groups * t.grpo.group_size,
                       "cont_sft_steps": ts.equal_compute_sft_steps(t.grpo, t.sft),
                       "grpo_run_s": 3.0, "cont_sft_run_s": 2.0,
                       "grpo_train_accuracy": _seeds_curve(spec, tasks, 0.1, 0.5).tolist(),
                       "arms": {"SFT start": arm(0.2), "GRPO": arm(0.4),
                                "continued SFT": arm(0.3)}} for t in tasks]}


def fake_length(spec, tasks, work):
    (t,) = tasks
    curve = lambda lo, hi: _seeds_curve(spec, tasks, lo, hi).tolist()
    cases = [{"case": label, "loss_type": cfg.loss_type, "scale_rewards": cfg.scale_rewards,
              "run_s": 1.0, "compile_s": 1.0, "greedy": ts.summary(np.full(spec["seeds"], 0.5)),
              "accuracy": curve(0.1, 0.6), "completions/mean_length": curve(3, 4),
              "completions/mean_length_correct": curve(3, 3.5),
              "completions/mean_length_wrong": curve(4, 5)} for label, cfg in t.cases]
    return {"task": t.name, "env": t.grpo.env, "env_kwargs": dict(t.grpo.env_kwargs),
            "max_new_tokens": t.grpo.task.max_new_tokens, "sft_steps": t.sft.num_steps,
            "sft_greedy": 0.2, "iterations": t.grpo.num_iterations, "cases": cases}


def fake_kl(spec, tasks, work):
    (t,) = tasks
    S, I = spec["seeds"], t.grpo.num_iterations
    probe = lambda i: {"iteration": i, **{k: [0.01 * i] * S for k in
                                          ("exact", "exact_seq", "k1", "k2", "k3", "accuracy")}}
    grad = {k: {"bias": [0.1] * S, "cos_sampled": [0.5] * S} for k in ("k1", "k2", "k3")}
    cases = [{"case": label, "kl_estimator": cfg.kl_estimator, "beta": cfg.beta, "run_s": 1.0,
              "compile_s": 1.0, "greedy": ts.summary(np.full(S, 0.5)),
              "train_kl": _seeds_curve(spec, tasks, 0, 0.1).tolist(),
              "accuracy": _seeds_curve(spec, tasks, 0.1, 0.6).tolist(),
              "curve": [probe(i) for i in range(I + 1)], "gradient": grad}
             for label, cfg in t.cases]
    return {"task": t.name, "env": t.grpo.env, "env_kwargs": dict(t.grpo.env_kwargs),
            "sft_steps": t.sft.num_steps, "iterations": I, "probe_prompts": spec["eval"]["prompts"],
            "grad_prompts": spec["eval"]["grad_prompts"], "cases": cases}


FAKE = {"passk": fake_passk, "length": fake_length, "kl": fake_kl}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    mp = pytest.MonkeyPatch()
    for study, (_, table, plot) in list(ts.RUN.items()):
        mp.setitem(ts.RUN, study, (FAKE[study], table, plot))
    try:
        codes = {n: run.main([n, "--tiny", "--out", str(out)]) for n in STUDIES}
    finally:
        mp.undo()
    return out, codes


@pytest.mark.parametrize("name", STUDIES)
def test_tiny_study_writes_results(tiny, name):
    out, codes = tiny
    assert codes[name] == 0
    res = ts.load_results(out / f"{name}.json.gz")
    assert res["meta"]["seeds"] == 2
    md = (out / f"{name}.md").read_text()
    rows = [l for l in md.splitlines() if l.startswith("| ") and "---" not in l]
    assert len(rows) == 1 + {"passk": 3, "length": 1, "kl": 1}[STUDIES[name]]
    assert (out / f"{name}.png").stat().st_size > 1000
    if STUDIES[name] == "passk":
        arms = res["tasks"][0]["arms"]
        assert set(arms) == {"SFT start", "GRPO", "continued SFT"}
        assert "pass@1 | pass@4" in md and "| 40.0 |" in md
        assert res["tasks"][0]["cont_sft_steps"] >= 1
    elif STUDIES[name] == "length":
        c = res["cases"][0]
        assert np.asarray(c["completions/mean_length"]).shape == (2, 2)
        assert re.search(r"\| 3\.\d\d \[[^]]+\] -> 3\.\d\d \[[^]]+\] \| 4\.", md)
    else:
        c = res["cases"][0]
        assert [p["iteration"] for p in c["curve"]] == [0, 1, 2]
        assert np.asarray(c["curve"][0]["exact"]).shape == (2,)
        assert np.asarray(c["gradient"]["k1"]["bias"]).shape == (2,)
        assert "0.100, 0.100, 0.100" in md


@pytest.mark.parametrize("name", STUDIES)
def test_replot_rebuilds_the_same_table(tiny, name):
    out, _ = tiny
    before = (out / f"{name}.md").read_text()
    (out / f"{name}.md").unlink()
    assert run.main([name, "--tiny", "--out", str(out), "--replot"]) == 0
    assert (out / f"{name}.md").read_text() == before
