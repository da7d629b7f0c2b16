"""Smoke test of experiments/: every experiment YAML validates in full (every case, no
compilation) and runs at the tiny size (1 seed, 2 iterations, its first case) through the same
code path as the real run, writing its CSV, table and plots."""
from __future__ import annotations

import glob
import json
import os

import pandas as pd
import pytest

from experiments import run

NAMES = sorted(os.path.splitext(os.path.basename(p))[0]
               for p in glob.glob(os.path.join(run.HERE, "*.yaml")))


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
    assert info[0]["info"]["compile_s"] > 0 and info[0]["env_steps"] > 0


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
