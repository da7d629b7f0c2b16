"""jaxgrpo.render: GIFs with gymnax's visualizer."""
import jax
import pytest

import jaxgrpo
from jaxgrpo.render import check_gif, render_gif
from jaxgrpo.rundir import RunError
from jaxgrpo.train import make_policy


def test_gif_of_a_minatar_policy(tmp_path):
    """gymnax's visualizer on MinAtar (matplotlib only; classic control also needs pygame)."""
    cfg = jaxgrpo.GRPOConfig(env="Breakout-MinAtar")
    params = jax.jit(make_policy(cfg).init)(jax.random.key(0))    # eager CNN init is slow
    info = render_gif(cfg, params, tmp_path / "b.gif", jax.random.key(1), max_steps=4,
                      greedy=False)
    assert 1 <= info["steps"] <= 4 and info["frames"] in (info["steps"], info["steps"] + 1)
    assert (tmp_path / "b.gif").read_bytes()[:6] == b"GIF89a"


def test_envs_without_a_visualizer_are_refused():
    with pytest.raises(RunError, match="no visualizer for DeepSea-bsuite"):
        check_gif(jaxgrpo.GRPOConfig(env="DeepSea-bsuite"))
