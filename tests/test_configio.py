"""jaxgrpo.configio: YAML values, --set overrides, config dicts (presets, "did you mean").
No compilation."""
import pytest

import jaxgrpo
from jaxgrpo.configio import (apply_override, config_from_dict, config_to_dict, load_config,
                              parse_value, save_config)


@pytest.mark.parametrize("text, value", [
    ("3e-4", 3e-4), ("1e-3", 1e-3), ("true", True), ("[32, 32]", [32, 32]),
    ("{size: 10}", {"size": 10}), ("symlog", "symlog"), ("", None), ("clip(-1, 1)", "clip(-1, 1)"),
])
def test_parse_value_reads_yaml_with_exponent_floats(text, value):
    assert parse_value(text) == value


def test_apply_override_sets_fields_and_dict_entries():
    d = apply_override({"env_params": {"a": 1}}, "env_params.max_steps_in_episode=200")
    assert d == {"env_params": {"a": 1, "max_steps_in_episode": 200}}
    assert apply_override({}, "lr=3e-4") == {"lr": 3e-4}
    with pytest.raises(ValueError, match="expected key=value"):
        apply_override({}, "lr")
    with pytest.raises(ValueError, match="lr: is not a dict field"):
        apply_override({"lr": 0.1}, "lr.x=1")


def test_config_round_trips_through_yaml(tmp_path):
    cfg = jaxgrpo.GRPOConfig(env="Acrobot-v1", lr=1e-3, hidden_sizes=(32, 32),
                             reward_transform="clip(-1, 1)", env_params={"max_steps_in_episode": 99})
    save_config(tmp_path / "c.yaml", cfg, seeds=3, base_seed=5, preset="grpo/Acrobot-v1")
    assert "from the preset grpo/Acrobot-v1" in (tmp_path / "c.yaml").read_text()
    back, seeds, base_seed = load_config(tmp_path / "c.yaml")
    assert (seeds, base_seed) == (3, 5)
    assert config_to_dict(back) == config_to_dict(cfg)           # transforms compare by name
    assert config_to_dict(cfg)["hidden_sizes"] == [32, 32]


def test_unknown_fields_get_a_did_you_mean():
    with pytest.raises(ValueError, match=r"^gama: unknown field of GRPOConfig .*did you mean 'gamma'"):
        config_from_dict({"gama": 0.9})
    with pytest.raises(ValueError, match=r"^seed: .*did you mean 'seeds'"):
        config_from_dict({"seed": 3})
    with pytest.raises(ValueError, match=r"^zzzz: .*known: "):          # nothing close: the list
        config_from_dict({"zzzz": 1})


def test_preset_fields_come_first_and_the_dict_overrides_them():
    from jaxgrpo.presets import PRESETS
    (algo, env), p = next(iter(PRESETS.items()))
    cfg, _, _ = config_from_dict({"algo": algo, "preset": env})
    assert cfg.env == env and cfg.total_timesteps == p.fields["total_timesteps"]
    cfg, _, _ = config_from_dict({"algo": algo, "env": env, "preset": True, "total_timesteps": 1234})
    assert cfg.total_timesteps == 1234
    with pytest.raises(ValueError, match="^preset: no ppo preset for 'DeepSea-bsuit'"):
        config_from_dict({"algo": "ppo", "preset": "DeepSea-bsuit"})
    other = "Acrobot-v1" if env != "Acrobot-v1" else "CartPole-v1"
    with pytest.raises(ValueError, match=f"^preset: '{env}' is for {env}, but env is '{other}'"):
        config_from_dict({"algo": algo, "preset": env, "env": other})
    assert config_from_dict({"algo": algo, "preset": f"{algo}/{env}"})[0].env == env
    wrong = "ppo" if algo == "grpo" else "grpo"
    with pytest.raises(ValueError, match=f"is a {wrong} preset, but algo is '{algo}'"):
        config_from_dict({"algo": algo, "preset": f"{wrong}/{env}"})


def test_a_field_of_the_other_algorithm_says_so():
    with pytest.raises(ValueError, match="anneal_lr: .*it is a PPOConfig field: set algo to 'ppo'"):
        config_from_dict({"anneal_lr": False})
    with pytest.raises(ValueError, match="gama: unknown field of GRPOConfig .did you mean 'gamma'"):
        jaxgrpo.GRPOConfig().replace(gama=0.9)


def test_a_config_written_with_max_ahead_loads_as_what_it_ran():
    """Run folders written before the stream collector hold ``max_ahead``: 0 (on-policy)
    loads as ``on_policy: true``; a positive one is refused with the replacement named."""
    from jaxgrpo.configio import config_from_dict
    cfg, _, _ = config_from_dict({"algo": "grpo", "max_ahead": 0})
    assert cfg.on_policy is True
    with pytest.raises(ValueError, match=r"^max_ahead: .*stream collector"):
        config_from_dict({"algo": "grpo", "max_ahead": 1})
