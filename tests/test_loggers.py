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
