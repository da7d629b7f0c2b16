"""jaxgrpo.sweepdir: the guards before a sweep writes (check_sweep_out, start_sweep,
check_resume_sweep), the resolved sweep.yaml (sweep_yaml) and write_sweep's staging folder,
on a fake sweep result (nothing is trained or compiled). The command line's use of them is in
test_sweep.py and test_sweep_checkpoint.py."""
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from jaxgrpo import sweepdir
from jaxgrpo.errors import RunError
from jaxgrpo.grids import load_sweep_spec
from jaxgrpo.rundir import SWEEP_FILES

SPEC_YAML = """\
algo: grpo
num_groups: 2
group_size: 4
env_params: {max_steps_in_episode: 50}
grid: {lr: [0.001, 0.003]}
seeds: 2
base_seed: 5
log_every: 2
compiler_options: {xla_backend_optimization_level: 0}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_YAML)
    return load_sweep_spec(path)


class FakeResult:
    """What write_sweep uses of a SweepResult."""
    seeds, base_seed, log_every = 2, 5, 2

    def __init__(self, value=1.0, fail_plot=False):
        self.value, self.fail_plot = value, fail_plot

    def summary(self):
        return pd.DataFrame({"lr": [0.001, 0.003], "final_return": [self.value, 2 * self.value]})

    def to_csv(self, path):
        pd.DataFrame({"seed": [0, 1], "episode_return": [self.value] * 2}).to_csv(path, index=False)

    def plot(self, path):
        if self.fail_plot:
            raise RuntimeError("plot failed")
        path.write_bytes(b"png " + str(self.value).encode())


def _files(d):
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def _staging(parent):
    return [p for p in parent.iterdir() if ".staging-" in p.name]


# ----------------------------------------------------------------------------- guards

def test_check_sweep_out(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("algo: grpo\n")
    with pytest.raises(RunError, match="holds a training run"):
        sweepdir.check_sweep_out(tmp_path / "r", overwrite=True)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.yaml").write_text("grid: {}\n")
    with pytest.raises(RunError, match="already holds sweep results.*--overwrite"):
        sweepdir.check_sweep_out(tmp_path / "s")
    sweepdir.check_sweep_out(tmp_path / "s", overwrite=True)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "metrics.csv").write_text("x")
    with pytest.raises(RunError, match="already holds results; choose another --out"):
        sweepdir.check_sweep_out(tmp_path / "m")
    (tmp_path / "f").write_text("a file")
    with pytest.raises(RunError, match="exists and is not a folder"):
        sweepdir.check_sweep_out(tmp_path / "f", overwrite=True)
    assert sweepdir.check_sweep_out(str(tmp_path / "new")) == tmp_path / "new"
    assert not (tmp_path / "new").exists()                       # nothing created


def test_start_sweep_and_check_resume_sweep(tmp_path, spec):
    with pytest.raises(RunError, match="no such folder"):
        sweepdir.check_resume_sweep(tmp_path / "absent")
    with pytest.raises(RunError, match="is not a checkpointed sweep's folder"):
        sweepdir.check_resume_sweep(tmp_path)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(RunError, match="holds a training run; continue it with jaxgrpo train"):
        sweepdir.check_resume_sweep(tmp_path / "run")
    with pytest.raises(RunError, match="holds a training run"):
        sweepdir.start_sweep(tmp_path / "run", spec)

    out = sweepdir.start_sweep(tmp_path / "sweep", spec)
    assert out == tmp_path / "sweep" and sorted(p.name for p in out.iterdir()) == ["sweep.yaml"]
    assert (out / "sweep.yaml").read_text() == sweepdir.sweep_yaml(spec)
    assert sweepdir.check_resume_sweep(out) == out       # no checkpoint yet: from iteration 0
    (out / sweepdir.SWEEP_CHECKPOINTS).mkdir()
    assert sweepdir.check_resume_sweep(str(out)) == out and not sweepdir.sweep_complete(out)
    with pytest.raises(RunError, match="already holds sweep results"):
        sweepdir.start_sweep(out, spec)                          # never a second start
    (tmp_path / "empty").mkdir()
    assert sweepdir.start_sweep(tmp_path / "empty", spec) == tmp_path / "empty"

    sweepdir.write_sweep(out, FakeResult(), spec, in_progress=True)   # the sweep finishes
    assert set(SWEEP_FILES) <= set(_files(out)) and (out / sweepdir.SWEEP_CHECKPOINTS).is_dir()
    assert sweepdir.sweep_complete(out)               # jaxgrpo sweep --resume: a no-op
    with pytest.raises(RunError, match="this sweep has finished"):
        sweepdir.check_resume_sweep(out)


def test_sweep_yaml_reads_back_as_the_same_spec(tmp_path, spec):
    text = sweepdir.sweep_yaml(spec)
    assert text.startswith("# jaxgrpo sweep: `jaxgrpo sweep THIS_FILE --out DIR` runs it again\n")
    (tmp_path / "again.yaml").write_text(text)
    again = load_sweep_spec(tmp_path / "again.yaml")
    for k in ("config", "grid", "seeds", "base_seed", "log_every", "compiler_options",
              "vmap_size", "checkpoint_every"):
        assert again[k] == spec[k], k
    assert "checkpoint_every" not in text and "vmap_size: auto" in text   # None left out
    explicit = sweepdir.sweep_yaml({**spec, "vmap_size": None, "checkpoint_every": 4})
    assert "vmap_size: null" in explicit and "checkpoint_every: 4" in explicit
    (tmp_path / "explicit.yaml").write_text(explicit)
    back = load_sweep_spec(tmp_path / "explicit.yaml")
    assert back["vmap_size"] is None and back["checkpoint_every"] == 4


# ----------------------------------------------------------------------------- write_sweep

def test_write_sweep_new_folder_then_refuses_then_overwrites(tmp_path, spec):
    out = tmp_path / "out"
    table = sweepdir.write_sweep(out, FakeResult(1.0), spec)
    assert list(table["final_return"]) == [1.0, 2.0]
    first = _files(out)
    assert sorted(first) == sorted(SWEEP_FILES) and _staging(tmp_path) == []
    written = load_sweep_spec(out / "sweep.yaml")
    assert (written["seeds"], written["base_seed"], written["log_every"]) == (2, 5, 2)
    assert written["config"] == spec["config"] and written["grid"] == spec["grid"]

    with pytest.raises(RunError, match="already holds sweep results.*it changed while the "
                                       "sweep ran: the results are in .*staging"):
        sweepdir.write_sweep(out, FakeResult(3.0), spec)
    assert _files(out) == first                                  # untouched
    [stage] = _staging(tmp_path)                                 # the new results are kept
    assert sorted(_files(stage)) == sorted(SWEEP_FILES)
    assert _files(stage)["curves.png"] == b"png 3.0"
    for f in stage.iterdir():
        f.unlink()
    stage.rmdir()

    (out / "notes.txt").write_text("mine")
    sweepdir.write_sweep(out, FakeResult(4.0), spec, overwrite=True)
    now = _files(out)
    assert now["curves.png"] == b"png 4.0" and now["summary.csv"] != first["summary.csv"]
    assert now["notes.txt"] == b"mine" and _staging(tmp_path) == []


def test_write_sweep_into_an_empty_folder_and_never_into_a_run(tmp_path, spec):
    (tmp_path / "empty").mkdir()
    sweepdir.write_sweep(tmp_path / "empty", FakeResult(), spec)
    assert sorted(_files(tmp_path / "empty")) == sorted(SWEEP_FILES)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("algo: grpo\n")
    with pytest.raises(RunError, match="holds a training run"):
        sweepdir.write_sweep(run, FakeResult(), spec, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]
    for stage in _staging(tmp_path):                             # where the results were kept
        assert sorted(_files(stage)) == sorted(SWEEP_FILES)


def test_a_failed_write_leaves_nothing(tmp_path, spec):
    with pytest.raises(RuntimeError, match="plot failed"):
        sweepdir.write_sweep(tmp_path / "out", FakeResult(fail_plot=True), spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]   # no out, no staging


# ----------------------------------------------------------------------------- Ctrl-C

NO_INTERRUPT = textwrap.dedent("""
    import os, signal, threading, time
    from jaxgrpo.sweepdir import _no_interrupt
    # Python's Ctrl-C handler, as in a terminal (a pytest-xdist worker's children start with
    # SIGINT ignored, and an ignored signal stays ignored after the block too)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    done = threading.Event()
    threading.Thread(target=done.wait, daemon=True).start()   # as JAX's threads are
    events = []
    try:
        with _no_interrupt():
            os.kill(os.getpid(), signal.SIGINT)                # Ctrl-C: to the process
            time.sleep(0.2)
            events.append("block ended")
        time.sleep(0.2)
    except KeyboardInterrupt:
        events.append("interrupted")
    done.set()
    print(",".join(events))
""")


def test_no_interrupt_holds_back_ctrl_c_in_a_process_with_threads():
    out = subprocess.run([sys.executable, "-c", NO_INTERRUPT], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "block ended,interrupted", out.stdout + out.stderr
