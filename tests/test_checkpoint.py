"""Checkpoints: typed keys and layouts round-trip; a PPO run (whose state carries env states)
stopped and resumed equals the run done in one go, bitwise; corrupt or mismatched checkpoints
give one clear error and are left untouched. In-process (one PPO compilation per chunk length)."""
import gc
import os
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxgrpo
from jaxgrpo import cli, runs
from jaxgrpo.checkpoint import Checkpointer, CheckpointError, flatten_state

# A failed orbax/tensorstore read can leave a callback that later hits orbax's closed asyncio loop
# ("Event loop is closed", printed when garbage-collected); harmless, and not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PPO = jaxgrpo.PPOConfig(num_envs=2, num_steps=32, total_timesteps=256, num_minibatches=2,
                        update_epochs=2)            # 4 iterations
FAST = {"xla_backend_optimization_level": 0}    # about half the compile time on CPU


def leaves(state):
    arrays, layout = flatten_state(state)
    return layout, arrays


def assert_same_state(a, b):
    la, xa = leaves(a)
    lb, xb = leaves(b)
    assert la == lb
    for k in xa:
        np.testing.assert_array_equal(xa[k], xb[k], err_msg=la["paths"][int(k[5:])])


def test_typed_keys_and_structure_round_trip(tmp_path):
    tree = {"key": jax.random.split(jax.random.key(3), 4), "w": jnp.arange(6.0).reshape(2, 3),
            "n": jnp.int32(7), "none": None}
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(5, tree, {"loss": np.ones((4, 5), np.float32)}, {"note": "x"})
        with pytest.raises(CheckpointError, match="already exists"):
            ck.save(5, tree, {}, {})
        back, metrics, meta = ck.restore(5, jax.eval_shape(lambda: tree))
        assert meta["note"] == "x" and ck.latest_step() == 5
        assert jax.dtypes.issubdtype(back["key"].dtype, jax.dtypes.prng_key)
        np.testing.assert_array_equal(jax.random.key_data(back["key"]),
                                      jax.random.key_data(tree["key"]))
        np.testing.assert_array_equal(back["w"], tree["w"])
        np.testing.assert_array_equal(metrics["loss"], np.ones((4, 5)))
        wrong = {**tree, "w": jnp.zeros((3, 2))}
        with pytest.raises(CheckpointError, match=r"\['w'\] is float32\[2, 3\]"):
            ck.restore(5, jax.eval_shape(lambda: wrong))
        with pytest.raises(CheckpointError, match="different structure"):
            ck.restore(5, jax.eval_shape(lambda: {**tree, "extra": jnp.zeros(1)}))


class FakeWriter:
    scalars = []

    def __init__(self, logdir):
        self.logdir = logdir

    def add_scalar(self, tag, value, global_step):
        FakeWriter.scalars.append((tag, value, global_step))

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture(scope="module")
def ppo_runs(tmp_path_factory):
    """one go: all 4 iterations in one compiled call; resumed: stopped after 2 (chunks of 2),
    then resumed (with a fake tensorboardX to check the logging hook)."""
    root = tmp_path_factory.mktemp("ppo")
    runs.run_training(PPO, root / "one_go", seeds=2, base_seed=1, compiler_options=FAST)
    runs.run_training(PPO, root / "resumed", seeds=2, base_seed=1, checkpoint_every=2,
                      stop_after=2, compiler_options=FAST)
    fake = types.ModuleType("tensorboardX")
    fake.SummaryWriter = FakeWriter
    sys.modules["tensorboardX"] = fake
    try:
        runs.run_training(PPO, root / "resumed", seeds=2, base_seed=1, checkpoint_every=2,
                          resume=True, tensorboard=True, log_every=1, compiler_options=FAST)
    finally:
        del sys.modules["tensorboardX"]
    return root


