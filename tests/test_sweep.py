"""jaxgrpo.sweep (package jaxgrpo.sweeps) and ``jaxgrpo sweep``: one compilation per static config, equal to separate runs, sharded over devices.

Compilation dominates these tests, so every compiled program is built at most once per module
(module-scoped fixtures; the sweep's own cache of compiled runners) and compiled with
``xla_backend_optimization_level=0`` (about 3x faster to compile on CPU, slower to run; the
numbers being compared are all produced with the same options).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings

import yaml

import jax
import numpy as np
import pytest

from jaxgrpo import GRPOConfig, PPOConfig, cli, compiled, make_train
from jaxgrpo import sweeps as sweep_mod
from jaxgrpo.grids import load_sweep_spec
from jaxgrpo.sweeps import runner as runner_mod
from jaxgrpo.stats import bootstrap_ci
from jaxgrpo.sweeps import StaticSweepWarning, SweepResult, grid_configs, last_valid_row, sweep


def sweep_main(argv):
    return cli.main(["sweep", *argv])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

O0 = {"xla_backend_optimization_level": 0}
CFG = GRPOConfig(total_timesteps=2000, num_groups=2, group_size=4, num_iterations=3,
                 env_params={"max_steps_in_episode": 50})
GRID = {"lr": [1e-3, 3e-3, 1e-2], "beta": [0.0, 0.04]}
SEEDS = 4
TOL = dict(rtol=1e-4, atol=1e-5)   # float rounding; see docs/sweeps.md on vmapped vs separate


@pytest.fixture(scope="module")
def result() -> SweepResult:
    return sweep(CFG, GRID, SEEDS, compiler_options=O0)


@pytest.fixture
def no_compile(monkeypatch):
    """Fail the test if anything tries to build a training program."""
    def boom(*a, **k):
        raise AssertionError("compiled before validating")
    monkeypatch.setattr(runner_mod, "build_train", boom)
    monkeypatch.setattr(runner_mod, "Runner", boom)


def test_shapes_and_grid_order(result):
    assert result.grid == [{"lr": lr, "beta": b} for lr in GRID["lr"] for b in GRID["beta"]]
    assert [c.lr for c in result.configs] == [1e-3, 1e-3, 3e-3, 3e-3, 1e-2, 1e-2]
    for name, v in result.metrics.items():
        assert v.shape == (6, SEEDS, 3), name
    np.testing.assert_array_equal(result.iteration, np.tile(np.arange(3), (6, 1)))
    assert len(result.placement) == 1 and result.placement[0]["runs"] == 24
    assert result.states[0].iteration.shape == (SEEDS,)


def test_sweep_equals_separate_runs(result):
    train = jax.jit(make_train(CFG), compiler_options=O0)
    keys = jax.random.split(jax.random.key(0), SEEDS)
    for c, combo in enumerate(result.grid):
        for s in range(SEEDS):
            _, m = train(keys[s], combo)
            # identical trajectories: the valid env-step counts agree exactly
            np.testing.assert_array_equal(m["env_steps"], result.metrics["env_steps"][c, s])
            for name in m:
                np.testing.assert_allclose(m[name], result.metrics[name][c, s], **TOL,
                                           err_msg=f"{name} combination {combo} seed {s}")


def test_dataframe_and_csv(result, tmp_path):
    df = result.to_dataframe()
    assert len(df) == 6 * SEEDS * 3
    assert list(df.columns[:5]) == ["combination", "lr", "beta", "seed", "iteration"]
    row = df[(df.combination == 3) & (df.seed == 2) & (df.iteration == 1)].iloc[0]
    assert row.lr == 3e-3 and row.beta == 0.04
    assert row.episode_return == pytest.approx(result.metrics["episode_return"][3, 2, 1])
    result.to_csv(tmp_path / "sub" / "m.csv")
    import pandas as pd
    back = pd.read_csv(tmp_path / "sub" / "m.csv")
    np.testing.assert_allclose(back.env_steps, df.env_steps)


def test_final_return_summary_and_padding_rows():
    nan = np.nan
    ret = np.array([[[1.0, 2.0, nan], [3.0, nan, nan]], [[5.0, 6.0, 7.0], [nan, nan, nan]]],
                   np.float32)
    r = SweepResult(grid=[{"lr": 0.1}, {"lr": 0.2}], configs=[None, None],
                    metrics={"episode_return": ret, "env_steps": np.ones_like(ret)},
                    iteration=np.array([[0, 1, -1], [0, 1, 2]]), seeds=2)
    np.testing.assert_array_equal(r.final_return(), [[2.0, 3.0], [7.0, nan]])
    s = r.summary(n_boot=200)
    assert list(s.seeds) == [2, 1]
    assert s["mean"].tolist() == [2.5, 7.0] and s.index.name == "combination"
    assert s.ci_low[0] >= 2.0 and s.ci_high[0] <= 3.0
    assert (s.ci_low[1], s.ci_high[1]) == (7.0, 7.0)
    assert len(r.to_dataframe()) == 2 * 2 + 3 * 2     # the padding row of combination 0 dropped
    _, lo, hi = bootstrap_ci(np.arange(100.0), seed=0)
    assert 40 < lo < 49.5 < hi < 59


def test_last_valid_keeps_the_last_real_value_of_a_chunk():
    nan = np.nan
    x = jax.numpy.asarray([[1.0, 5.0, nan], [2.0, nan, nan], [nan, nan, nan]])   # [k=3, 3]
    np.testing.assert_array_equal(last_valid_row(x), [2.0, 5.0, nan])
    assert int(last_valid_row(jax.numpy.arange(3))) == 2


@pytest.mark.parametrize("grid, field", [
    ({"lrr": [1e-3]}, "lrr"),                        # unknown field
    ({"lr": ["fast"]}, "lr"),                        # wrong type (dynamic)
    ({"lr": [True]}, "lr"),
    ({"group_size": [2.5]}, "group_size"),           # wrong type (static)
    ({"group_size": [4, 1]}, "group_size"),          # a group of one has no advantage
    ({"hidden_sizes": [64]}, "hidden_sizes"),
    ({"lr": 1e-3}, "lr"),                            # not a list
    ({"beta": []}, "beta"),
    ({"algo": ["grpo", "sac"]}, "algo"),
    ({"algo": ["grpo", "ppo"], "beta": [0.0]}, "beta"),   # not a PPO field
])
def test_bad_grid_raises_before_compiling(no_compile, grid, field):
    with pytest.raises(ValueError, match=field):
        sweep(CFG, grid, 2)


def test_bad_seeds(no_compile):
    for seeds in (0, 2.0, "4"):
        with pytest.raises(ValueError, match="seeds"):
            sweep(CFG, GRID, seeds)


def test_algo_switch_carries_set_fields():
    base = GRPOConfig(total_timesteps=4096, lr=1e-3, env_params={"max_steps_in_episode": 50})
    combos, configs = grid_configs(base, {"algo": ["grpo", "ppo"], "gamma": [0.9]})
    assert configs[0] == base.replace(gamma=0.9)
    ppo = configs[1]
    assert isinstance(ppo, PPOConfig)
    assert (ppo.total_timesteps, ppo.lr, ppo.gamma, dict(ppo.env_params)) == \
        (4096, 1e-3, 0.9, {"max_steps_in_episode": 50})
    assert ppo.ent_coef == PPOConfig().ent_coef       # at GRPO's default: PPO's default applies


def test_clip_eps_sweep_keeps_a_symmetric_range_symmetric():
    high = lambda c: round(float(c.hparams()["clip_eps_high"]), 6)
    _, configs = grid_configs(CFG, {"clip_eps": [0.1, 0.3]})
    assert [(c.clip_eps, high(c)) for c in configs] == [(0.1, 0.1), (0.3, 0.3)]
    _, configs = grid_configs(CFG.replace(clip_eps_high=0.28), {"clip_eps": [0.1]})
    assert high(configs[0]) == 0.28                             # asymmetric: left alone


def test_static_fields_loop_over_compilations(monkeypatch):
    """Grouping by static fields, hparams per run and NaN padding, with a fake compiled runner."""
    calls = []

    class FakeRunner:
        def __init__(self, config, log_every, mesh, key_impl, compiler_options, vmap_size,
                     report=False, shared=frozenset()):
            self.kept = np.arange(config.group_size)        # groups of different length
            self.vmap_size = vmap_size
            calls.append(config.group_size)

        def __call__(self, key_data, hp):
            R = key_data.shape[0]
            lr = np.repeat(np.asarray(hp["lr"])[:, None], len(self.kept), 1)
            return {}, {"lr_seen": jax.numpy.asarray(lr)}, R

    monkeypatch.setattr(runner_mod, "Runner", FakeRunner)
    monkeypatch.setattr(compiled, "CACHE", compiled.CompileCache())
    with pytest.warns(StaticSweepWarning, match="group_size"):
        r = sweep(CFG, {"group_size": [2, 4], "lr": [0.1, 0.2, 0.3]}, 3)
    assert calls == [2, 4]
    assert r.metrics["lr_seen"].shape == (6, 3, 4)
    np.testing.assert_allclose(r.metrics["lr_seen"][:, :, 0],
                               np.repeat(np.array([[0.1, 0.2, 0.3, 0.1, 0.2, 0.3]]).T, 3, 1))
    assert np.isnan(r.metrics["lr_seen"][:3, :, 2:]).all()       # group_size 2: 2 rows, padded
    assert (r.iteration[:3, 2:] == -1).all() and (r.iteration[3:] >= 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sweep(CFG, {"lr": [0.1, 0.2]}, 2)     # dynamic only: one compilation, no warning
    assert calls == [2, 4]                    # group_size 4 was compiled (faked) already


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jax.sharding import PartitionSpec as P
    from jaxgrpo import GRPOConfig
    from jaxgrpo.sweeps import sweep, shard_runs, run_mesh
    out = sys.argv[1]
    assert len(jax.devices()) == 4, jax.devices()
    # padding: 6 rows over 4 devices -> 8, each device computes its own 2 rows
    mesh = run_mesh()
    f = jax.jit(jax.shard_map(lambda x: x * 0 + jax.lax.axis_index("runs"), mesh=mesh,
                              in_specs=P("runs"), out_specs=P("runs")))
    y, R = shard_runs(f, np.arange(6.0), mesh)
    info = {"R": R, "pad_shape": list(y.shape), "which_device": np.asarray(y)[:R].tolist(),
            "pad_devices": sorted(d.id for d in y.sharding.device_set)}
    cfg = GRPOConfig(total_timesteps=2000, num_groups=2, group_size=4, num_iterations=3,
                     env_params={"max_steps_in_episode": 50})
    r = sweep(cfg, {"lr": [1e-3, 3e-3, 1e-2], "beta": [0.0, 0.04]}, 4,
              compiler_options={"xla_backend_optimization_level": 0})
    info["placement"] = {k: v for k, v in r.placement[0].items()}
    np.savez(out + "/metrics.npz", **r.metrics)
    json.dump(info, open(out + "/info.json", "w"))
""")


