"""jaxgrpo.plots (and rundir.plot_runs): run folders and sweep folders (one curve per combination) in one figure."""
import pandas as pd
import pytest
import yaml

from jaxgrpo.rundir import RunError, plot_runs, run_curves

PNG = b"\x89PNG\r\n\x1a\n"


def _run(path, algo, seeds=2, iters=4, **cfg):
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump({"algo": algo, "env": "CartPole-v1",
                                                      **cfg}))
    rows = [{"seed": s, "iteration": i, "env_steps": 100.0 * (i + 1),
             "episode_return": float(i + s)} for s in range(seeds) for i in range(iters)]
    pd.DataFrame(rows).to_csv(path / "metrics.csv", index=False)
    return path


def _sweep(path):
    path.mkdir()
    (path / "sweep.yaml").write_text(yaml.safe_dump(
        {"algo": "grpo", "env": "CartPole-v1", "grid": {"lr": [0.001, 0.003], "beta": [0.0]}}))
    rows = [{"combination": c, "lr": [0.001, 0.003][c], "beta": 0.0, "seed": s, "iteration": i,
             "env_steps": 100.0 * (i + 1), "episode_return": float(10 * c + i)}
            for c in range(2) for s in range(3) for i in range(4)]
    pd.DataFrame(rows).to_csv(path / "metrics.csv", index=False)
    return path


def test_a_sweep_folder_is_one_curve_per_combination(tmp_path):
    sw = _sweep(tmp_path / "sw")
    curves = run_curves([sw])
    assert [lab for lab, _, _ in curves] == ["lr=0.001, beta=0 (3 seeds)",
                                             "lr=0.003, beta=0 (3 seeds)"]
    for c, (_, df, _) in enumerate(curves):
        assert (df["combination"] == c).all() and df["seed"].nunique() == 3
    plot_runs([sw], tmp_path / "sw.png")
    assert (tmp_path / "sw.png").read_bytes()[:8] == PNG


def test_runs_and_sweeps_together_with_labels(tmp_path):
    a, b = _run(tmp_path / "a", "grpo"), _run(tmp_path / "b", "ppo", seeds=1)
    sw = _sweep(tmp_path / "sw")
    labels = [lab for lab, _, _ in run_curves([a, b, sw])]
    assert labels[:2] == ["GRPO (2 seeds)", "PPO (1 seed)"]
    assert labels[2].startswith("sw: lr=0.001")
    plot_runs([a, b, sw], tmp_path / "all.svg", labels=["x", "y", "z1", "z2"])
    assert b"<svg" in (tmp_path / "all.svg").read_bytes()[:500]
    with pytest.raises(RunError, match="3 labels for 4 curves"):
        plot_runs([a, b, sw], tmp_path / "x.png", labels=["x", "y", "z"])
    with pytest.raises(RunError, match="no metric 'kl'"):
        plot_runs([a], tmp_path / "x.png", metric="kl")
    with pytest.raises(RunError, match="no such run folder"):
        plot_runs([tmp_path / "none"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_a_run_started_from_an_sft_run_shows_both_phases_on_labelled_axes(tmp_path):
    """GRPO from an SFT warm start (init_from): the SFT curve is the first phase, in its own
    panel, and each panel's x axis says what it counts (they shared one unlabelled axis)."""
    import matplotlib
    sft = _run(tmp_path / "sft", "sft", env="text:addition")
    grpo = _run(tmp_path / "grpo", "grpo", env="text:addition", init_from=str(sft))
    svg = lambda p: p.read_text()
    with matplotlib.rc_context({"svg.fonttype": "none"}):           # text as <text>
        plot_runs([grpo], tmp_path / "one.svg")
        plot_runs([sft, grpo], tmp_path / "both.svg", labels=["warm", "rl"])
        plot_runs([_run(tmp_path / "env", "ppo")], tmp_path / "env.svg")
    one = svg(tmp_path / "one.svg")
    assert one.index("SFT: training examples (per seed)") < one.index(
        "GRPO: completion tokens (per seed)")
    assert "SFT warm start (2 seeds) [sft]" in one and "GRPO (2 seeds)" in one
    both = svg(tmp_path / "both.svg")                 # the SFT run is shown once, labelled
    assert "warm start" not in both and ">warm<" in both and ">rl<" in both
    assert "SFT: training examples" in both and "GRPO: completion tokens" in both
    env = svg(tmp_path / "env.svg")
    assert "env steps (per seed)" in env and "SFT" not in env