def test_ppo_stopped_and_resumed_equals_one_go(ppo_runs):
    a, b = runs.load_run(ppo_runs / "one_go"), runs.load_run(ppo_runs / "resumed")
    assert a.step == b.step == 4
    assert a.state.env_carry is not None                      # PPO's env states are in there
    assert_same_state(a.state, b.state)
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
    pd.testing.assert_frame_equal(pd.read_csv(ppo_runs / "one_go" / "metrics.csv"),
                                  pd.read_csv(ppo_runs / "resumed" / "metrics.csv"))
    # TensorBoard hook: seed means of every metric, for the resumed iterations 3 and 4, against
    # env steps
    its = sorted(v for t, v, _ in FakeWriter.scalars if t == "train/iteration")
    assert its == [3, 4]
    expect = b.metrics["env_steps"][:, 2:].mean(0)
    for tag in ("train/env_steps", "train/iteration"):
        np.testing.assert_allclose(sorted(s for t, _, s in FakeWriter.scalars if t == tag), expect)
    env_steps = [v for t, v, s in FakeWriter.scalars if t == "train/env_steps"]
    np.testing.assert_allclose(sorted(env_steps), expect)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _data_files(step_dir):
    """The array data files of a checkpoint's state (orbax OCDBT: files in folders named d)."""
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(step_dir / "state") for f in fs
                  if os.path.basename(r) == "d")


def _tree(run):
    return {os.path.join(r, f): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(run) for f in fs}


