"""jaxgrpo.loggers: the callback dispatcher, the Reporter that turns per-seed callbacks into
one update per iteration (seed means), the progress bar, and the optional loggers' install
hints. No JAX: the callbacks are called by hand, as the compiled loop would."""
import sys
import threading

import numpy as np
import pytest

from jaxgrpo import loggers
from jaxgrpo.errors import RunError
from jaxgrpo.loggers import Reporter


class Recorder:
    def __init__(self):
        self.logged, self.closed = [], 0

    def log(self, it, means):
        self.logged.append((it, means))

    def close(self):
        self.closed += 1


def test_sink_forwards_to_its_target_only_while_set():
    seen = []
    sink = loggers.Sink()
    sink(0, {"a": 1.0})                        # no target: nothing happens
    sink.target = lambda i, m: seen.append((i, m))
    sink(3, {"a": 2.0})
    sink.target = None
    sink(4, {"a": 3.0})
    assert seen == [(3, {"a": 2.0})]
    assert isinstance(loggers.SINK, loggers.Sink)


def test_one_update_per_iteration_with_the_seed_means():
    rec = Recorder()
    r = Reporter(3, total_steps=1000, iterations=5, bar=False, loggers=[rec])
    r.start()
    r(0, {"episode_return": np.float32(1.0), "env_steps": 10})
    r(0, {"episode_return": np.float32(np.nan), "env_steps": 10})
    assert rec.logged == []                    # 2 of 3 seeds: not yet
    r(1, {"episode_return": 5.0, "env_steps": 20})
    r(0, {"episode_return": 3.0, "env_steps": 10})
    assert rec.logged == [(0, {"episode_return": 2.0, "env_steps": 10.0})]   # NaN skipped
    r(1, {"episode_return": 7.0, "env_steps": 20})
    r(1, {"episode_return": 9.0, "env_steps": 20})
    assert rec.logged[-1] == (1, {"episode_return": 7.0, "env_steps": 20.0})
    r.offset = 10                              # a later chunk counts i from 0 again
    for v in (1.0, 2.0, 6.0):
        r(0, {"episode_return": v, "env_steps": 30})
    assert rec.logged[-1] == (10, {"episode_return": 3.0, "env_steps": 30.0})
    assert len(rec.logged) == 3
    r.close()
    assert rec.closed == 1


def test_all_nan_metric_gives_nan_without_a_warning(recwarn):
    rec = Recorder()
    r = Reporter(2, 100, 1, bar=False, loggers=[rec])
    r(0, {"kl": np.nan, "env_steps": 1.0})
    r(0, {"kl": np.nan, "env_steps": 1.0})
    assert np.isnan(rec.logged[0][1]["kl"]) and not [w for w in recwarn
                                                     if issubclass(w.category, RuntimeWarning)]


def test_seeds_from_several_threads():
    """The compiled loop may call back from several threads: every iteration is reported once."""
    rec = Recorder()
    r = Reporter(4, 100, 50, bar=False, loggers=[rec])

    def seed(s):
        for i in range(50):
            r(i, {"episode_return": float(s), "env_steps": float(i)})
    threads = [threading.Thread(target=seed, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(it for it, _ in rec.logged) == list(range(50))
    assert all(m["episode_return"] == 1.5 for _, m in rec.logged)


def test_progress_bar_runs_and_closes(capsys):
    r = Reporter(1, total_steps=100, iterations=2, bar=True, description="test run")
    r.start(env_steps_per_seed=0.0)
    r(0, {"episode_return": 4.0, "env_steps": 50.0})
    r(1, {"episode_return": np.nan, "env_steps": 100.0})   # the last finite return is shown
    assert r._last_return == 4.0
    r.close(final_steps=100.0)
    err = capsys.readouterr().err
    assert "test run" in err and "100 steps" in err and "it 2/2" in err
    r.close()                                   # a second close is harmless


def test_require_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)    # import fails
    with pytest.raises(RunError, match=r"--tensorboard needs tensorboardX: pip install "
                                       r"'jaxgrpo\[tensorboard\]'"):
        loggers.TensorBoardLogger("unused")
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(RunError, match=r"--wandb needs wandb: pip install 'jaxgrpo\[wandb\]'"):
        loggers.WandbLogger("unused", {})
    assert loggers.require("json", "--x", "x") is sys.modules["json"]


def test_tensorboard_logger_writes_finite_means(tmp_path):
    lg = loggers.TensorBoardLogger(tmp_path)
    lg.log(0, {"episode_return": 1.0, "kl": float("nan")})
    lg.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))


class FakeWriter:
    """A stand-in for tensorboardX's SummaryWriter: records (logdir, tag, value, step)."""
    scalars: list = []

    def __init__(self, logdir):
        self.logdir = logdir

    def add_scalar(self, tag, value, global_step):
        FakeWriter.scalars.append((self.logdir, tag, value, global_step))

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture
def fake_tensorboard(monkeypatch):
    import types
    FakeWriter.scalars = []
    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=FakeWriter))
    return FakeWriter.scalars


