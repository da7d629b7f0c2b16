"""Smoke test of experiments/: every experiment YAML validates in full (every case, no
compilation) and runs at the tiny size (1 seed, 2 iterations, its first case) through the same
code path as the real run, writing its CSV, table and plots."""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import pandas as pd
import pytest

from experiments import run

NAMES = sorted(os.path.splitext(os.path.basename(p))[0]
               for p in glob.glob(os.path.join(run.HERE, "*.yaml")) if not run.is_study(p))


def test_all_six_experiments_are_there():
    assert {"cartpole_article", "group_size", "gamma", "variants", "sparse", "cost"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_case_validates(name):
    spec, cases = run.load(os.path.join(run.HERE, f"{name}.yaml"))
    assert spec.get("seeds", 8) >= 8
    assert len(cases) >= 2
    assert len({c.name + c.config.env + str(c.config.env_kwargs) for c in cases}) == len(cases)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Every experiment at the tiny size, in this one process (programs shared via the cache)."""
    out = tmp_path_factory.mktemp("experiments")
    codes = {n: run.main([n, "--tiny", "--out", str(out)]) for n in NAMES}
    return out, codes


@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_writes_results(tiny_runs, name):
    out, codes = tiny_runs
    assert codes[name] == 0
    df = pd.read_csv(out / f"{name}.csv")
    assert len(df) >= 1 and df["seed"].eq(0).all()
    assert df["env_steps"].iloc[-1] > 0
    assert not df["episode_return"].isna().all()
    table = (out / f"{name}.md").read_text()
    rows = [l for l in table.splitlines() if l.startswith("| ") and not l.startswith("| arm")]
    assert len(rows) == 1
    assert (out / f"{name}.png").stat().st_size > 1000
    info = json.loads((out / f"{name}.json").read_text())
    # compile_s is 0 where an earlier experiment of this process compiled the same program
    assert info[0]["info"]["run_s"] > 0 and info[0]["env_steps"] > 0
    assert info[0]["info"]["compile_s"] >= 0


def test_first_compile_is_timed(tiny_runs):
    out, _ = tiny_runs
    info = json.loads((out / f"{NAMES[0]}.json").read_text())
    assert info[0]["info"]["compile_s"] > 0


def test_replot_rebuilds_the_same_table(tiny_runs):
    out, _ = tiny_runs
    before = (out / "cost.md").read_text()
    (out / "cost.md").unlink()
    assert run.main(["cost", "--tiny", "--out", str(out), "--replot"]) == 0
    assert (out / "cost.md").read_text() == before


def test_bad_experiment_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arms:\n  - {name: a, algo: grpo, env: CartPole-v1, group_sise: 4}\n")
    assert run.main([str(bad), "--tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: arms[0] (a)" in err and "'group_sise'" in err and "'group_size'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.csv").exists()


def _explicit_rolling(n, r, k):
    """NumPy reference: expand iterations into episodes, average the last >= k by iteration."""
    out = []
    for i in range(len(n)):
        if n[: i + 1].sum() < k:
            out.append(np.nan)
            continue
        j, tot = i, 0.0
        while tot < k:
            tot += n[j]
            j -= 1
        out.append(np.repeat(r[j + 1: i + 1], n[j + 1: i + 1].astype(int)).mean())
    return np.array(out)


def test_rolling_return_matches_explicit_episodes():
    rng = np.random.default_rng(0)
    n = rng.integers(0, 40, 50).astype(float)
    r = rng.normal(size=50)
    np.testing.assert_allclose(run.rolling_return(n, r, 32), _explicit_rolling(n, r, 32))


def test_seed_summary_on_a_hand_built_run():
    # 10 iterations; 4 episodes each; returns climb 10, 20, ..., 100; 1000 env steps each
    df = pd.DataFrame({"episode_return": np.arange(1, 11) * 10.0,
                       "env_steps": np.arange(1, 11) * 1000.0,
                       "episodes": np.arange(1, 11) * 4.0,
                       "wall_s": np.arange(1, 11) * 0.5})
    s = run.seed_summary(df, threshold=55.0, at_episodes=20)
    # final: the iterations in the last 10% of env steps (9000 and 10000), 4 episodes each
    assert s["final"] == 95.0 and s["steps"] == 10_000 and s["wall"] == 5.0
    # the last 32 episodes at iteration i >= 8 (1-based) are iterations i-7..i: mean 10(i-3.5)
    assert s["to_threshold"] == 9000.0
    assert np.isnan(run.seed_summary(df, threshold=66.0)["to_threshold"])
    assert np.isnan(s["at_episodes"])      # 20 episodes reached, but fewer than 32 finished
    s = run.seed_summary(df, at_episodes=36)
    assert s["at_episodes"] == pytest.approx(np.mean(np.arange(2, 10) * 10.0))
    assert s["wall_at_episodes"] == 4.5
    assert np.isnan(run.seed_summary(df, at_episodes=100)["at_episodes"])   # never got there


def test_repeated_configs_reuse_runs(monkeypatch):
    calls = []

    def fake_run(config, key, clock=False):
        calls.append(config.lr)
        m = {"env_steps": np.array([1.0]), "episode_return": np.array([config.lr]),
             "episodes": np.array([1.0]), "valid_frac": np.array([1.0])}
        return m, np.array([0.1]), {"compile_s": 0.0, "run_s": 0.1}

    monkeypatch.setattr(run.COMPILED, "run", fake_run)
    import jaxgrpo
    a, b = jaxgrpo.GRPOConfig(lr=1e-3), jaxgrpo.GRPOConfig(lr=2e-3)
    cases = [run.Case("x", 0, "", a), run.Case("y", 1, "", b), run.Case("z", 2, "", a)]
    out = run.run_cases({}, cases, seeds=2)
    assert calls == [1e-3, 1e-3, 2e-3, 2e-3]
    assert [r["case"] for r in out] == [0, 0, 1, 1, 2, 2]
    assert [r["seed"] for r in out] == [0, 1, 0, 1, 0, 1]
    assert out[4]["metrics"] is out[0]["metrics"]


def test_text_targets_tiny(tmp_path):
    """experiments/text_targets.py at its smoke size: SFT, GRPO from it and the continued-SFT
    arm, 2 seeds, into a temporary folder; the table and plot are written, nothing published."""
    import json

    from experiments import text_targets
    assert text_targets.main(["--tiny", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "text_targets.json").read_text())
    assert len(res) == 1 and res[0]["seeds"] == 2 and res[0]["cont_sft_steps"] >= 1
    assert 0 <= res[0]["grpo_greedy"]["mean"] <= 1
    assert (tmp_path / "text_targets.png").stat().st_size > 0
    assert "| sort, 4 digits |" in (tmp_path / "text_targets.md").read_text()
