"""jaxgrpo.grids: sweep files (validated, nothing compiled) and the configs of a grid's
combinations. No compilation."""
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo.config import GRPOConfig, PPOConfig
from jaxgrpo.grids import check_vmap_size, expand_grid, grid_configs, load_sweep_spec, switch_algo


def test_sweep_spec_names_the_file_and_the_key(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("algo: ppo\nnum_envs: 8\ngrid: {lr: [1e-3, 3e-3]}\nseeds: 2\nvmap_size: 1\n")
    spec = load_sweep_spec(f)
    assert spec["config"] == jaxgrpo.PPOConfig(num_envs=8) and spec["seeds"] == 2
    assert spec["grid"] == {"lr": [1e-3, 3e-3]} and spec["vmap_size"] == 1
    f.write_text("grid: {lr: [1e-3]}\nvmap_sise: 2\n")
    with pytest.raises(ValueError, match=rf"^{f}: vmap_sise: .*did you mean 'vmap_size'"):
        load_sweep_spec(f)


def test_expand_grid_order_last_key_fastest():
    assert expand_grid(None) == [{}] and expand_grid({}) == [{}]
    assert expand_grid({"a": [1, 2], "b": np.array([3, 4])}) == [
        {"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 2, "b": 3}, {"a": 2, "b": 4}]
    assert type(expand_grid({"a": np.array([0.5])})[0]["a"]) is float     # plain values
    for grid, msg in [([1], "must be a dict of lists"), ({"a": []}, "a: values must be a non-empty"),
                      ({"a": 3}, "a: values must be a non-empty list"),
                      ({1: [1]}, "field names must be strings")]:
        with pytest.raises(ValueError, match=f"^grid: {msg}"):
            expand_grid(grid)


def test_grid_configs_validate_every_combination():
    combos, configs = grid_configs(GRPOConfig(), {"lr": [1e-3, 3e-3], "beta": [0.0]})
    assert combos == [{"lr": 1e-3, "beta": 0.0}, {"lr": 3e-3, "beta": 0.0}]
    assert [c.lr for c in configs] == [1e-3, 3e-3]
    with pytest.raises(ValueError, match=r"^grid: 'gama' is not a field of GRPOConfig "
                                         r"\(did you mean 'gamma'\?\)"):
        grid_configs(GRPOConfig(), {"gama": [0.9]})
    with pytest.raises(ValueError, match=r"^grid: group_size: must be >= 2, got 1 "
                                         r"\(in the combination group_size=1\)"):
        grid_configs(GRPOConfig(), {"group_size": [4, 1]})


def test_switch_algo_carries_the_fields_that_were_set():
    ppo = switch_algo(GRPOConfig(gamma=0.9, group_size=4), "ppo")
    assert isinstance(ppo, PPOConfig) and ppo.gamma == 0.9
    assert ppo.lr == PPOConfig().lr                     # GRPO's lr default is not carried
    assert switch_algo(ppo, "ppo") is ppo


def test_check_vmap_size():
    assert check_vmap_size("auto") == "auto" and check_vmap_size(None) is None
    assert check_vmap_size(4) == 4
    with pytest.raises(ValueError, match="^vmap_size: must be 'auto', an int >= 1 or null"):
        check_vmap_size("all")
    with pytest.raises(ValueError, match="^vmap_size: must be >= 1, got 0"):
        check_vmap_size(0)