def test_tensorboard_x_axis_is_env_steps(fake_tensorboard):
    """Every scalar is logged at the row's env steps (completion tokens for text), not at the
    iteration; the iteration is a scalar of its own."""
    lg = loggers.TensorBoardLogger("tb")
    lg.log(4, {"episode_return": 7.0, "env_steps": 2560.4, "kl": float("nan")})
    lg.log(None, {"episode_return": 8.0, "env_steps": 3000.0})       # a sweep row
    assert fake_tensorboard == [("tb", "train/iteration", 5, 2560),
                                ("tb", "train/episode_return", 7.0, 2560),
                                ("tb", "train/env_steps", 2560.4, 2560),
                                ("tb", "train/episode_return", 8.0, 3000),
                                ("tb", "train/env_steps", 3000.0, 3000)]


def test_wandb_x_axis_is_env_steps_and_a_sweep_opens_one_run_per_combination(monkeypatch,
                                                                             tmp_path):
    import types
    calls = []

    class FakeRun:
        def __init__(self, **kw):
            calls.append(("init", kw))

        def define_metric(self, name, **kw):
            calls.append(("define_metric", name, kw))

        def log(self, row):
            calls.append(("log", row))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kw: FakeRun(**kw),
                                 util=types.SimpleNamespace(generate_id=lambda: "abc123"))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    lg = loggers.WandbLogger(tmp_path, {"lr": 0.1}, "proj")
    lg.log(1, {"episode_return": 3.0, "env_steps": 640.0, "kl": float("nan")})
    lg.close()
    assert calls[0][1]["id"] == "abc123" and "reinit" not in calls[0][1]
    assert ("define_metric", "train/*", {"step_metric": "env_steps"}) in calls
    assert ("log", {"env_steps": 640, "train/episode_return": 3.0, "train/env_steps": 640.0,
                    "train/iteration": 2}) in calls
    assert (tmp_path / "wandb_id.txt").read_text() == "abc123\n"      # --resume continues it
    calls.clear()
    loggers.WandbLogger(tmp_path, {}, "proj", name="sw/0_lr=0.1", group="sw",
                        id_file=tmp_path / "wandb-ids" / "0_lr=0.1.txt", several=True)
    kw = calls[0][1]
    assert (kw["reinit"], kw["group"], kw["name"]) == ("create_new", "sw", "sw/0_lr=0.1")
    assert (tmp_path / "wandb-ids" / "0_lr=0.1.txt").is_file()


def test_sweep_reporter_gives_each_combination_its_seed_means(capsys):
    """Runs call back with their place in the current compilation's batch: position p is
    combination idx[p // seeds], seed p % seeds; padding runs are ignored; each combination's
    loggers (made at its first row) get the seed means of each row; the bar counts every
    run's env steps."""
    made = {}

    def loggers_for(c):
        made[c] = Recorder()
        return [made[c]]

    r = loggers.SweepReporter(2, [100.0, 100.0, 100.0], bar=True, loggers_for=loggers_for,
                              description="sweep 3 x 2 seeds")
    r.group([0, 2])                                  # first compilation: combinations 0, 2
    for row in range(2):
        for p in (3, 0, 2, 1, 4, 5):                 # 4 runs, 2 of padding, in any order
            r(p, {"episode_return": 10.0 * p + row, "env_steps": 50.0 * (row + 1)})
    r.group([1])
    r(1, {"episode_return": 5.0, "env_steps": 50.0})
    assert sorted(made) == [0, 2] and 1 not in r.loggers    # combination 1: one seed so far
    assert made[0].logged == [(None, {"episode_return": 5.0, "env_steps": 50.0}),
                              (None, {"episode_return": 6.0, "env_steps": 100.0})]
    assert made[2].logged[-1] == (None, {"episode_return": 26.0, "env_steps": 100.0})
    r(0, {"episode_return": 7.0, "env_steps": 50.0})
    assert made[1].logged == [(None, {"episode_return": 6.0, "env_steps": 50.0})]
    r.close()
    assert [m.closed for m in made.values()] == [1, 1, 1]
    err = capsys.readouterr().err
    assert "sweep 3 x 2 seeds" in err and "500 steps" in err    # 4 runs x 100 + 2 x 50


def test_a_failing_logger_stops_logging_not_training(capsys):
    sink = loggers.Sink()

    def broken(i, m):
        raise ConnectionError("wandb unreachable")
    sink.target = broken
    sink(0, {})                                      # no exception reaches the compiled loop
    assert sink.target is None
    assert "progress and logging stopped (ConnectionError: wandb unreachable)" in \
        capsys.readouterr().err