def test_sharded_equals_unsharded(result, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4")
    p = subprocess.run([sys.executable, "-c", SHARDED, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.load(open(tmp_path / "info.json"))
    assert info["R"] == 6 and info["pad_shape"] == [8]
    assert info["which_device"] == [0, 0, 1, 1, 2, 2]
    assert info["pad_devices"] == [0, 1, 2, 3]
    pl = info["placement"]
    assert pl["runs"] == 24 and pl["padded_runs"] == 24
    assert pl["rows_per_device"] == {"0": 6, "1": 6, "2": 6, "3": 6}
    sharded = np.load(tmp_path / "metrics.npz")
    assert set(sharded.files) == set(result.metrics)
    for name in sharded.files:
        np.testing.assert_allclose(sharded[name], result.metrics[name], **TOL, err_msg=name)


def _write_yaml(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_cli_writes_files(result, tmp_path, capsys, monkeypatch):
    """... with the progress line on stderr and --tensorboard (a stand-in for tensorboardX):
    one logdir per combination, the seed means of each kept row at its env steps."""
    import types
    scalars = []

    class Writer:
        def __init__(self, logdir):
            self.logdir = logdir
            os.makedirs(logdir)                # as tensorboardX does: OUT exists early

        def add_scalar(self, tag, value, global_step):
            scalars.append((os.path.basename(self.logdir), tag, value, global_step))

        flush = close = lambda self: None
    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=Writer))
    out = tmp_path / "out"
    cfg = _write_yaml(tmp_path / "s.yaml", f"""
        algo: grpo
        total_timesteps: 2000
        num_groups: 2
        group_size: 4
        num_iterations: 3
        env_params: {{max_steps_in_episode: 50}}
        grid:
          lr: [1e-3, 3e-3, 1e-2]     # 1e-3 is a float here (PyYAML alone reads a string)
          beta: [0.0, 0.04]
        seeds: 4
        log_every: 2
        vmap_size: 8       # 24 runs: 3 groups of 8 vmapped, one after the other (lax.map)
        compiler_options: {{xla_backend_optimization_level: 0}}
        out: {out}
    """)
    assert sweep_main([cfg, "--tensorboard"]) == 0
    printed, err = capsys.readouterr()
    assert "sweep 6 x 4 seeds" in err and "steps/s" in err                # the progress line
    table = [l for l in printed.splitlines() if not l.startswith(("jaxgrpo", "wrote"))]
    assert "ci_high" in table[1] and max(map(len, table)) <= 80, printed
    import pandas as pd
    m = pd.read_csv(out / "metrics.csv")
    assert len(m) == 6 * 4 * 2 and sorted(m.iteration.unique()) == [1, 2]   # log_every=2: 1, 2
    for (c, s, i), row in m.set_index(["combination", "seed", "iteration"]).iterrows():
        assert row.episode_return == pytest.approx(
            result.metrics["episode_return"][c, s, i], rel=1e-4)
    means = m.groupby(["combination", "iteration"])[["env_steps", "episode_return"]].mean()
    names = sorted({d for d, *_ in scalars})
    assert names == ["0_lr=0.001_beta=0", "1_lr=0.001_beta=0.04", "2_lr=0.003_beta=0",
                     "3_lr=0.003_beta=0.04", "4_lr=0.01_beta=0", "5_lr=0.01_beta=0.04"]
    for c, name in enumerate(names):
        got = [(step, v) for d, tag, v, step in scalars
               if d == name and tag == "train/episode_return"]
        want = [(round(row.env_steps), row.episode_return) for _, row in means.loc[c].iterrows()]
        assert [g[0] for g in got] == [w[0] for w in want]          # x axis: env steps
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-5)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 6 and {"combination", "lr", "beta", "ci_low", "ci_high"} <= set(
        summary.columns)
    np.testing.assert_allclose(summary["mean"],
                               np.nanmean(result.final_return(), axis=1), rtol=1e-4)
    assert (out / "curves.png").stat().st_size > 1000
    again = yaml.safe_load((out / "sweep.yaml").read_text())          # the resolved sweep
    assert again["grid"] == {"lr": [1e-3, 3e-3, 1e-2], "beta": [0.0, 0.04]}
    assert again["seeds"] == 4 and again["group_size"] == 4 and again["log_every"] == 2
    assert load_sweep_spec(out / "sweep.yaml")["config"] == load_sweep_spec(cfg)["config"]


def _tree(d):
    return {os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(d) for f in fs}


def test_cli_never_replaces_results_unless_asked(tmp_path, capsys, monkeypatch):
    """A second sweep into a sweep folder is refused; an interrupted --overwrite leaves the old
    results; a finished --overwrite replaces them."""
    out = tmp_path / "out"
    cfg = _write_yaml(tmp_path / "s.yaml", f"""
        total_timesteps: 2000
        num_groups: 2
        group_size: 4
        num_iterations: 2
        env_params: {{max_steps_in_episode: 50}}
        grid: {{lr: [1e-3, 3e-3]}}
        seeds: 2
        compiler_options: {{xla_backend_optimization_level: 0}}
        out: {out}
    """)
    assert sweep_main([cfg]) == 0
    first = _tree(out)
    assert sorted(first) == ["curves.png", "metrics.csv", "summary.csv", "sweep.yaml"]
    capsys.readouterr()
    assert sweep_main([cfg]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds sweep results" in err[0] and "--overwrite" in err[0]
    assert _tree(out) == first

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    real_sweep = sweep_mod.sweep
    monkeypatch.setattr(sweep_mod, "sweep", interrupted)
    assert sweep_main([cfg, "--overwrite"]) == 130
    assert "nothing was written" in capsys.readouterr().err
    assert _tree(out) == first
    real_plot = SweepResult.plot

    def plot_then_interrupt(self, path, *a, **k):
        real_plot(self, path, *a, **k)
        raise KeyboardInterrupt                      # Ctrl-C while the results are written
    monkeypatch.setattr(sweep_mod, "sweep", real_sweep)
    monkeypatch.setattr(SweepResult, "plot", plot_then_interrupt)
    assert sweep_main([cfg, "--overwrite"]) == 130
    assert "interrupted while writing" in capsys.readouterr().err
    assert _tree(out) == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no staging
    monkeypatch.undo()
    (out / "summary.csv").write_text("stale")
    assert sweep_main([cfg, "--overwrite"]) == 0
    again = _tree(out)
    assert again["summary.csv"] != b"stale" and again["metrics.csv"] == first["metrics.csv"]
    from jaxgrpo.rundir import run_curves                 # plotted per combination, by grid value
    assert [lab for lab, _, _ in run_curves([out])] == ["lr=0.001 (2 seeds)", "lr=0.003 (2 seeds)"]


@pytest.mark.parametrize("text, needle", [
    ("grid: {lr: [1e-3\n", "not valid YAML"),
    ("- just\n- a list\n", "mapping"),
    ("lrr: 0.1\nseeds: 2\n", "lrr: unknown field of GRPOConfig (algo 'grpo'; did you mean 'lr'?)"),
    ("gird: {lr: [0.1]}\n", "did you mean 'grid'?"),
    ("seed: 3\n", "did you mean 'seeds'?"),
    ("vmap_sise: 1\n", "did you mean 'vmap_size'?"),
    ("total_timesteps: 2000\nnum_groups: 2\ngroup_size: 4\nenv_params: {max_steps_in_episode: 50}"
     "\ngrid: {clip: [0.1]}\n", "'clip' is not a field"),
    ("total_timesteps: 2000\nnum_groups: 2\ngroup_size: 4\nenv_params: {max_steps_in_episode: 50}"
     "\ngrid: {lr: [fast]}\n", "lr: must be a number"),
    ("algo: sac\n", "algo"),
    ("seeds: many\n", "seeds"),
])
def test_cli_bad_input(no_compile, tmp_path, capsys, text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    assert sweep_main([str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxgrpo sweep: error:") and needle in err[0], err


def test_cli_logger_options_refused_before_anything(no_compile, tmp_path, capsys, monkeypatch):
    """--wandb without wandb, and --tensorboard into a folder with an earlier sweep's logs:
    one line, exit 2, nothing written."""
    cfg = _write_yaml(tmp_path / "s.yaml", "grid: {lr: [0.001]}\n")
    monkeypatch.setitem(sys.modules, "wandb", None)                 # not installed
    old = tmp_path / "old"
    (old / "tensorboard").mkdir(parents=True)
    for argv, needle in (([cfg, "--out", str(tmp_path / "new"), "--wandb"],
                          "--wandb needs wandb: pip install 'jaxgrpo[wandb]'"),
                         ([cfg, "--out", str(old), "--overwrite", "--tensorboard"],
                          "tensorboard/ holds an earlier sweep's logs")):
        assert sweep_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "new").exists() and os.listdir(old) == ["tensorboard"]


def test_cli_missing_file(no_compile, tmp_path, capsys):
    assert sweep_main([str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_benchmark_tiny_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "sweep_scaling", os.path.join(ROOT, "benchmarks", "sweep_scaling.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "t.md"
    assert bench.main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 2 |" in text and "jax: " in text and "cpu" in text


def test_one_cpu_device_of_several_cores_is_said(result, monkeypatch):
    """A CPU sweep of several runs on one device, on a machine with more cores, says how to
    use them (``OneCoreWarning``); not with one core, nor when ``devices`` is given, nor when
    the user chose one device (``JAX_NUM_CPU_DEVICES``, as this suite does). The programs are
    ``result``'s, cached."""
    from jaxgrpo import cores
    from jaxgrpo.sweeps import OneCoreWarning

    def warned(n_cores, chosen, *args, **kw):
        monkeypatch.setattr(cores, "usable_cores", lambda: n_cores)
        monkeypatch.setattr(cores, "cpu_devices_chosen", lambda: chosen)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            sweep(CFG, *args, compiler_options=O0, **kw)
        return [(str(x.message), os.path.basename(x.filename)) for x in w
                if issubclass(x.category, OneCoreWarning)]

    assert len(jax.devices()) == 1
    assert warned(4, False, GRID, SEEDS) == [(
        "sweep: 24 runs on 1 CPU device, but this machine has 4 cores and XLA:CPU runs a "
        "program on about one of them; jaxgrpo.use_cpu_cores() before JAX starts (or "
        "JAX_NUM_CPU_DEVICES=4) gives one device per core and spreads them over the cores",
        "test_sweep.py")]                                       # points at the caller
    assert warned(1, False, GRID, SEEDS) == []
    assert warned(4, True, GRID, SEEDS) == []
    assert warned(4, False, GRID, SEEDS, devices=jax.devices()[:1]) == []


def test_vmap_size_auto_resolves_per_backend_and_algorithm(result):
    from jaxgrpo.sweeps import resolve_vmap_size
    assert resolve_vmap_size("auto", "cpu", "grpo") is None
    assert resolve_vmap_size("auto", "cpu", "ppo") is None
    assert resolve_vmap_size("auto", "gpu", "grpo") is None
    assert resolve_vmap_size("auto", "tpu", "ppo") is None
    assert resolve_vmap_size(8, "cpu", "grpo") == 8 and resolve_vmap_size(None, "cpu") is None
    assert result.vmap_size == "auto" and result.placement[0]["vmap_size"] is None  # all


def test_bad_vmap_size_is_refused_before_compiling(no_compile, tmp_path):
    for bad, msg in (("wide", "vmap_size: must be 'auto', an int >= 1 or null, got 'wide'"),
                     (0, "vmap_size: must be >= 1, got 0")):
        with pytest.raises(ValueError, match=re.escape(msg)):
            sweep(CFG, {}, 1, vmap_size=bad)
    f = tmp_path / "s.yaml"
    f.write_text("algo: grpo\nseeds: 2\n")
    assert load_sweep_spec(f)["vmap_size"] == "auto"
    f.write_text("algo: grpo\nseeds: 2\nvmap_size: wide\n")
    with pytest.raises(ValueError, match="vmap_size: must be 'auto'"):
        load_sweep_spec(f)


def test_hparams_the_grid_leaves_alone_are_shared():
    """``driver.shared_hparams``: the hparams with one value over a compilation's configs (an
    unset option, NaN, equals itself); those runs take them unbatched."""
    from jaxgrpo.sweeps.driver import shared_hparams
    _, configs = grid_configs(CFG, {"lr": [0.1, 0.2], "beta": [0.0]})
    shared = shared_hparams(configs)
    assert "lr" not in shared and {"beta", "clip_eps", "off_policy_mask_threshold"} <= shared
    assert shared | {"lr"} == set(CFG.hparams())
    _, configs = grid_configs(CFG.replace(on_policy=True),
                              {"off_policy_mask_threshold": [None, 0.5]})
    assert "off_policy_mask_threshold" not in shared_hparams(configs)
