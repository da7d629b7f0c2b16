"""Config validation: every bad value is a ValueError naming the field, raised when the config
is built (before any compilation)."""
import jax.numpy as jnp
import pytest

import jaxgrpo
from jaxgrpo.config import config_class


@pytest.mark.parametrize("cls", [jaxgrpo.GRPOConfig, jaxgrpo.PPOConfig])
def test_defaults_build_and_hparams_are_float32_scalars(cls):
    cfg = cls()
    hp = cfg.hparams()
    assert hp and all(v.shape == () and v.dtype == jnp.float32 for v in hp.values())
    assert float(hp["lr"]) == pytest.approx(cfg.lr)
    assert cfg.iterations >= 1


def test_grpo_and_ppo_share_the_api():
    shared = {"env", "env_kwargs", "env_params", "total_timesteps", "lr", "gamma", "clip_eps",
              "update_epochs", "num_minibatches", "max_grad_norm", "ent_coef", "hidden_sizes",
              "activation"}
    for cls in (jaxgrpo.GRPOConfig, jaxgrpo.PPOConfig):
        assert shared <= set(cls.__dataclass_fields__)
    assert {"num_envs", "num_steps", "gae_lambda", "vf_coef", "anneal_lr"} <= set(
        jaxgrpo.PPOConfig.__dataclass_fields__)
    assert {"group_size", "num_groups", "beta", "kl_estimator", "clip_eps_high", "loss_type",
            "scale_rewards", "baseline", "supervision", "ref_sync_every", "ref_mixup_alpha"} <= set(
        jaxgrpo.GRPOConfig.__dataclass_fields__)
    assert config_class("grpo") is jaxgrpo.GRPOConfig and config_class("ppo") is jaxgrpo.PPOConfig


def test_clip_eps_high_defaults_to_clip_eps():
    hp = lambda cfg: float(cfg.hparams()["clip_eps_high"])
    assert hp(jaxgrpo.GRPOConfig(clip_eps=0.1)) == pytest.approx(0.1)
    assert hp(jaxgrpo.GRPOConfig(clip_eps=0.2, clip_eps_high=0.28)) == pytest.approx(0.28)
    assert hp(jaxgrpo.GRPOConfig().replace(clip_eps=0.3)) == pytest.approx(0.3)
    from jaxgrpo.train import resolve_hparams
    assert float(resolve_hparams(jaxgrpo.GRPOConfig(), {"clip_eps": 0.1})["clip_eps_high"]) == \
        pytest.approx(0.1)
    asym = resolve_hparams(jaxgrpo.GRPOConfig(clip_eps_high=0.28), {"clip_eps": 0.1})
    assert float(asym["clip_eps_high"]) == pytest.approx(0.28)


