"""The objectives study (experiments/objectives.yaml, ``experiments.objectives``): the YAML
validates in full with every loss type and the new estimators on text and environment tasks,
bad specs fail with one message, the per-seed summaries match a hand computation, and the study
runs end to end at its tiny size (a text task and CartPole, real training) and replots."""
from __future__ import annotations

import os

import numpy as np
import pytest

from experiments import objectives, run, text_studies as ts
from jaxgrpo.config import ADVANTAGES, LOSS_TYPES

PATH = os.path.join(run.HERE, "objectives.yaml")


def test_yaml_validates_with_every_objective():
    assert run.is_study(PATH)
    spec, tasks = ts.load("objectives", run.read(PATH))
    assert spec["study"] == "objectives" and spec["seeds"] >= 8
    text = [t for t in tasks if t.sft is not None]
    env = [t for t in tasks if t.sft is None]
    assert len(text) == 2 and {t.grpo.env for t in env} == {"CartPole-v1", "Acrobot-v1"}
    assert any(t.grpo.task.max_new_tokens > 4 and "filler" in t.grpo.env_kwargs for t in text)
    for t in tasks:
        cfgs = [c for _, c in t.cases]
        assert {c.loss_type for c in cfgs} == set(LOSS_TYPES)
        assert {c.advantage for c in cfgs} == set(ADVANTAGES)
        if t.sft is None:           # every case collects alike (the new ones need on-policy)
            assert all(c.on_policy for c in cfgs)
        else:
            assert t.sft.model_config() == t.grpo.model_config()
    cispo = [c for _, c in tasks[0].cases if c.loss_type == "cispo"]
    assert cispo[0].clip_eps_high == 5.0
    _, tiny = ts.load("objectives", run.read(PATH), tiny=True)
    assert all(len(t.cases) == 1 for t in tiny) and {t.sft is None for t in tiny} == {True, False}


@pytest.mark.parametrize("spec, message", [
    ({"study": "length", "tasks": [{"name": "c", "env": "CartPole-v1"}]},
     "the length study takes text tasks"),
    ({"study": "objectives", "tasks": [{"name": "c", "env": "CartPole-v1", "sft": {}}]},
     "an environment task has no sft"),
    ({"study": "objectives", "tasks": [{"name": "c", "env": "CartPole-v1",
                                        "grpo": {"loss_type": "nope"}}]}, "loss_type"),
    ({"study": "objectives", "tasks": [{"name": "c", "env": "CartPole-v1"}],
      "cases": [{"loss_type": "gmpo", "on_policy": False}]}, "on_policy"),
    ({"study": "objectives", "tasks": [{"name": "c", "env": "CartPole-v1"}], "cases": "grpo"},
     "cases: must be a list of mappings"),
])
def test_bad_specs_fail_with_one_message(spec, message):
    with pytest.raises(ValueError, match=message):
        ts.load("s", spec)


def test_per_seed_summaries_by_hand():
    nan = np.nan
    c = {"score": [[1.0, nan, 3.0, 5.0], [nan, nan, nan, nan]],
         "episodes": [[2.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 0.0]],
         "env_steps": [[10.0, 10.0, 50.0, 100.0], [0.0] * 4],
         "entropy": [[0.9, nan, 0.5, 0.1], [nan] * 4], "length": [[4.0, nan, 6.0, 8.0], [nan] * 4],
         "clipped": [[0.1, nan, 0.2, 0.3], [nan] * 4]}
    # text: seed 0's scored iterations 0, 2, 3 -> the first / last half: w = 2 of them
    p = objectives.per_seed(c, text=True, frac=0.5)
    np.testing.assert_allclose([p["final"][0], p["mean"][0]], [4.0, 3.0])
    np.testing.assert_allclose([p["entropy_first"][0], p["entropy_last"][0]], [0.7, 0.3])
    np.testing.assert_allclose([p["length_first"][0], p["length_last"][0]], [5.0, 7.0])
    np.testing.assert_allclose(p["clipped"][0], 0.2)
    assert all(np.isnan(v[1]) for v in p.values())     # a seed with no scored iteration
    # environments: final over the iterations in the last half of the env steps (>= 50),
    # episode-weighted; the mean weighted by each iteration's env steps (10, 40, 50)
    p = objectives.per_seed(c, text=False, frac=0.5)
    np.testing.assert_allclose(p["final"][0], (1 * 3 + 3 * 5) / 4)
    np.testing.assert_allclose(p["mean"][0], (10 * 1 + 40 * 3 + 50 * 5) / 100)
    assert np.isnan(p["final"][1])


def test_curves_without_a_clip_metric():
    """sapo and vespo clip nothing (and on text log no clip metric): their clipped fraction is
    NaN; cispo's is its capped share."""
    S, I = 2, 3
    m = {k: np.ones((S, I)) for k in ("accuracy", "episode_return", "entropy", "env_steps",
                                       "episodes", "completions/mean_length")}
    for lt in ("sapo", "vespo"):
        assert np.isnan(objectives.curves(m, True, lt)["clipped"]).all()
        m2 = {**m, "clip_ratio/region_mean": np.zeros((S, I))}   # env step path logs one
        assert np.isnan(objectives.curves(m2, True, lt)["clipped"]).all()
    m3 = {**m, "cispo_clip_ratio": np.full((S, I), 0.25),
          "clip_ratio/region_mean": np.zeros((S, I))}
    assert (objectives.curves(m3, True, "cispo")["clipped"] == 0.25).all()
    m4 = {**m, "episode_return": np.where(np.arange(I) < 2, 1.0, np.nan) * np.ones((S, 1)),
          "episode_length": np.ones((S, I)), "clip_ratio/region_mean": np.zeros((S, I))}
    c = objectives.curves(m4, False, "grpo")     # an iteration past the budget: NaN
    assert np.isnan(c["entropy"][:, 2]).all() and (c["clipped"][:, :2] == 0).all()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("objectives")
    return out, run.main(["objectives", "--tiny", "--out", str(out)])


def test_tiny_study_trains_and_writes_results(tiny):
    out, code = tiny
    assert code == 0
    res = ts.load_results(out / "objectives.json.gz")
    assert res["meta"]["seeds"] == 2
    text, env = res["tasks"]
    assert text["text"] and not env["text"]
    for r in (text, env):
        (c,) = r["cases"]
        assert c["loss_type"] == "gmpo"
        for k in objectives.CURVES:
            assert np.asarray(c[k]).shape == (2, 2), k
        assert np.all(np.isfinite(np.asarray(c["entropy"], float)))
    assert np.all(np.asarray(env["cases"][0]["score"]) > 0)        # CartPole returns
    assert len(text["cases"][0]["greedy"]["per_seed"]) == 2
    md = (out / "objectives.md").read_text()
    assert md.count("| objective |") == 2 and "| gmpo |" in md
    assert (out / "objectives.png").stat().st_size > 1000


def test_replot_rebuilds_the_same_table(tiny):
    out, _ = tiny
    before = (out / "objectives.md").read_text()
    (out / "objectives.md").unlink()
    assert run.main(["objectives", "--tiny", "--out", str(out), "--replot"]) == 0
    assert (out / "objectives.md").read_text() == before
