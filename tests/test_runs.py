"""jaxgrpo.runs: init_from checked and resolved before anything is compiled or written, and a
second run of a config reusing its programs (the compile cache itself: test_compiled.py; typed
keys <-> key data: test_keys.py).

Resume, corrupt checkpoints and load_run's errors are in test_checkpoint.py; ``jaxgrpo train``
and ``eval`` in test_cli.py. One small PPO compilation here (module-scoped)."""
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo import compiled, configio, runs
from jaxgrpo.config import GRPOConfig, SFTConfig
from jaxgrpo.configio import save_config
from jaxgrpo.errors import CheckpointError, RunError

# A failed orbax read can leave a callback that later hits orbax's closed asyncio loop.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PPO = jaxgrpo.PPOConfig(num_envs=2, num_steps=16, total_timesteps=64, num_minibatches=2,
                        update_epochs=1)            # 2 iterations
FAST = {"xla_backend_optimization_level": 0}
TEXT = dict(env="text:addition", env_kwargs={"digits": 1}, num_layers=1, width=32, num_heads=2,
            max_len=16)


# ----------------------------------------------------------------------------- init_from

@pytest.fixture
def text_folder(tmp_path):
    """A folder with a text run's config.yaml (width 32) and no checkpoint."""
    save_config(tmp_path / "config.yaml", SFTConfig(**TEXT), 1, 0)
    return tmp_path


def test_init_params_is_none_without_init_from():
    assert runs.init_params(GRPOConfig()) is None


def test_check_init_from_names_what_is_wrong(text_folder, tmp_path_factory):
    configio.check_init_from(GRPOConfig(**TEXT, init_from=str(text_folder)))     # same shape
    with pytest.raises(ValueError, match=r"^init_from: the model of .* differs .*width 32 "
                                         r"\(this config: 64\)"):
        configio.check_init_from(GRPOConfig(**{**TEXT, "width": 64}, init_from=str(text_folder)))
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ValueError, match=r"^init_from: .* is not a run folder"):
        configio.check_init_from(GRPOConfig(**TEXT, init_from=str(empty)))
    env_run = tmp_path_factory.mktemp("env_run")
    save_config(env_run / "config.yaml", GRPOConfig(), 1, 0)
    with pytest.raises(ValueError, match=r"^init_from: .* is a run on CartPole-v1, not a text"):
        configio.check_init_from(GRPOConfig(**TEXT, init_from=str(env_run)))


def test_init_from_takes_the_task_and_model_of_its_run(tmp_path):
    """A config built from fields (the command line, a YAML file, a sweep) takes the env,
    env_kwargs, max_new_tokens and model shape of the run init_from names, unless it sets
    them; another task than the run's is allowed and named in one line (run_training prints
    it at run start)."""
    sft = SFTConfig(**{**TEXT, "env_kwargs": {"digits": 2}, "max_len": 24}, max_new_tokens=4)
    save_config(tmp_path / "config.yaml", sft, 1, 0)
    g, _, _ = configio.config_from_dict({"init_from": str(tmp_path)})
    assert (g.env, dict(g.env_kwargs), g.max_new_tokens) == ("text:addition", {"digits": 2}, 4)
    assert all(getattr(g, k) == getattr(sft, k) for k in configio.MODEL_FIELDS)
    assert configio.check_init_from(g, 1) is None
    other, _, _ = configio.config_from_dict({"init_from": str(tmp_path),
                                             "env_kwargs": {"digits": 1}})
    assert (dict(other.env_kwargs), other.max_new_tokens, other.width) == ({"digits": 1}, 4, 32)
    assert configio.check_init_from(other) == (
        f"init_from: {tmp_path} learned text:addition {{digits: 2}}; this run trains "
        "text:addition {digits: 1}")
    sort, _, _ = configio.config_from_dict({"init_from": str(tmp_path), "env": "text:sort"})
    assert (dict(sort.env_kwargs), sort.max_new_tokens, sort.width) == ({}, None, 32)


def test_init_from_seed_counts(tmp_path):
    """Seed i starts from seed i of the run init_from names: it must have as many seeds as
    the run, or one (every seed from it); any other count is one line. A sweep, whose runs all
    start from the same params, takes a run of one seed."""
    save_config(tmp_path / "config.yaml", SFTConfig(**TEXT), 3, 0)
    g = GRPOConfig(**TEXT, init_from=str(tmp_path))
    configio.check_init_from(g, 3)
    for seeds in (1, 2, 4):
        with pytest.raises(ValueError, match=rf"^init_from: {tmp_path} has 3 seeds; a run from "
                                             rf"it takes 1 seed or 3 .*, not {seeds}$"):
            configio.check_init_from(g, seeds)
    from jaxgrpo.sweeps import sweep       # a sweep starts every run from the same params
    with pytest.raises(ValueError, match=r"^init_from: .* has 3 seeds; a sweep starts every "
                                         r"run from the same params"):
        sweep(g, {"lr": [1e-4, 3e-4]}, seeds=3)
    one = tmp_path / "one"
    one.mkdir()
    save_config(one / "config.yaml", SFTConfig(**TEXT), 1, 0)
    for seeds in (1, 2, 4):                # one seed: every seed starts from it
        configio.check_init_from(g.replace(init_from=str(one)), seeds)
    configio.check_init_from(g.replace(init_from=str(one)), per_seed=False)
    out = tmp_path / "grpo"
    with pytest.raises(RunError, match=r"^init_from: .* has 3 seeds"):
        runs.run_training(g, out, seeds=2)
    assert not out.exists()


