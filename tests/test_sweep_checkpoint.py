"""Preemption-safe sweeps: ``jaxgrpo sweep --checkpoint-every`` killed with SIGKILL mid-run and
continued with ``--resume`` ends with the uninterrupted sweep's metrics; truncated or foreign
sweep checkpoints are refused with one line and left as they were; the Python API
(``sweep(..., checkpoint_dir=)``) agrees with the one-call sweep."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from jaxgrpo import GRPOConfig, cli
from jaxgrpo.sweeps import sweep

O0 = {"xla_backend_optimization_level": 0}
SPEC = """
    algo: grpo
    total_timesteps: 1000000
    num_groups: 2
    group_size: 4
    num_iterations: 30
    env_params: {max_steps_in_episode: 50}
    grid:
      lr: [1e-3, 1e-2]
    seeds: 2
    log_every: 2
    compiler_options: {xla_backend_optimization_level: 0}
"""


def _yaml(path, text=SPEC):
    path.write_text(textwrap.dedent(text))
    return str(path)


def _steps(ck):
    """Finished checkpoint steps (orbax's finalized folders, with our files.json)."""
    if not os.path.isdir(ck):
        return []
    return sorted(int(n) for n in os.listdir(ck)
                  if n.isdigit() and os.path.exists(os.path.join(ck, n, "files.json")))


def _tree_digest(folder):
    h = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            h[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return h


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A sweep folder whose run was killed (SIGKILL) after its first checkpoints, and the
    uninterrupted sweep's folder."""
    d = tmp_path_factory.mktemp("ck")
    spec = _yaml(d / "s.yaml")
    out = d / "killed"
    p = subprocess.Popen([sys.executable, "-m", "jaxgrpo", "sweep", spec, "--out", str(out),
                          "--checkpoint-every", "2"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    try:
        deadline = time.monotonic() + 120
        while len(_steps(out / "sweep-checkpoints")) < 2 and p.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        p.send_signal(signal.SIGKILL)
    finally:
        p.kill()
        log = p.communicate()[0].decode()
    assert p.returncode == -signal.SIGKILL, log[-2000:]
    steps = _steps(out / "sweep-checkpoints")
    assert steps and max(steps) < 30 and not (out / "summary.csv").exists(), (steps, log)
    ref = d / "ref"
    assert cli.main(["sweep", spec, "--out", str(ref), "--checkpoint-every", "2"]) == 0
    return d, out, ref


def test_killed_sweep_resumes_to_the_uninterrupted_metrics(killed, capsys):
    d, out, ref = killed
    work = d / "resumed"
    shutil.copytree(out, work)
    assert cli.main(["sweep", "--resume", str(work)]) == 0
    assert "wrote" in capsys.readouterr().out
    got, want = pd.read_csv(work / "metrics.csv"), pd.read_csv(ref / "metrics.csv")
    assert got.shape == want.shape and len(got) == 2 * 2 * 15     # C x S x kept rows
    pd.testing.assert_frame_equal(got, want)                      # the same programs: exact
    assert (work / "sweep.yaml").read_text() == (ref / "sweep.yaml").read_text()
    assert cli.main(["sweep", "--resume", str(work)]) == 0        # finished: nothing to do
    assert "the sweep is complete" in capsys.readouterr().out


def test_truncated_checkpoint_is_refused_and_left_as_it_was(killed, capsys):
    d, out, _ = killed
    work = d / "truncated"
    shutil.copytree(out, work)
    step = max(_steps(work / "sweep-checkpoints"))
    victim = max((os.path.join(r, f) for r, _, fs in os.walk(work / "sweep-checkpoints" /
                                                             str(step)) for f in fs
                  if f != "files.json"), key=os.path.getsize)
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    before = _tree_digest(work)
    assert cli.main(["sweep", "--resume", str(work)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corrupt" in err and "left as it is" in err, err
    assert _tree_digest(work) == before


def test_foreign_checkpoint_is_refused_and_left_as_it_was(killed, capsys):
    d, out, _ = killed
    work = d / "foreign"
    shutil.copytree(out, work)
    y = work / "sweep.yaml"
    y.write_text(y.read_text().replace("- 0.01", "- 0.02"))       # another sweep's grid
    before = _tree_digest(work)
    assert cli.main(["sweep", "--resume", str(work)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "written by a different sweep: grid" in err, err
    assert _tree_digest(work) == before


def test_resume_refuses_bad_folders(tmp_path, capsys):
    spec = _yaml(tmp_path / "s.yaml")
    cases = [(["--resume", str(tmp_path / "nope")], "no such folder"),
             (["--resume", str(tmp_path)], "not a checkpointed sweep"),
             ([spec, "--resume", str(tmp_path)], "one of them"),
             (["--resume", str(tmp_path), "--checkpoint-every", "2"], "not with --resume"),
             ([spec, "--checkpoint-every", "3"], "multiple of log_every"),
             ([spec, "--coordinator", "127.0.0.1:1234"], "go together"),
             ([spec, "--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"],
              "HOST:PORT")]
    for argv, msg in cases:
        assert cli.main(["sweep", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_python_checkpointed_sweep_equals_one_call(tmp_path):
    cfg = GRPOConfig(total_timesteps=2000, num_groups=2, group_size=4, num_iterations=4,
                     env_params={"max_steps_in_episode": 50})
    one = sweep(cfg, {"lr": [1e-3, 1e-2]}, 2, compiler_options=O0)
    ck = sweep(cfg, {"lr": [1e-3, 1e-2]}, 2, compiler_options=O0,
               checkpoint_dir=tmp_path / "ck", checkpoint_every=2)
    assert _steps(tmp_path / "ck") == [2, 4]                       # one segment length: 2
    for k in one.metrics:
        np.testing.assert_allclose(ck.metrics[k], one.metrics[k], rtol=1e-4, atol=1e-5,
                                   err_msg=k)
    np.testing.assert_array_equal(ck.iteration, one.iteration)
    with pytest.raises(ValueError, match="checkpoint_every: must be a multiple of log_every"):
        sweep(cfg, {}, 1, log_every=2, checkpoint_dir=tmp_path / "x", checkpoint_every=3)
    assert not (tmp_path / "x").exists()


def test_checkpoint_of_other_code_is_refused_and_left_as_it_was(killed, capsys, monkeypatch):
    d, out, _ = killed
    work = d / "other-code"
    shutil.copytree(out, work)
    before = _tree_digest(work)
    monkeypatch.setattr("jaxgrpo.provenance.code_digest", lambda: "0123456789abcdef")
    assert cli.main(["sweep", "--resume", str(work)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "jaxgrpo_code is" in err, err
    assert "'0123456789abcdef' here" in err
    assert _tree_digest(work) == before
