"""The ``jaxgrpo`` command as a user runs it: train (stopped, then resumed), eval (+ GIF), plot,
and one-line errors (exit code 2) for bad input.

Each ``python -m jaxgrpo`` subprocess pays the JAX/gymnax import and a compilation, so there are
few of them, on a tiny config: the three runs of the shared run folder (stopped, resumed, in
one go) and one bad-input check; eval, plot and the error cases run in-process through
``cli.main``. Subprocesses run with the suite's fast-compile ``XLA_FLAGS`` (conftest.py); the
one-go reference run uses the same flags, so results compare bitwise.
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import fast_xla_flags
from jaxgrpo import cli

TINY = ["--seeds", "2", "--total-timesteps", "10000", "--set", "num_groups=2",
        "--set", "group_size=4", "--set", "num_iterations=4",
        "--set", "env_params.max_steps_in_episode=50"]
ENV = {**os.environ, "XLA_FLAGS": fast_xla_flags(),
       "PYGAME_HIDE_SUPPORT_PROMPT": "1"}


def jaxgrpo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jaxgrpo", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=600)


def assert_usage_error(rc, err, *needles):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A: trained 2 of 4 iterations (stopped), its files saved aside, then resumed to the end.
    B: the same config from A/config.yaml, in one go."""
    root = tmp_path_factory.mktemp("runs")
    a, b = root / "A", root / "B"
    p = jaxgrpo("train", *TINY, "--checkpoint-every", "2", "--stop-after", "2", "--out", a)
    assert p.returncode == 0, p.stderr
    stopped = {"stdout": p.stdout, "stderr": p.stderr,
               "summary": json.loads((a / "summary.json").read_text()),
               "metrics": pd.read_csv(a / "metrics.csv"),
               "files": sorted(os.listdir(a)), "checkpoints": sorted(os.listdir(a / "checkpoints"))}
    p = jaxgrpo("train", "--resume", a, "--quiet")
    assert p.returncode == 0, p.stderr
    resumed = {"stdout": p.stdout, "stderr": p.stderr}
    p = jaxgrpo("train", "--config", a / "config.yaml", "--out", b, "--quiet")
    assert p.returncode == 0, p.stderr
    return root, stopped, resumed


