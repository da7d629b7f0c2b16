"""Preemption and resume (jaxgrpo.preemption, runs, sweeps, the CLI): SIGTERM at three moments
(before the first chunk ends, mid-run, just before the last chunk) stops ``train`` (GRPO and
PPO, 2 seeds), ``sweep`` (2 x 2 grid) and ``sft`` within one chunk, with a checkpoint of the
iteration reached; resuming ends bitwise where the uninterrupted run ends. Resume keeps the
run's options, a finished run or sweep resumes as a no-op, and a folder with results but no
checkpoint is refused, untouched.

In-process: the signal is sent to this process (``os.kill``) from the progress reporter (runs)
or after a segment call (sweeps) while ``preemption.handling()`` is active; every config is
tiny, compiled once per module (the compiled cache) with ``xla_backend_optimization_level=0``.
One subprocess test sends SIGTERM to a real ``python -m jaxgrpo train``."""
import json
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

from conftest import fast_xla_flags
from jaxgrpo import GRPOConfig, PPOConfig, cli, preemption, runs
from jaxgrpo.checkpoint import flatten_state
from jaxgrpo.config import SFTConfig
from jaxgrpo.errors import RunError
from jaxgrpo.loggers import Reporter

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

FAST = {"xla_backend_optimization_level": 0}
N = 6                                                     # iterations of every run here
CONFIGS = {
    "grpo": GRPOConfig(num_groups=2, group_size=2, num_steps=8, num_minibatches=1,
                       update_epochs=1, hidden_sizes=(16,), total_timesteps=32 * N),
    "ppo": PPOConfig(num_envs=2, num_steps=8, total_timesteps=16 * N, num_minibatches=1,
                     update_epochs=1, hidden_sizes=(16,)),
    "sft": SFTConfig(env_kwargs={"digits": 1}, num_layers=1, width=16, num_heads=2,
                     max_len=16, num_steps=N, batch_size=4, warmup_steps=0),
}
# when SIGTERM comes (the iteration reported; None: after compiling, as the first chunk starts)
# -> the iteration the run stops at: the end of that chunk (1 iteration by default: about 200
# progress updates per run)
MOMENTS = {"start": (None, 1), "mid": (N // 2 - 1, N // 2), "last": (N - 2, N - 1)}


def _signal_at(monkeypatch, iteration):
    """SIGTERM to this process when the reporter reports ``iteration`` (0-based; None: when the
    loop starts, after compiling, before the first chunk)."""
    if iteration is None:
        start = Reporter.start

        def hook(self, *a):
            start(self, *a)
            os.kill(os.getpid(), signal.SIGTERM)
        monkeypatch.setattr(Reporter, "start", hook)
        return
    update = Reporter.update

    def hook(self, it, means):
        update(self, it, means)
        if it == iteration:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(Reporter, "update", hook)


def _train(name, out, **kw):
    return runs.run_training(CONFIGS[name], out, seeds=2, compiler_options=FAST, **kw)


def _same_run(a, b):
    """metrics.csv and the final TrainState of two run folders are equal, bitwise."""
    pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv"))
    fa, la = flatten_state(runs.load_run(a).state)
    fb, lb = flatten_state(runs.load_run(b).state)
    assert la == lb
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The uninterrupted run of each config (default options)."""
    root = tmp_path_factory.mktemp("ref")
    for name in CONFIGS:
        _train(name, root / name)
    return root


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("name", CONFIGS)
def test_sigterm_stops_within_a_chunk_and_resume_is_bitwise(name, moment, references,
                                                              tmp_path, monkeypatch):
    at, stops = MOMENTS[moment]
    out = tmp_path / "run"
    _signal_at(monkeypatch, at)
    with pytest.raises(preemption.Preempted) as e:
        with preemption.handling():
            _train(name, out)
    assert (e.value.iteration, e.value.signum, e.value.out) == (stops, signal.SIGTERM, out)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL       # handlers put back
    monkeypatch.undo()
    if stops:
        assert sorted(os.listdir(out / "checkpoints")) == [str(stops)]
        m = pd.read_csv(out / "metrics.csv")                # the partial results, written
        assert len(m) == 2 * stops and (out / "curves.png").is_file()
        assert json.loads((out / "summary.json").read_text())["iterations_done"] == stops
    else:
        assert not (out / "checkpoints").exists() and not (out / "metrics.csv").exists()
    _train(name, out, resume=True)
    _same_run(out, references / name)


def test_resume_keeps_the_options_and_a_finished_run_is_a_no_op(references, tmp_path,
                                                                 monkeypatch):
    out = tmp_path / "run"
    _signal_at(monkeypatch, 3)
    with pytest.raises(preemption.Preempted):
        with preemption.handling():
            _train("grpo", out, checkpoint_every=2, log_every=1)
    monkeypatch.undo()
    saved = json.loads((out / "options.json").read_text())
    assert saved == {"checkpoint_every": 2, "log_every": 1, "compiler_options": FAST}
    assert sorted(os.listdir(out / "checkpoints")) == ["2", "4"]    # stopped at 4
    runs.run_training(CONFIGS["grpo"], out, seeds=2, resume=True)   # options from the folder
    assert sorted(os.listdir(out / "checkpoints")) == ["2", "4", "6"]
    _same_run(out, references / "grpo")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    said = []
    runs.run_training(CONFIGS["grpo"], out, seeds=2, resume=True, echo=said.append)
    assert "the run is complete (6/6 iterations); nothing to do" in said[-1]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_results_without_checkpoint_are_not_retrained(references, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(references / "ppo", out)
    shutil.rmtree(out / "checkpoints")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RunError, match=r"holds results \(metrics.csv, summary.json\) but no "
                                       r"checkpoint"):
        _train("ppo", out, resume=True)
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint to continue from" in err, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_handling_restores_handlers_and_is_inert_outside():
    preemption.check("x", 3)                    # no signal, no handler: nothing happens
    old = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(preemption.Preempted, match="SIGUSR1 at iteration 3"):
        with preemption.handling():
            assert preemption.requested() is None
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)                    # the Python-level handler runs
            assert preemption.requested() == signal.SIGUSR1
            saved = []
            try:
                preemption.check("x", 3, lambda: saved.append(1))
            finally:
                assert saved == [1]
    assert signal.getsignal(signal.SIGUSR1) == old and preemption.requested() is None


# ----------------------------------------------------------------------------- sweeps

SWEEP = """
    algo: ppo
    num_envs: 2
    num_steps: 8
    total_timesteps: 96
    num_minibatches: 1
    update_epochs: 1
    hidden_sizes: [16]
    grid: {lr: [1e-3, 1e-2], ent_coef: [0.0, 0.01]}
    seeds: 2
    compiler_options: {xla_backend_optimization_level: 0}
"""


@pytest.fixture(scope="module")
def sweep_ref(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "s.yaml").write_text(textwrap.dedent(SWEEP))
    assert cli.main(["sweep", str(root / "s.yaml"), "--out", str(root / "ref")]) == 0
    return root


@pytest.mark.parametrize("stops", [0, N // 2, N - 1])
def test_sigterm_stops_a_sweep_and_resume_is_bitwise(stops, sweep_ref, tmp_path, monkeypatch,
                                                     capsys):
    """SIGTERM after the runs' initialization (0), or after the 3rd or 5th of the 6 one-iteration
    segment calls."""
    from jaxgrpo.sweeps.runner import Runner
    calls, segment = [], Runner.segment

    def hook(self, *a):
        out = segment(self, *a)
        calls.append(1)
        if len(calls) == stops:
            os.kill(os.getpid(), signal.SIGTERM)
        return out
    monkeypatch.setattr(Runner, "segment", hook)
    if not stops:
        init = Runner.init

        def hook_init(self, *a):
            out = init(self, *a)
            os.kill(os.getpid(), signal.SIGTERM)
            return out
        monkeypatch.setattr(Runner, "init", hook_init)
    out = tmp_path / "sweep"
    capsys.readouterr()
    rc = cli.main(["sweep", str(sweep_ref / "s.yaml"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    said = [ln for ln in err.splitlines() if ln.startswith("jaxgrpo")]  # beside the progress line
    assert rc == 143 and len(said) == 1 and err.endswith(said[0]), err
    if stops:
        assert err.endswith(f"stopped by SIGTERM (checkpoint at {stops} iterations in "
                            f"{out}/sweep-checkpoints); continue with: jaxgrpo sweep "
                            f"--resume {out}"), err
        assert sorted(os.listdir(out)) == ["sweep-checkpoints", "sweep.yaml"]
        monkeypatch.undo()
        assert cli.main(["sweep", "--resume", str(out)]) == 0
    else:
        assert "nothing trained yet" in err and not out.exists(), err
        monkeypatch.undo()
        assert cli.main(["sweep", str(sweep_ref / "s.yaml"), "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"),
                                  pd.read_csv(sweep_ref / "ref" / "metrics.csv"))
    capsys.readouterr()
    assert cli.main(["sweep", "--resume", str(out)]) == 0           # finished: a no-op
    said = capsys.readouterr().out.strip()
    assert said.endswith("the sweep is complete (summary.csv is there); nothing to do"), said


# ----------------------------------------------------------------------------- a real process

def test_sigterm_to_a_train_process(references, tmp_path):
    """``python -m jaxgrpo train`` (CONFIGS["ppo"]) sent SIGTERM while it compiles: it stops
    before its first or second chunk with one line naming the command that continues, exit
    143; that command finishes it like the uninterrupted run (XLA_FLAGS' optimization level
    0 compiles what ``compiler_options=FAST`` does)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cc"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "XLA_FLAGS": fast_xla_flags()}
    args = [sys.executable, "-m", "jaxgrpo", "train", "--algo", "ppo", "--seeds", "2",
            "--total-timesteps", "96", "--set", "num_envs=2", "--set", "num_steps=8",
            "--set", "num_minibatches=1", "--set", "update_epochs=1", "--set",
            "hidden_sizes=[16]"]
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    with open(log, "w") as f:
        p = subprocess.Popen(args + ["--out", str(out)], stderr=f, env=env)
    try:
        deadline = time.monotonic() + 120
        while "compiling" not in log.read_text():        # handled from here on
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.02)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    finally:
        p.kill()
    err = log.read_text()
    line = err.strip().splitlines()[-1]
    assert p.returncode == 143, err[-2000:]
    assert line.startswith("jaxgrpo train: stopped by SIGTERM (") and line.endswith(
        f"continue with: jaxgrpo train --resume {out}"), line
    # the signal came while the first or the second program compiled: stopped before or
    # after the first chunk
    steps = os.listdir(out / "checkpoints") if (out / "checkpoints").exists() else []
    assert (steps == [] and "(nothing trained yet)" in line) or \
        (steps == ["1"] and f"(checkpoint 1/{N} in {out}/checkpoints)" in line), (steps, line)
    q = subprocess.run(args[:4] + ["--resume", str(out), "--quiet"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert q.returncode == 0, q.stderr[-2000:]
    _same_run(out, references / "ppo")


def test_a_second_signal_stops_at_once():
    """A process whose main thread is blocked (as in a compiled chunk) inside ``handling()``:
    the first SIGTERM waits for the chunk, the second ends it at once with status 143."""
    code = ("import threading, jaxgrpo.preemption as p\n"
            "with p.handling():\n"
            "    print('ready', flush=True)\n"
            "    threading.Event().wait(60)\n")
    q = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert q.stdout.readline() == "ready\n"
        q.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert q.poll() is None                         # the first one waits for the chunk
        t = time.monotonic()
        q.send_signal(signal.SIGTERM)
        q.wait(timeout=10)
        assert time.monotonic() - t < 5
    finally:
        q.kill()
    assert q.returncode == 143
    assert "second signal (SIGTERM): stopping at once" in q.stderr.read()