def _resume_fails(run, capsys, *needles):
    """``jaxgrpo train --resume run``: exit 2, one line naming the problem, no file changed."""
    before = _tree(run)
    rc = cli.main(["train", "--resume", str(run), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    assert _tree(run) == before


def test_truncated_checkpoint_is_a_clear_error(ppo_runs, tmp_path, capsys):
    run = _copy(ppo_runs / "resumed", tmp_path / "run")
    shutil.rmtree(run / "checkpoints" / "4")                  # resume from 2 ...
    files = _data_files(run / "checkpoints" / "2")
    assert files
    for f in files:                                           # ... whose data is cut short
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
    with pytest.raises(CheckpointError, match="corrupt"):
        runs.load_run(run)
    _resume_fails(run, capsys, "checkpoint", "corrupt")
    gc.collect()                    # orbax's leftovers of the failed read: see pytestmark


def test_flipped_bytes_and_bad_metadata_are_clear_errors(ppo_runs, tmp_path, capsys):
    run = _copy(ppo_runs / "resumed", tmp_path / "run")
    shutil.rmtree(run / "checkpoints" / "4")
    meta = run / "checkpoints" / "2" / "meta" / "metadata"
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    _resume_fails(run, capsys, "metadata is unreadable")
    meta.write_text(text)
    for f in _data_files(run / "checkpoints" / "2"):          # same size, different bytes
        data = bytearray(open(f, "rb").read())
        data[-1] ^= 0xFF
        open(f, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        runs.load_run(run)


def test_checkpoint_of_another_config_is_refused(ppo_runs, tmp_path, capsys):
    run = _copy(ppo_runs / "resumed", tmp_path / "run")
    shutil.rmtree(run / "checkpoints" / "4")
    cfg = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(cfg.replace("vf_coef: 0.5", "vf_coef: 0.25"))
    _resume_fails(run, capsys, "different config", "vf_coef")


def test_every_file_of_a_checkpoint_is_checked(ppo_runs, tmp_path):
    """Cutting any file of a checkpoint short is detected (orbax's own files included, also
    the per-process files under history/ocdbt.process_0 that its restore never reads)."""
    run = ppo_runs / "resumed"
    with Checkpointer(run / "checkpoints") as ck:
        for step in ck.steps():                              # all intact as written, also 2
            ck.check_files(step)                             # after 4 was saved
    step_dir = run / "checkpoints" / "4"
    files = sorted(os.path.relpath(os.path.join(r, f), step_dir)
                   for r, _, fs in os.walk(step_dir) for f in fs if f != "files.json")
    assert any(f.startswith(os.path.join("history", "ocdbt.process_0")) for f in files)
    for rel in files:
        copy = _copy(run, tmp_path / f"c{files.index(rel)}")
        f = copy / "checkpoints" / "4" / rel
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        with pytest.raises(CheckpointError, match="corrupt"):
            runs.load_run(copy)
        shutil.rmtree(copy)
    gc.collect()


def test_a_corrupt_latest_checkpoint_names_the_intact_one_and_step_continues_from_it(
        ppo_runs, tmp_path, capsys):
    run = _copy(ppo_runs / "resumed", tmp_path / "run")
    hist = [os.path.join(r, f) for r, _, fs in os.walk(run / "checkpoints" / "4" / "history")
            for f in fs if "ocdbt.process_0" in r]
    with open(hist[0], "r+b") as fh:                         # a file orbax itself never reads
        fh.truncate(1)
    _resume_fails(run, capsys, "checkpoints/4", "corrupt", "checkpoint 2 is intact",
                  f"jaxgrpo train --resume {run} --step 2")
    corrupt, csv = _tree(run / "checkpoints" / "4"), (run / "metrics.csv").read_bytes()
    lines = []
    runs.run_training(PPO, run, seeds=2, base_seed=1, checkpoint_every=2, resume=True,
                      resume_step=2, compiler_options=FAST, echo=lines.append)
    assert any("moved to" in l and "superseded" in l for l in lines), lines
    aside = list((run / "superseded").iterdir())
    assert len(aside) == 1                                   # the corrupt 4, kept as it was
    assert _tree(aside[0] / "checkpoints" / "4") == {
        k.replace(str(run / "checkpoints" / "4"), str(aside[0] / "checkpoints" / "4")): v
        for k, v in corrupt.items()}
    assert (aside[0] / "metrics.csv").read_bytes() == csv
    a, b = runs.load_run(ppo_runs / "one_go"), runs.load_run(run)   # continued from 2 == one go
    assert b.step == 4
    assert_same_state(a.state, b.state)
    gc.collect()


def test_no_intact_checkpoint_says_so(ppo_runs, tmp_path, capsys):
    run = _copy(ppo_runs / "resumed", tmp_path / "run")
    for step in ("2", "4"):
        for f in _data_files(run / "checkpoints" / step):
            with open(f, "r+b") as fh:
                fh.truncate(1)
    _resume_fails(run, capsys, "corrupt", "no earlier checkpoint is intact")
    gc.collect()


def test_eval_of_a_corrupt_latest_checkpoint_names_the_intact_one(ppo_runs, tmp_path, capsys):
    run = _copy(ppo_runs / "resumed", tmp_path / "run")
    for f in _data_files(run / "checkpoints" / "4"):
        with open(f, "r+b") as fh:
            fh.truncate(1)
    before = _tree(run)
    rc = cli.main(["eval", str(run), "--episodes", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "checkpoint 2 is intact" in err and f"jaxgrpo eval {run} --step 2" in err
    assert _tree(run) == before
    assert cli.main(["eval", str(run), "--episodes", "2", "--step", "2"]) == 0
    assert "iteration 2 of 4" in capsys.readouterr().out
    gc.collect()


def test_resume_keeps_the_preset_and_a_finished_run_is_left_alone(ppo_runs, tmp_path):
    import json
    run = tmp_path / "p"
    runs.run_training(PPO, run, seeds=2, base_seed=1, checkpoint_every=2, stop_after=2,
                      compiler_options=FAST, preset="ppo/CartPole-v1")
    runs.run_training(PPO, run, seeds=2, base_seed=1, checkpoint_every=2, resume=True,
                      compiler_options=FAST)
    summary = (run / "summary.json").read_bytes()
    assert json.loads(summary)["preset"] == "ppo/CartPole-v1"
    lines = []
    runs.run_training(PPO, run, seeds=2, base_seed=1, resume=True, compiler_options=FAST,
                      echo=lines.append)
    assert any("nothing to do" in l for l in lines), lines
    assert (run / "summary.json").read_bytes() == summary
