"""experiments/ (``experiments.run``, ``experiments.text_targets``): every experiment YAML
validates in full (every case, no compilation); the command's whole path after training (the
CSV, the JSON sidecar, the table, the plots, ``--replot``) runs on fake training results; and
the analysis (rolling return, seed summary, reuse of repeated configs) matches hand-made
references. Nothing here trains: the experiments themselves, at their smoke size, are run by
``python -m experiments.run NAME --tiny`` and ``python -m experiments.text_targets --tiny``
(experiments/README.md)."""
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


def fake_training(config, key, clock=False):
    """What ``COMPILED.run`` returns, without training: 5 iterations, the last one skipped
    past the budget (NaN return), returns that grow with the iteration."""
    it = np.arange(1, 6, dtype=np.float64)
    ret = 10.0 * it
    ret[-1] = np.nan
    m = {"env_steps": (1000.0 * it).astype(np.float32), "episode_return": ret.astype(np.float32),
         "episodes": np.full(5, 4.0, np.float32), "valid_frac": np.full(5, 0.5, np.float32),
         "loss": np.zeros(5, np.float32)}
    info = {"compile_s": 1.5, "run_s": 0.25, "temp_bytes": 2.0 ** 20, "params_bytes": 1000,
            "opt_bytes": 2000}
    return m, np.linspace(0.05, 0.25, 5), info


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    """Every experiment at the tiny size through ``experiments.run.main``, its training replaced
    by ``fake_training``."""
    out = tmp_path_factory.mktemp("experiments")
    mp = pytest.MonkeyPatch()
    mp.setattr(run.COMPILED, "run", fake_training)
    try:
        codes = {n: run.main([n, "--tiny", "--out", str(out)]) for n in NAMES}
    finally:
        mp.undo()
    return out, codes


@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_writes_results(fake_runs, name):
    out, codes = fake_runs
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
    assert info[0]["info"]["run_s"] > 0 and info[0]["env_steps"] > 0
    assert info[0]["info"]["compile_s"] >= 0
    # simulated steps: valid steps / valid fraction
    assert info[0]["simulated"] == pytest.approx(2 * info[0]["env_steps"])


def test_cost_table_columns(fake_runs):
    out, _ = fake_runs
    table = (out / "cost.md").read_text()
    row = [l for l in table.splitlines() if l.startswith("| ") and not l.startswith("| arm")][0]
    assert "1,000 + 2,000" in row and "| 1.00 |" in row and "| 1.5 |" in row


def test_replot_rebuilds_the_same_table(fake_runs):
    out, _ = fake_runs
    before = (out / "cost.md").read_text()
    (out / "cost.md").unlink()
    assert run.main(["cost", "--tiny", "--out", str(out), "--replot"]) == 0
    assert (out / "cost.md").read_text() == before


def test_replot_without_results_is_one_clear_error(tmp_path, capsys):
    assert run.main(["cost", "--tiny", "--out", str(tmp_path), "--replot"]) == 2
    assert "--replot" in capsys.readouterr().err


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


def fake_case(name, env, env_kwargs, sft_steps, grpo_iters, workdir, seeds=8, prompts=1000):
    """What ``text_targets.run_case`` returns, without training."""
    g = {"mean": 0.5, "ci95": [0.4, 0.6], "per_seed": [0.4, 0.6][:seeds]}
    return {"case": name, "env": env, "env_kwargs": env_kwargs, "seeds": seeds,
            "sft_steps": sft_steps, "sft_seconds": 1.0, "sft_greedy": 0.25,
            "grpo_iterations": grpo_iters, "grpo_run_s": 2.0, "grpo_compile_s": 1.0,
            "grpo_greedy": g, "grpo_train_accuracy": np.linspace(0, 1, 2 * 3).reshape(2, 3).tolist(),
            "cont_sft_steps": 3, "cont_sft_run_s": 2.0, "cont_sft_greedy": g,
            "examples": [], "commit": "abc1234"}


def test_text_targets_tiny_writes_table_and_plot(tmp_path, monkeypatch):
    """experiments/text_targets.py at its smoke size with its training replaced by
    ``fake_case``: the table and plot are written into the given folder, nothing published."""
    from experiments import text_targets
    monkeypatch.setattr(text_targets, "run_case", fake_case)
    monkeypatch.setattr(text_targets, "publish", lambda md: pytest.fail("published"))
    assert text_targets.main(["--tiny", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "text_targets.json").read_text())
    assert len(res) == 1 and res[0]["seeds"] == 2 and res[0]["cont_sft_steps"] >= 1
    assert 0 <= res[0]["grpo_greedy"]["mean"] <= 1
    assert (tmp_path / "text_targets.png").stat().st_size > 0
    md = (tmp_path / "text_targets.md").read_text()
    assert "| sort, 4 digits |" in md and "50.0% [40.0, 60.0]" in md


def test_text_targets_only_keeps_the_saved_rows(tmp_path, monkeypatch):
    from experiments import text_targets
    monkeypatch.setattr(text_targets, "run_case", fake_case)
    monkeypatch.setattr(text_targets, "publish", lambda md: None)
    saved = [fake_case(c[0], *c[1:], None, seeds=8) for c in text_targets.CASES]
    saved[0]["sft_greedy"] = 0.75
    (tmp_path / "text_targets.json").write_text(json.dumps(saved))
    assert text_targets.main(["--only", "sort", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "text_targets.md").read_text()
    assert "| 75.0% |" in md and md.count("| 25.0% |") == len(text_targets.CASES) - 1
    with pytest.raises(SystemExit):
        text_targets.main(["--only", "nope", "--out", str(tmp_path)])
