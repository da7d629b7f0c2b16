"""jaxgrpo.rundir: what counts as results, the path guards, atomic writes (an interrupted write
leaves the old file), eval.json keeping every evaluation (sweep folders: test_sweepdir.py). No
compilation."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from jaxgrpo import rundir
from jaxgrpo.rundir import RunError


def test_folder_kinds(tmp_path):
    assert rundir.folder_kind(tmp_path / "absent") is None
    assert rundir.folder_kind(tmp_path) is None                       # empty
    (tmp_path / "notes.txt").write_text("mine")
    assert rundir.folder_kind(tmp_path) is None                       # no result files
    run, sweep, other = tmp_path / "run", tmp_path / "sweep", tmp_path / "other"
    for d in (run, sweep, other):
        d.mkdir()
    (run / "checkpoints").mkdir()
    (sweep / "summary.csv").write_text("x")
    (other / "metrics.csv").write_text("x")
    assert [rundir.folder_kind(d) for d in (run, sweep, other)] == ["run", "sweep", "results"]


def test_path_guards(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    with pytest.raises(RunError, match="exists and is not a folder"):
        rundir.check_folder_path(f)
    with pytest.raises(RunError, match="is a file, not a folder"):
        rundir.check_folder_path(f / "sub")
    assert rundir.check_folder_path(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    with pytest.raises(RunError, match="the folder .*missing does not exist"):
        rundir.check_new_file(tmp_path / "missing" / "x.png")
    with pytest.raises(RunError, match="must end in .png"):
        rundir.check_new_file(tmp_path / "x.csv", suffixes=rundir.IMAGE_SUFFIXES)
    with pytest.raises(RunError, match="exists; .*--overwrite"):
        rundir.check_new_file(f)
    assert rundir.check_new_file(f, overwrite=True) == f
    with pytest.raises(RunError, match="is a folder"):
        rundir.check_new_file(tmp_path)
    assert f.read_text() == "keep me"


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    path.write_text("old,results\n1,2\n")

    def half_then_interrupt(self, target, **kw):
        open(target, "w").write("seed,iter")                          # a partial file ...
        raise KeyboardInterrupt                                       # ... then Ctrl-C

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_interrupt)
    metrics = {"env_steps": np.zeros((1, 2)), "episode_return": np.ones((1, 2))}
    with pytest.raises(KeyboardInterrupt):
        rundir.write_results(tmp_path, None, metrics, {}, plot=False)
    assert path.read_text() == "old,results\n1,2\n"
    assert sorted(os.listdir(tmp_path)) == ["metrics.csv"]             # no temporary left


def test_eval_json_keeps_every_evaluation(tmp_path):
    a = {"checkpoint": 4, "episodes_per_seed": 10, "seed": 0, "greedy": {"mean": 1.0}}
    b = {"checkpoint": 4, "episodes_per_seed": 100, "seed": 0, "greedy": {"mean": 2.0}}
    rundir.add_evaluation(tmp_path, a)
    rundir.add_evaluation(tmp_path, b)
    rundir.add_evaluation(tmp_path, {**a, "greedy": {"mean": 1.0}})   # the same one again
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert [e["episodes_per_seed"] for e in doc["evaluations"]] == [100, 10]
    (tmp_path / "eval.json").write_text(json.dumps(a))                # an older, single one
    rundir.add_evaluation(tmp_path, b)
    assert len(json.loads((tmp_path / "eval.json").read_text())["evaluations"]) == 2
    (tmp_path / "eval.json").write_text("{broken")
    with pytest.raises(RunError, match="not an evaluation record jaxgrpo wrote"):
        rundir.add_evaluation(tmp_path, b)
    assert (tmp_path / "eval.json").read_text() == "{broken"
    (tmp_path / "eval.json").write_text("[1, 2]")                     # JSON, but not ours
    with pytest.raises(RunError, match="not an evaluation record"):
        rundir.add_evaluation(tmp_path, b)
    assert (tmp_path / "eval.json").read_text() == "[1, 2]"


def test_metrics_frame_round_trips():
    m = {"env_steps": np.arange(6.0).reshape(2, 3), "loss": np.array([[1.0, np.nan, 3.0],
                                                                      [4.0, 5.0, 6.0]])}
    df = rundir.metrics_frame(m)
    assert list(df.columns) == ["seed", "iteration", "env_steps", "loss"]
    back = rundir.frame_to_metrics(df)
    for k in m:
        np.testing.assert_array_equal(back[k], m[k])


def test_metrics_csv_ends_at_the_last_iteration_any_seed_trained():
    """On-policy GRPO's scan runs past the budget: iterations that leave every seed's env_steps
    as it was are dropped from the end only (an idle iteration of one seed stays while another
    seed trains; a NaN loss of a diverged iteration that collected steps stays)."""
    nan = np.nan
    m = {"env_steps": np.array([[10., 20., 20., 20., 20.], [10., 20., 30., 30., 30.]]),
         "loss": np.array([[1., nan, nan, nan, nan], [1., 2., nan, nan, nan]])}
    grew = np.zeros((2, 5), bool)
    for s in range(2):                               # the plain reading of "env_steps grew"
        for i in range(5):
            grew[s, i] = i == 0 or m["env_steps"][s, i] > m["env_steps"][s, i - 1]
    n = max(i for i in range(5) if grew[:, i].any()) + 1
    t = rundir.trim_idle(m)
    assert n == 3
    for k in m:
        np.testing.assert_array_equal(t[k], m[k][:, :n])
    ppo = {"env_steps": np.cumsum(np.ones((2, 4)), 1), "loss": np.full((2, 4), np.nan)}
    assert rundir.trim_idle(ppo)["loss"].shape == (2, 4)


def test_exclusive_write_never_replaces(tmp_path):
    from jaxgrpo.fileio import write_text
    write_text(tmp_path / "config.yaml", "first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_text(tmp_path / "config.yaml", "second", exclusive=True)
    assert (tmp_path / "config.yaml").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


def test_metrics_renamed_since_read_back_under_their_new_names(tmp_path):
    """A run folder written before ``clip_frac`` and ``frac_zero_std_groups`` took TRL's names
    reads (and plots) under the new ones, asked for by either name."""
    (tmp_path / "config.yaml").write_text("algo: grpo\nenv: CartPole-v1\n")
    pd.DataFrame({"seed": [0, 0], "iteration": [0, 1], "env_steps": [10.0, 20.0],
                  "episode_return": [1.0, 2.0], "clip_frac": [0.1, 0.2],
                  "frac_zero_std_groups": [0.5, 0.25]}).to_csv(tmp_path / "metrics.csv",
                                                              index=False)
    assert rundir.RENAMED_METRICS == {"clip_frac": "clip_ratio/region_mean",
                                      "frac_zero_std_groups": "frac_reward_zero_std"}
    _, df = rundir.read_run(tmp_path)
    assert "clip_frac" not in df.columns and "frac_zero_std_groups" not in df.columns
    np.testing.assert_array_equal(df["clip_ratio/region_mean"], [0.1, 0.2])
    np.testing.assert_array_equal(df["frac_reward_zero_std"], [0.5, 0.25])
    for metric in ("clip_frac", "clip_ratio/region_mean"):
        (label, frame, _), = rundir.run_curves([tmp_path], metric=metric)
        assert "clip_ratio/region_mean" in frame.columns
    rundir.plot_runs([tmp_path], tmp_path / "clip.png", metric="clip_frac")
    assert (tmp_path / "clip.png").stat().st_size > 0