BAD = [
    (jaxgrpo.GRPOConfig, {"env": "CartPole-v9"}, "env"),
    (jaxgrpo.GRPOConfig, {"env": 3}, "env"),
    (jaxgrpo.PPOConfig, {"env_params": {"max_stpes_in_episode": 10}}, "env_params"),
    (jaxgrpo.GRPOConfig, {"env_params": {"gravity": "high"}}, "env_params"),
    (jaxgrpo.GRPOConfig, {"env": "DeepSea-bsuite", "env_kwargs": {"sise": 10}}, "env_kwargs"),
    (jaxgrpo.GRPOConfig, {"lr": -1.0}, "lr"),
    (jaxgrpo.GRPOConfig, {"total_timesteps": 10**12}, "total_timesteps"),   # int32 counters
    (jaxgrpo.PPOConfig, {"total_timesteps": 2**31}, "total_timesteps"),
    (jaxgrpo.GRPOConfig, {"lr": "fast"}, "lr"),
    (jaxgrpo.GRPOConfig, {"gamma": 1.5}, "gamma"),
    (jaxgrpo.GRPOConfig, {"group_size": 0}, "group_size"),
    (jaxgrpo.GRPOConfig, {"group_size": 4.0}, "group_size"),
    (jaxgrpo.GRPOConfig, {"group_size": 1}, "group_size"),       # a group of one: no advantage
    (jaxgrpo.GRPOConfig, {"num_groups": True}, "num_groups"),
    (jaxgrpo.GRPOConfig, {"kl_estimator": "k4"}, "kl_estimator"),
    (jaxgrpo.GRPOConfig, {"loss_type": "sum"}, "loss_type"),
    (jaxgrpo.GRPOConfig, {"scale_rewards": "std"}, "scale_rewards"),
    (jaxgrpo.GRPOConfig, {"baseline": "median"}, "baseline"),
    (jaxgrpo.GRPOConfig, {"supervision": "dense"}, "supervision"),
    (jaxgrpo.GRPOConfig, {"ref_sync_every": -1}, "ref_sync_every"),
    (jaxgrpo.GRPOConfig, {"on_policy": False, "group_mode": "state"}, "on_policy"),
    (jaxgrpo.GRPOConfig, {"on_policy": False, "supervision": "process"}, "on_policy"),
    (jaxgrpo.GRPOConfig, {"on_policy": 1}, "on_policy"),
    (jaxgrpo.GRPOConfig, {"on_policy": True, "num_envs": 8}, "num_envs"),
    (jaxgrpo.GRPOConfig, {"num_envs": 0}, "num_envs"),
    (jaxgrpo.GRPOConfig, {"num_steps": 0}, "num_steps"),
    (jaxgrpo.GRPOConfig, {"num_envs": 3, "num_steps": 5}, "num_minibatches"),
    (jaxgrpo.GRPOConfig, {"ref_mixup_alpha": 2.0}, "ref_mixup_alpha"),
    (jaxgrpo.GRPOConfig, {"clip_eps_high": 0.0}, "clip_eps_high"),
    (jaxgrpo.GRPOConfig, {"beta": float("nan")}, "beta"),
    (jaxgrpo.GRPOConfig, {"activation": "sigmoidal"}, "activation"),
    (jaxgrpo.GRPOConfig, {"hidden_sizes": (64, 0)}, "hidden_sizes"),
    (jaxgrpo.GRPOConfig, {"total_timesteps": 0}, "total_timesteps"),
    (jaxgrpo.PPOConfig, {"num_minibatches": 3}, "num_minibatches"),
    (jaxgrpo.PPOConfig, {"anneal_lr": 1}, "anneal_lr"),
    (jaxgrpo.PPOConfig, {"gae_lambda": -0.1}, "gae_lambda"),
]


@pytest.mark.parametrize("cls,kwargs,field", BAD)
def test_bad_values_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        cls(**kwargs)


def test_unknown_field_is_a_type_error_or_value_error():
    with pytest.raises(TypeError, match="num_group"):
        jaxgrpo.GRPOConfig(num_group=4)
    with pytest.raises(ValueError, match="num_group"):
        jaxgrpo.GRPOConfig().replace(num_group=4)


def test_unknown_hparam_is_rejected_before_tracing():
    train = jaxgrpo.make_train(jaxgrpo.GRPOConfig(total_timesteps=20_000))
    import jax
    with pytest.raises(ValueError, match="gae_lambda"):
        train(jax.random.key(0), {"gae_lambda": 0.9})


@pytest.mark.parametrize("kwargs,field", [
    ({"group_mode": "states"}, "group_mode"),
    ({"group_mode": "state", "branch_horizon": 0}, "branch_horizon"),
    ({"branch_every": 1.5}, "branch_every"),
    ({"share_env_noise": "yes"}, "share_env_noise"),
    ({"reward_transform": "log"}, "reward_transform"),
    ({"reward_transform": 3}, "reward_transform"),
    ({"reward_transform": lambda r, m: r.sum()}, "reward_transform"),
])
def test_bad_group_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        jaxgrpo.GRPOConfig(**kwargs)


def test_grpo_collector_fields_are_derived_and_derived_again():
    """on_policy: the stream where it applies, on-policy for state groups, process supervision
    and text; num_envs: num_groups * group_size; replace derives both again unless set."""
    cfg = jaxgrpo.GRPOConfig()
    assert cfg.on_policy is False and cfg.num_envs == 32 and cfg.num_steps == 128
    assert cfg.iterations == -(-cfg.total_timesteps // (32 * 128))
    assert cfg.replace(group_mode="state").on_policy is True
    assert cfg.replace(supervision="process").on_policy is True
    assert cfg.replace(num_groups=8).num_envs == 64
    assert cfg.replace(num_envs=48).replace(num_groups=8).num_envs == 48   # set: kept
    on = jaxgrpo.GRPOConfig(on_policy=True)
    assert on.replace(num_groups=8).on_policy is True and on.replace(num_groups=8).num_envs == 64