def test_train_writes_a_run_folder(runs_dir):
    root, stopped, _ = runs_dir
    a = root / "A"
    assert stopped["files"] == ["checkpoints", "config.yaml", "curves.png", "metrics.csv",
                                "options.json", "summary.json"]
    assert stopped["checkpoints"] == ["2"]
    assert "stopped at iteration 2/4" in stopped["stdout"] and "final return" in stopped["stdout"]
    assert "compiling" in stopped["stderr"]                          # progress is on by default
    m = stopped["metrics"]
    assert list(m.columns[:3]) == ["seed", "iteration", "env_steps"]
    assert {"episode_return", "kl", "clip_ratio/region_mean", "entropy"} <= set(m.columns)
    assert len(m) == 2 * 2 and sorted(m["seed"].unique()) == [0, 1]
    s = stopped["summary"]
    assert s["complete"] is False and s["iterations_done"] == 2 and s["seeds"] == 2
    for k in ("compile_seconds", "run_seconds", "steps_per_second", "device"):
        assert s[k] is not None
    assert {"jax", "flax", "gymnax"} <= set(s["versions"])
    cfg = yaml.safe_load((a / "config.yaml").read_text())
    assert cfg["algo"] == "grpo" and cfg["group_size"] == 4 and cfg["seeds"] == 2
    assert cfg["env_params"] == {"max_steps_in_episode": 50} and cfg["base_seed"] == 0
    assert (a / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_finishes_the_run_like_one_go(runs_dir):
    """A stopped at iteration 2 and resumed == B (from A/config.yaml, in one go): same metrics,
    same final TrainState, bitwise."""
    root, stopped, resumed = runs_dir
    a, b = root / "A", root / "B"
    assert "done" in resumed["stdout"] and resumed["stderr"] == ""   # --quiet
    ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    assert len(ma) == 2 * 4
    pd.testing.assert_frame_equal(ma, mb)
    pd.testing.assert_frame_equal(ma[ma.iteration < 2].reset_index(drop=True),
                                  stopped["metrics"])
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["complete"] and sa["final_return"] == sb["final_return"]
    assert sorted(os.listdir(a / "checkpoints")) == ["2", "4"]

    from jaxgrpo import runs
    from jaxgrpo.checkpoint import flatten_state
    ra, rb = runs.load_run(a), runs.load_run(b)
    assert ra.step == rb.step == 4
    fa, la = flatten_state(ra.state)
    fb, lb = flatten_state(rb.state)
    assert la == lb
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


def test_eval_and_gif(runs_dir, capsys):
    """In-process (no bitwise comparison here, so the pytest process's XLA flags do)."""
    root, _, _ = runs_dir
    a = root / "A"
    gif = root / "cartpole.gif"
    with_gif = importlib.util.find_spec("pygame") is not None
    extra = ["--gif", gif, "--gif-max-steps", "15"] if with_gif else []
    rc = cli.main([str(x) for x in ("eval", a, "--episodes", "3", *extra)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "greedy" in out and "sampled" in out
    rows = [l.split() for l in out.splitlines() if l.split()[:1] in (["0"], ["1"], ["all"])]
    assert [r[0] for r in rows] == ["0", "1", "all"]
    evals = json.loads((a / "eval.json").read_text())["evaluations"]
    assert len(evals) == 1 and evals[0]["episodes_per_seed"] == 3
    ev = evals[0]
    for mode in ("greedy", "sampled"):
        assert len(ev[mode]["per_seed"]) == 2 and np.isfinite(ev[mode]["mean"])
        assert ev[mode]["mean"] == pytest.approx(np.mean([s["mean"] for s in ev[mode]["per_seed"]]))
    if with_gif:
        assert gif.read_bytes()[:6] == b"GIF89a" and "wrote" in out


def test_plot_overlays_runs(runs_dir):     # in-process: plotting needs no JAX
    root, _, _ = runs_dir
    out = root / "both.png"
    rc = cli.main(["plot", str(root / "A"), str(root / "B"), "--out", str(out),
                   "--labels", "resumed", "one go"])
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_in_a_fresh_process(tmp_path):
    p = jaxgrpo("train", "--env", "CartPol-v1", "--out", tmp_path / "x")
    assert_usage_error(p.returncode, p.stderr, "jaxgrpo train: error: env:", "CartPol-v1")
    assert not (tmp_path / "x").exists()


@pytest.fixture
def bad_yaml(tmp_path):
    (tmp_path / "broken.yaml").write_text("lr: [0.1\ngroup_size: 3\n")
    (tmp_path / "wrongtype.yaml").write_text("group_size: eight\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    return tmp_path


@pytest.mark.parametrize("args,needles", [
    (["--env", "NoSuchEnv-v0"], ["env:", "NoSuchEnv-v0"]),
    (["--set", "no_such_field=1"], ["no_such_field: unknown field of GRPOConfig"]),
    (["--algo", "ppo", "--set", "group_size=4"], ["group_size: unknown field of PPOConfig"]),
    (["--set", "gama=0.9"], ["gama: unknown field", "did you mean 'gamma'?"]),
    (["--preset", "NoSuchEnv-v0"], ["preset: no grpo preset for 'NoSuchEnv-v0'"]),
    (["--step", "2"], ["--step N: only with --resume"]),
    (["--set", "lr=fast"], ["lr: must be a number"]),
    (["--set", "group_size=2.5"], ["group_size: must be an int"]),
    (["--set", "hidden_sizes=64"], ["hidden_sizes:"]),
    (["--set", "env_params.no_such_param=3"], ["env_params:", "no_such_param"]),
    (["--set", "lr"], ["--set: expected key=value"]),
    (["--seeds", "two"], ["--seeds"]),
    (["--config", "{d}/missing.yaml"], ["missing.yaml: cannot read"]),
    (["--config", "{d}/broken.yaml"], ["broken.yaml: not valid YAML", "line"]),
    (["--config", "{d}/wrongtype.yaml"], ["wrongtype.yaml: group_size: must be an int"]),
    (["--config", "{d}/list.yaml"], ["list.yaml: must be a YAML mapping"]),
    (["--resume", "{d}/nothing"], ["--resume", "no such run folder"]),
])
def test_bad_train_input_is_one_line_exit_2(args, needles, bad_yaml, capsys):
    args = [a.format(d=bad_yaml) for a in args]
    out = [] if "--resume" in args else ["--out", str(bad_yaml / "run")]
    rc = cli.main(["train", *args, *out])
    err = capsys.readouterr().err
    assert_usage_error(rc, err, *needles)
    assert not (bad_yaml / "run").exists()


def test_existing_results_are_not_overwritten(runs_dir, capsys):
    root, _, _ = runs_dir
    a = root / "A"
    before = (a / "metrics.csv").read_bytes()
    rc = cli.main(["train", *TINY, "--out", str(a)])
    assert_usage_error(rc, capsys.readouterr().err, "already holds results", "--resume")
    rc = cli.main(["train", "--resume", str(a), "--set", "lr=0.1"])      # config changed
    assert_usage_error(rc, capsys.readouterr().err, "config differs", "lr")
    assert (a / "metrics.csv").read_bytes() == before


def test_other_commands_report_bad_input(tmp_path, capsys):
    assert_usage_error(cli.main(["eval", str(tmp_path / "none")]), capsys.readouterr().err,
                       "jaxgrpo eval: error:", "no such run folder")
    assert_usage_error(cli.main(["plot", str(tmp_path), "--out", str(tmp_path / "p.png")]),
                       capsys.readouterr().err, "no metrics.csv")
    assert_usage_error(cli.main(["frobnicate"]), capsys.readouterr().err, "unknown command")
    assert cli.main(["sweep", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_gif_of_unsupported_env_is_refused(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("algo: grpo\nenv: DeepSea-bsuite\n")
    rc = cli.main(["eval", str(tmp_path), "--gif", str(tmp_path / "x.gif")])
    assert_usage_error(rc, capsys.readouterr().err, "no visualizer for DeepSea-bsuite")


def _tree(d):
    return {os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(d) for f in fs}


def test_no_command_overwrites_a_run_or_a_file(runs_dir, tmp_path, capsys):
    """Data safety: a sweep into a run folder, a train into a file or a run, a plot or GIF onto
    an existing file or into a missing folder: one line, exit 2, nothing touched."""
    root, _, _ = runs_dir
    a = root / "A"
    before = _tree(a)
    mine = tmp_path / "notadir"
    mine.write_text("my notes")
    png = tmp_path / "mine.png"
    png.write_bytes(b"my picture")
    sweep_yaml = tmp_path / "s.yaml"
    sweep_yaml.write_text("num_groups: 2\ngroup_size: 4\ngrid: {lr: [0.001]}\n")
    cases = [
        (["sweep", sweep_yaml, "--out", a], ["holds a training run", "never writes into one"]),
        (["sweep", sweep_yaml, "--out", a, "--overwrite"], ["holds a training run"]),
        (["sweep", sweep_yaml, "--out", mine], ["exists and is not a folder"]),
        (["train", *TINY, "--out", a], ["already holds results", "--resume"]),
        (["train", *TINY, "--out", mine], ["--out", "exists and is not a folder"]),
        (["train", *TINY, "--out", mine / "run"], ["is a file, not a folder"]),
        (["train", "--resume", mine], ["--resume", "is a file, not a run folder"]),
        (["train", "--resume", a, "--step", "3"], ["--step 3", "no checkpoint 3", "[2, 4]"]),
        (["plot", a, "--out", tmp_path / "missing" / "dir" / "x.png"],
         ["--out", "missing/dir does not exist"]),
        (["plot", a, "--out", png], ["mine.png: exists", "--overwrite"]),
        (["plot", a, "--out", mine], ["must end in .png"]),
        (["plot", a, "--out", a / "metrics.csv", "--overwrite"], ["must end in .png"]),
        (["eval", a, "--gif", png], ["--gif", "must end in .gif"]),
        (["eval", a, "--gif", tmp_path / "no" / "x.gif"], ["no does not exist"]),
    ]
    for args, needles in cases:
        rc = cli.main([str(x) for x in args])
        assert_usage_error(rc, capsys.readouterr().err, *needles)
    assert _tree(a) == before
    assert mine.read_text() == "my notes" and png.read_bytes() == b"my picture"
    assert not (tmp_path / "missing").exists()


def test_plot_and_eval_of_a_sweep_folder(tmp_path, capsys):
    sw = tmp_path / "sw"
    sw.mkdir()
    (sw / "sweep.yaml").write_text("grid: {lr: [0.001, 0.01]}\n")
    pd.DataFrame({"combination": [0, 0, 1, 1], "lr": [0.001, 0.001, 0.01, 0.01],
                  "seed": [0, 0, 0, 0], "iteration": [0, 1, 0, 1],
                  "env_steps": [10.0, 20.0, 10.0, 20.0],
                  "episode_return": [1.0, 2.0, 3.0, 4.0]}).to_csv(sw / "metrics.csv", index=False)
    (sw / "summary.csv").write_text("combination,lr\n0,0.001\n1,0.01\n")
    assert_usage_error(cli.main(["eval", str(sw)]), capsys.readouterr().err,
                       "is a sweep folder", "jaxgrpo.evaluate")
    rc = cli.main(["plot", str(sw), "--out", str(tmp_path / "sw.png"), "--labels", "a", "b"])
    assert rc == 0 and (tmp_path / "sw.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_is_fast_and_complete():
    """--help never imports JAX, shows defaults, and has no argparse escapes left."""
    code = ("import sys, jaxgrpo.cli as c\n"
            "for cmd in ('', 'train', 'sft', 'eval', 'plot', 'sweep'):\n"
            "    c.main([cmd, '--help'] if cmd else ['--help'])\n"
            "assert 'jax' not in sys.modules, 'jax imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "%%" not in out and "95% bootstrap CI" in out
    for needle in ("(default: 100)", "(default: grpo)", "(default: 0)", "text tasks",
                   "column of metrics.csv to plot", "figure title", "image to write"):
        assert needle in out, needle
    for cmd in cli.COMMANDS:                       # the front page lists every command
        assert f"    {cmd} " in out, cmd


def _quoted_default(text):
    """What follows ``(default: `` in ``text``, up to its closing parenthesis."""
    start = text.index("(default: ") + len("(default: ")
    depth, i = 1, start
    while depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1]


def _help_defaults(parser):
    """``{dest: quoted default}`` of every option whose help says ``(default: ...)``."""
    fmt = parser._get_formatter()
    return {a.dest: _quoted_default(fmt._expand_help(a))
            for a in parser._actions if a.help and "(default:" in a.help}


def test_help_defaults_are_the_config_defaults():
    """Every default a --help quotes is the default the command really uses: the config's
    (built from no flags, as the command builds it) or the option's own argparse default.
    A default given in words names no number; those are listed here so a new one is seen."""
    from jaxgrpo.config import SFTConfig

    def built(*argv, sft=False):
        return cli.build_config(cli.train_parser(sft).parse_args(list(argv)))

    grpo, seeds, base_seed = built()
    ppo = built("--algo", "ppo")[0]
    text = built("--env", "text:addition")[0]
    sft = built(sft=True)[0]
    env = (f"{grpo.total_timesteps}" if grpo.total_timesteps == ppo.total_timesteps else
           f"GRPO {grpo.total_timesteps}, PPO {ppo.total_timesteps}")
    in_words = {"checkpoint_every": "only at the end, and when a signal stops the run",
                "wandb_project": "jaxgrpo",
                "log_every": "about 200 updates per run", "step": "the latest",
                "gif_sampled": "greedy", "gif_max_steps": "the whole episode",
                "title": "the env, when all share one", "temperature": "the run's",
                "max_new_tokens": "the run's"}
    run = {"seeds": str(seeds), "seed": str(base_seed), "out": "runs/<env>-<algo>-<time>"}
    expected = {
        "train": {"algo": grpo.algo, "env": grpo.env, **run,
                  "total_timesteps": f"the preset's, else {env}; text: {text.total_timesteps}"},
        "sft": {"env": sft.env, "num_steps": str(sft.num_steps), **run},
        "sweep": {"out": "the YAML's out, else runs/<YAML name>"},
    }
    assert isinstance(sft, SFTConfig) and text.total_timesteps != grpo.total_timesteps
    for cmd, make in cli.PARSERS.items():
        parser = make()
        for dest, quoted in _help_defaults(parser).items():
            action = next(a for a in parser._actions if a.dest == dest)
            if dest in expected.get(cmd, {}):
                want = expected[cmd][dest]
            elif action.default is not None and not isinstance(action.default, bool):
                want = str(action.default)            # the parser's own default
            else:
                want = in_words.get(dest, "(not listed in this test)")
            assert " ".join(quoted.split()) == want, (cmd, dest, quoted, want)
        assert set(expected.get(cmd, {})) <= set(_help_defaults(parser)), cmd


def test_docs_options_reference_is_current():
    """docs/command-line.md's options reference is what the parsers say (rewrite it with
    ``python docs/cli_reference.py``), and the page names all five commands."""
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "cli_reference.py")
    spec = importlib.util.spec_from_file_location("cli_reference", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    text = ref.PAGE.read_text()
    assert ref.page_with_reference(text) == text, "run python docs/cli_reference.py"
    for cmd in cli.COMMANDS:
        assert f"`jaxgrpo {cmd}`" in text and f"### jaxgrpo {cmd}" in text, cmd


def test_sft_and_text_eval_commands(tmp_path, capsys, monkeypatch):
    """``jaxgrpo sft`` and ``jaxgrpo eval`` of a text run, with training and evaluation faked
    (they are tested in test_text_grpo.py and test_text_evaluation.py): what the commands
    pass on, print and record."""
    import shlex
    from types import SimpleNamespace

    from jaxgrpo import configio, runs
    from jaxgrpo.cli.build import build_config
    from jaxgrpo.cli.parsers import train_parser
    from jaxgrpo.text import evaluation

    calls = {}
    acc = {"per_seed": [0.5, 0.75], "mean": 0.625, "ci95": [0.5, 0.75]}
    res = {"greedy_accuracy": acc, "temperature": 1.0,
           "pass_at_k": {1: {"per_seed": [0.25, 0.5], "mean": 0.375},
                         2: {"per_seed": [0.5, 1.0], "mean": 0.75}},
           "examples": [{"prompt": "1+2=", "completion": "3", "reward": 1.0},
                        {"prompt": "4+4=", "completion": "9", "reward": 0.0}]}

    def run_training(config, out, **kw):
        calls["train"] = (config, out, kw)
        return {"algo": "sft", "env": config.env, "seeds": kw["seeds"], "complete": True,
                "total_timesteps": config.total_timesteps, "iterations_done": 5,
                "iterations": 5, "num_iterations": None,
                "final_return": {"per_seed": [0.5, 0.75], "mean": 0.625, "ci95": [0.5, 0.75]},
                "env_steps_by_seed": [640.0, 640.0], "env_steps_per_seed": 640.0,
                "compile_seconds": 1.0, "run_seconds": 0.5, "steps_per_second": 2560.0}

    def evaluate_text(config, params, num_prompts, num_samples, seed):
        calls.setdefault("eval", []).append((num_prompts, num_samples, seed))
        return {**res, "pass_at_k": dict(res["pass_at_k"])}

    out = tmp_path / "run"
    monkeypatch.setattr(runs, "run_training", run_training)
    monkeypatch.setattr(evaluation, "evaluate_text", evaluate_text)
    monkeypatch.setattr(runs, "load_run", lambda path, step=None: SimpleNamespace(
        config=calls["train"][0], state=SimpleNamespace(params=None), seeds=2, step=5,
        path=out))
    assert cli.main(["sft", "--steps", "5", "--seeds", "2", "--seed", "3", "--quiet",
                     "--set", "env_kwargs.digits=2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    config, _, kw = calls["train"]
    assert config.algo == "sft" and config.num_steps == 5 and config.env == "text:addition"
    assert kw["seeds"] == 2 and kw["base_seed"] == 3
    assert calls["eval"] == [(1000, 0, 3)]
    assert "SFT text:addition, 2 seed(s)" in printed and "final acc." in printed
    assert "held-out greedy accuracy (1000 prompts): 50.0%, 75.0%; mean 62.5%" in printed
    # the printed command starts GRPO on the SFT's task and model, seed i from SFT seed i
    command = next(line for line in printed.splitlines() if "init_from=" in line)
    assert command.endswith(f"jaxgrpo train --set init_from={out} --seeds 2")
    out.mkdir()
    configio.save_config(out / "config.yaml", config, 2, 3)
    argv = shlex.split(command.split(": ", 1)[1])[2:]
    grpo, seeds, _ = build_config(train_parser().parse_args(argv))
    assert (grpo.algo, grpo.env, dict(grpo.env_kwargs), grpo.width, seeds) == (
        "grpo", config.env, {"digits": 2}, config.width, 2)
    (out / "config.yaml").unlink()         # the eval below reads the faked run

    assert cli.main(["eval", str(out), "--prompts", "8", "--samples", "2", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert calls["eval"][-1] == (8, 2, 1)
    assert lines[2].split() == ["seed", "greedy", "pass@1", "pass@2"]
    assert lines[3].split() == ["0", "50.0%", "25.0%", "50.0%"]
    assert lines[5].split() == ["mean", "62.5%", "37.5%", "75.0%"]
    assert "1+2=3   (ok)" in lines[-2] and "4+4=9   (wrong)" in lines[-1]
    ev = json.loads((out / "eval.json").read_text())["evaluations"][0]
    assert ev["checkpoint"] == 5 and set(ev["pass_at_k"]) == {"1", "2"}
    rc = cli.main(["eval", str(out), "--gif", str(tmp_path / "x.gif")])
    assert_usage_error(rc, capsys.readouterr().err, "--gif: only for gymnax environments")


def test_result_table_lists_seeds_and_says_when_the_budget_was_not_used():
    summary = {"algo": "grpo", "env": "CartPole-v1", "seeds": 2, "total_timesteps": 20_000,
               "complete": True, "iterations_done": 3, "iterations": 3, "num_iterations": 3,
               "final_return": {"per_seed": [34.5, None], "mean": 34.5, "ci95": [34.5, 34.5]},
               "env_steps_by_seed": [2748.0, 2885.0], "env_steps_per_seed": 2816.5,
               "compile_seconds": 1.0, "run_seconds": 0.5, "steps_per_second": 11266.0}
    text = cli.result_table(summary, "runs/x")
    lines = text.splitlines()
    assert lines[0] == "GRPO CartPole-v1, 2 seed(s), 20,000-step budget: done"
    assert lines[2].split() == ["0", "34.50", "2,748"] and lines[3].split() == ["1", "nan", "2,885"]
    assert "used 2,816 of the 20,000-step budget" in text and "num_iterations=3" in text
    summary.update(env_steps_by_seed=[20_100.0, 20_200.0], env_steps_per_seed=20_150.0)
    assert "note" not in cli.result_table(summary, "runs/x")
    summary.update(complete=False, iterations_done=2)
    assert "stopped at iteration 2/3; continue with jaxgrpo train --resume runs/x" in \
        cli.result_table(summary, "runs/x")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_bad_init_from_is_one_line_before_anything_is_written(command, tmp_path, capsys):
    """init_from is checked when the command reads its config (train --config or a sweep
    file), before a run or sweep folder exists."""
    spec = tmp_path / "c.yaml"
    spec.write_text(f"env: text:addition\ninit_from: {tmp_path / 'nothing'}\n"
                    + ("grid:\n  lr: [0.001]\n" if command == "sweep" else ""))
    out = tmp_path / "out"
    args = (["train", "--config", str(spec)] if command == "train" else
            ["sweep", str(spec), "--checkpoint-every", "4"])
    assert_usage_error(cli.main([*args, "--out", str(out)]), capsys.readouterr().err,
                       "init_from: ")
    assert not out.exists()