def test_run_training_names_both_tasks_when_they_differ(tmp_path, monkeypatch):
    """Another task than the one init_from's run learned is allowed: run_training says so in
    one line when the run starts (before compiling)."""
    src = tmp_path / "sft"
    src.mkdir()
    save_config(src / "config.yaml", SFTConfig(**TEXT), 1, 0)
    g = GRPOConfig(**{**TEXT, "env_kwargs": {"digits": 2}}, init_from=str(src))

    class Compiling(Exception):
        pass

    def compiling(*a, **k):
        raise Compiling
    monkeypatch.setattr(runs, "_compiled_init", compiling)
    lines = []
    with pytest.raises(Compiling):
        runs.run_training(g, tmp_path / "grpo", echo=lines.append)
    assert [x for x in lines if "init_from" in x] == [
        f"init_from: {src} learned text:addition {{digits: 1}}; this run trains "
        "text:addition {digits: 2}"]


def test_init_params_of_a_folder_without_checkpoint(text_folder):
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        runs.init_params(GRPOConfig(**TEXT, init_from=str(text_folder)))


def test_run_training_refuses_a_bad_init_from_before_writing(text_folder, tmp_path):
    out = tmp_path / "run"
    bad = GRPOConfig(**{**TEXT, "width": 64}, init_from=str(text_folder))
    with pytest.raises(RunError, match=r"^init_from: the model of"):
        runs.run_training(bad, out)
    assert not out.exists()


def test_sweep_refuses_a_bad_init_from_before_compiling(text_folder, monkeypatch):
    from jaxgrpo.sweeps import runner, sweep

    def boom(*a, **k):
        raise AssertionError("compiled before validating")
    monkeypatch.setattr(runner, "Runner", boom)
    monkeypatch.setattr(compiled, "CACHE", compiled.CompileCache())
    bad = GRPOConfig(**{**TEXT, "width": 64}, init_from=str(text_folder))
    with pytest.raises(ValueError, match=r"^init_from: the model of"):
        sweep(bad, {"lr": [1e-4, 3e-4]})


# ----------------------------------------------------------------------------- runs

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    first = runs.run_training(PPO, root / "a", seeds=2, compiler_options=FAST)
    second = runs.run_training(PPO, root / "b", seeds=2, compiler_options=FAST)
    return root, first, second


def test_a_second_run_of_a_config_reuses_its_programs(two_runs):
    root, first, second = two_runs
    assert first["compile_seconds"] > 0 and second["compile_seconds"] == 0
    a, b = runs.load_run(root / "a"), runs.load_run(root / "b")
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k])
    assert a.step == PPO.iterations and a.seeds == 2


def test_run_training_refuses_a_folder_with_results(two_runs):
    root, _, _ = two_runs
    with pytest.raises(RunError, match="already holds results"):
        runs.run_training(PPO, root / "a", seeds=2, compiler_options=FAST)


def test_evaluate_run_reports_each_seed_and_mode(two_runs):
    root, _, _ = two_runs
    res = runs.evaluate_run(runs.load_run(root / "a"), episodes=3, seed=1)
    assert res["checkpoint"] == PPO.iterations and res["episodes_per_seed"] == 3
    for mode in ("greedy", "sampled"):
        assert len(res[mode]["per_seed"]) == 2
        lo, hi = res[mode]["ci95"]
        assert lo <= res[mode]["mean"] <= hi or np.isnan(lo)


def test_chunks_of_older_code_join_under_the_new_metric_names():
    """A run resumed from a checkpoint written before a metric rename: the restored chunk's
    metrics are renamed (runs.restore) and a metric one chunk lacks is NaN there."""
    import numpy as np
    run = runs._Run(None, None, 2, 0, {}, 1, None, print)
    old = {"clip_frac": np.ones((2, 3), np.float32), "env_steps": np.zeros((2, 3), np.float32)}
    run.chunks = [{runs.RENAMED_METRICS.get(k, k): v for k, v in old.items()},
                  {"clip_ratio/region_mean": np.zeros((2, 2), np.float32),
                   "env_steps": np.ones((2, 2), np.float32),
                   "valid_frac": np.ones((2, 2), np.float32)}]
    m = run.metrics()
    assert set(m) == {"clip_ratio/region_mean", "env_steps", "valid_frac"}
    np.testing.assert_array_equal(m["clip_ratio/region_mean"][0], [1, 1, 1, 0, 0])
    assert np.isnan(m["valid_frac"][:, :3]).all() and (m["valid_frac"][:, 3:] == 1).all()
