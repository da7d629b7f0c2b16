"""jaxgrpo.presets: every preset is a valid config, reachable from Python, YAML and the command
line, and its row in docs/presets.md was measured (python -m experiments.presets, 8 seeds) on
the settings it has now and reaches its target."""
import json
from pathlib import Path

import pytest

import jaxgrpo
from jaxgrpo import cli, presets
from jaxgrpo.configio import config_from_dict, config_to_dict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = json.loads((ROOT / "experiments" / "results" / "presets.json").read_text())["results"]
ENVS = {"CartPole-v1", "Acrobot-v1", "Pendulum-v1", "DeepSea-bsuite", "Breakout-MinAtar"}


def test_the_docs_environments_have_both_algorithms():
    assert {(a, e) for a in ("grpo", "ppo") for e in ENVS} <= set(presets.PRESETS)


@pytest.mark.parametrize("name", presets.names())
def test_each_preset_is_a_valid_config_everywhere(name):
    algo, env = name.split("/")
    p = presets.get(algo, env)
    cfg = jaxgrpo.preset(algo, env)
    assert cfg.algo == algo and cfg.env == env
    written = config_to_dict(cfg)
    for k, v in p.fields.items():
        assert written[k] == (list(v) if isinstance(v, tuple) else v), k
    assert config_to_dict(config_from_dict({"algo": algo, "preset": env})[0]) == \
        config_to_dict(cfg)
    args = cli.train_parser().parse_args(["--algo", algo, "--preset", env])
    assert cli.build_config(args)[0].total_timesteps == p.fields["total_timesteps"]
    budget = 2 * p.fields["total_timesteps"]
    assert jaxgrpo.preset(algo, env, total_timesteps=budget).total_timesteps == budget


@pytest.mark.parametrize("name", presets.names())
def test_each_preset_was_measured_as_it_is_and_meets_its_row(name):
    algo, env = name.split("/")
    p = presets.get(algo, env)
    r = RESULTS.get(name)
    assert r is not None, f"{name}: not measured; run python -m experiments.presets --only {name}"
    assert r["fields"] == json.loads(json.dumps(p.fields)) and r["target"] == p.target, \
        f"{name}: the preset changed since it was measured; re-run experiments.presets"
    assert r["seeds"] == 8 and len(r["eval_per_seed"]) == 8
    assert r["mean"] == pytest.approx(sum(r["eval_per_seed"]) / 8, rel=1e-6)
    assert r["met"] and r["mean"] >= p.target


def test_the_table_in_the_docs_is_the_measured_one():
    page = (ROOT / "docs" / "presets.md").read_text()
    for name in presets.names():
        algo, env = name.split("/")
        r = RESULTS[name]
        row = next(l for l in page.splitlines() if l.startswith(f"| {algo.upper()} | {env} |"))
        assert f"{r['mean']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]" in row, row


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="^preset: no ppo preset for 'Pong-misc'; ppo presets: "):
        presets.get("ppo", "Pong-misc")
