"""The other loss types and loss options from the user's side: GRPOConfig fields (validated,
dynamic hyperparameters), ``jaxgrpo train --set``, sweep grids over ``loss_type``, the text
path's chunked loss = ``policy_loss`` on the whole batch, and one tiny run each on a text task
and an environment. The numerics against TRL and verl are in test_losses_family.py."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.cli import build_config, train_parser
from jaxgrpo.compiled import static_key
from jaxgrpo.config import GRPOConfig
from jaxgrpo.grids import grid_configs
from jaxgrpo.losses import CLIP_LOSS_TYPES, LOSS_TYPES, policy_loss
from jaxgrpo.text import PAD
from jaxgrpo.text import grpo as tg
from jaxgrpo.train import make_train
from jaxgrpo.update import AUX_MAX, AUX_MIN

TINY = dict(env="text:addition", env_kwargs={"digits": 1}, num_layers=1, width=32,
            num_heads=2, max_len=16, num_groups=4, group_size=4, total_timesteps=10**6,
            num_iterations=1, chunk_size=8)
NEW_HPARAMS = {"sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05, "vespo_k_pos": 2.0,
               "vespo_lambda_pos": 3.0, "vespo_k_neg": 3.0, "vespo_lambda_neg": 2.0,
               "top_entropy_quantile": 1.0}


def test_fields_are_dynamic_hyperparameters_with_trl_defaults():
    c = GRPOConfig(**TINY)
    hp = c.hparams()
    for k, v in NEW_HPARAMS.items():
        assert getattr(c, k) == v
        np.testing.assert_allclose(float(hp[k]), v, rtol=1e-7)
    assert c.off_policy_mask_threshold is None and np.isnan(float(hp["off_policy_mask_threshold"]))
    c2 = c.replace(off_policy_mask_threshold=0.5, top_entropy_quantile=0.2,
                   sapo_temperature_neg=2.0)
    assert static_key(c2) == static_key(c)          # one compiled program for both
    assert float(c2.hparams()["off_policy_mask_threshold"]) == 0.5
    assert static_key(c.replace(loss_type="cispo")) != static_key(c)
    # on an environment the threshold (None or not) picks the learn path: two programs
    e = GRPOConfig(on_policy=True)
    assert not e.by_episode and e.replace(off_policy_mask_threshold=0.5).by_episode
    assert static_key(e.replace(off_policy_mask_threshold=0.5)) != static_key(e)
    assert static_key(e.replace(off_policy_mask_threshold=0.5)) == \
        static_key(e.replace(off_policy_mask_threshold=0.1))


@pytest.mark.parametrize("field,value,words", [
    ("loss_type", "geo_mean", "loss_type: must be one of"),
    ("sapo_temperature_pos", 0.0, "sapo_temperature_pos: must be > 0"),
    ("sapo_temperature_neg", -1.0, "sapo_temperature_neg"),
    ("vespo_k_pos", -1.0, "vespo_k_pos: must be >= 0"),
    ("vespo_lambda_neg", float("nan"), "vespo_lambda_neg: must be finite"),
    ("off_policy_mask_threshold", -0.1, "off_policy_mask_threshold: must be >= 0"),
    ("off_policy_mask_threshold", "high", "off_policy_mask_threshold: must be a number"),
    ("top_entropy_quantile", 1.5, "top_entropy_quantile: must be <= 1"),
    ("top_entropy_quantile", -0.1, "top_entropy_quantile: must be >= 0"),
])
def test_bad_values_name_the_field(field, value, words):
    with pytest.raises(ValueError, match=words):
        GRPOConfig(**TINY, **{field: value})


def test_sequence_options_on_environments_learn_by_episode():
    """vespo, gmpo and the off-policy mask weigh whole episodes: on an environment they collect
    on-policy and learn from whole episodes (``by_episode``); the stream collector and state
    branches are refused, naming the field."""
    for extra in (dict(loss_type="vespo"), dict(loss_type="gmpo"),
                  dict(off_policy_mask_threshold=0.5)):
        c = GRPOConfig(**extra)
        assert c.on_policy and c.by_episode, extra
        with pytest.raises(ValueError, match="on_policy: .*collect on-policy"):
            GRPOConfig(**extra, on_policy=False)
        with pytest.raises(ValueError, match="group_mode: .*whole episodes"):
            GRPOConfig(**extra, group_mode="state")
    for lt in ("cispo", "sapo", "luspo"):        # token-additive: learn by step
        c = GRPOConfig(loss_type=lt, top_entropy_quantile=0.5)
        assert not c.by_episode and not c.on_policy


def test_cli_set_reaches_the_config():
    argv = ["--env", "text:addition", "--set", "loss_type=cispo", "--set", "clip_eps_high=5.0",
            "--set", "off_policy_mask_threshold=0.5", "--set", "top_entropy_quantile=0.2",
            "--set", "vespo_k_neg=1.5"]
    c, _, _ = build_config(train_parser().parse_args(argv))
    assert (c.loss_type, c.clip_eps_high, c.off_policy_mask_threshold, c.top_entropy_quantile,
            c.vespo_k_neg) == ("cispo", 5.0, 0.5, 0.2, 1.5)
    c, _, _ = build_config(train_parser().parse_args(["--set", "loss_type=vespo"]))
    assert c.on_policy and c.by_episode
    with pytest.raises(ValueError, match="on_policy"):
        build_config(train_parser().parse_args(["--set", "loss_type=vespo",
                                                "--set", "on_policy=false"]))


def test_sweep_grid_over_loss_type_builds_one_static_program_per_type():
    base = GRPOConfig(**TINY)
    combos, configs = grid_configs(base, {"loss_type": list(LOSS_TYPES),
                                          "top_entropy_quantile": [1.0, 0.2]})
    assert [c.loss_type for c in configs] == [x["loss_type"] for x in combos]
    assert len({static_key(c) for c in configs}) == len(LOSS_TYPES)
    with pytest.raises(ValueError, match="on_policy"):
        grid_configs(GRPOConfig(on_policy=False), {"loss_type": ["grpo", "gmpo"]})


def test_a_threshold_grid_on_an_environment_names_its_two_programs():
    """On an environment the threshold (None or a number) picks the learn path: a sweep over
    it names it as the grid's static field (one program each); on text it is dynamic."""
    from jaxgrpo.sweeps.driver import StaticSweepWarning, _compilations
    combos, configs = grid_configs(GRPOConfig(on_policy=True),
                                   {"off_policy_mask_threshold": [None, 0.5], "lr": [1e-3, 3e-4]})
    with pytest.warns(StaticSweepWarning,
                      match=r"\['off_policy_mask_threshold'\] are static.*\['lr'\] and"):
        groups, static = _compilations(configs, combos, 2)
    assert static == ["off_policy_mask_threshold"] and sorted(groups.values()) == [[0, 1], [2, 3]]
    combos, configs = grid_configs(GRPOConfig(**TINY), {"off_policy_mask_threshold": [None, 0.5]})
    groups, static = _compilations(configs, combos, 2)
    assert static == [] and list(groups.values()) == [[0, 1]]


def assert_same_value_and_grad(ours, ref, params):
    """``ours`` and ``ref`` (functions of the params) agree in value and gradient at
    ``params``, and the value is not 0."""
    v1, g1 = jax.jit(jax.value_and_grad(ours))(params)
    v2, g2 = jax.jit(jax.value_and_grad(ref))(params)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert abs(float(v1)) > 0


# ----------------------------------------------------------------------------- text path

@pytest.fixture(scope="module")
def setup():
    c = GRPOConfig(**TINY, temperature=0.7)
    model = tg.make_policy(c)
    params = model.init(jax.random.key(0))
    hp = c.hparams()
    roll, _ = jax.jit(lambda p, k: tg.sample_completions(model, c.task, p, k, 4, 4,
                                                         hp["temperature"]))(
        params, jax.random.key(1))
    return c, model, params, hp, roll


@pytest.mark.parametrize("loss_type,extra", [
    ("cispo", dict(clip_eps_high=1.02)), ("sapo", {}),
    ("luspo", dict(importance_sampling_level="sequence")), ("vespo", {}), ("gmpo", {}),
    ("dapo", dict(off_policy_mask_threshold=0.0))])
def test_text_loss_in_chunks_is_policy_loss_on_the_batch(setup, loss_type, extra):
    """The text loss summed over two chunks (each with the batch's weights and its share of
    the entropy bonus) = ``policy_loss`` of the whole batch, values and gradients."""
    c0, model, params, hp, roll = setup
    fields = {k: v for k, v in extra.items() if k != "clip_eps_high"}
    c = dataclasses.replace(c0, loss_type=loss_type, **fields)
    hp = {**hp, "ent_coef": jnp.float32(0.05), "beta": jnp.float32(0.04),
          **{k: jnp.float32(v) for k, v in extra.items() if k in hp}}
    if "clip_eps_high" in extra:
        hp["clip_eps_high"] = jnp.float32(extra["clip_eps_high"])
    moved = jax.tree.map(lambda p: p * 1.05, params)
    batch, weight, keep, _ = tg.score(c, model, params, roll, hp)
    C = keep.shape[0]
    halves = [np.arange(C) < C // 2, np.arange(C) >= C // 2]

    def ours(p):
        return sum(tg.loss(c, model, p, params, batch, weight, keep & h, hp)[0] for h in halves)

    def ref(p, metrics=False):
        valid = roll.prompt != PAD
        logp, ent = model.token_logp(p, roll.prompt, valid, roll.completion, hp["temperature"])
        ref_logp = model.token_logp(params, roll.prompt, valid, roll.completion,
                                    hp["temperature"])[0]
        return policy_loss(logp, roll.logp, ref_logp, batch["adv"], batch["mask"],
                           loss_type=loss_type, clip_eps=hp["clip_eps"],
                           clip_eps_high=hp["clip_eps_high"], beta=hp["beta"],
                           importance_sampling_level=c.importance_sampling_level,
                           max_len=roll.completion.shape[1], entropy=ent,
                           ent_coef=hp["ent_coef"],
                           off_policy_mask_threshold=c.off_policy_mask_threshold)[metrics]

    assert_same_value_and_grad(ours, ref, moved)
    # the metrics (sums over a chunk's tokens) add up over chunks to the whole batch's: rows of
    # a chunk outside its minibatch count nowhere
    aux_of = jax.jit(lambda k: tg.loss(c, model, moved, params, batch, weight, k, hp)[1])
    aux = [aux_of(keep & h) for h in halves]
    whole = aux_of(keep)
    for k in whole:
        pair = (jnp.fmin if k in AUX_MIN else jnp.fmax if k in AUX_MAX else jnp.add)(
            aux[0][k], aux[1][k])
        np.testing.assert_allclose(pair, whole[k], rtol=1e-4, atol=1e-5, err_msg=k)
    # TRL's per-completion clip extremes: the batch's, except with one ratio per sequence
    extremes = {"clip_ratio/low_min", "clip_ratio/high_max"}
    if loss_type not in CLIP_LOSS_TYPES or c.importance_sampling_level == "sequence":
        assert not extremes & set(whole)
    else:
        m_ref = jax.jit(lambda p: ref(p, True))(moved)
        for k in extremes:
            np.testing.assert_allclose(whole[k], m_ref[k], rtol=1e-5, err_msg=k)
    if loss_type == "vespo":
        # phi peaks at w = k / lam: e^lam (k / lam)^k e^-k = 1.21 (pos), 1.24 (neg defaults)
        assert 0 < float(whole["vespo/phi_seq_mean"] / whole["count"]) < 1.25


# ----------------------------------------------------------------------------- env episodes

ENV = dict(num_groups=2, group_size=4, hidden_sizes=(16,), total_timesteps=10**5,
           num_iterations=1, chunk_size=1000)


@pytest.fixture(scope="module")
def episodes():
    from jaxgrpo import grpo
    c = GRPOConfig(**ENV, loss_type="vespo")
    env = grpo.gymnax_env(c)
    policy = grpo.gymnax_policy(False)(c, env)
    params = policy.init(jax.random.key(0))
    hp = c.hparams()
    roll, _, _ = jax.jit(lambda p, k: grpo.collect(c, env, policy, p, k, None, True, hp))(
        params, jax.random.key(1))
    return c, policy, params, hp, roll


@pytest.mark.parametrize("loss_type,extra,empty", [
    ("vespo", {}, False), ("gmpo", {}, True),
    ("dr_grpo", dict(off_policy_mask_threshold=0.0), True)])
def test_env_episode_loss_in_chunks_is_policy_loss_on_the_batch(episodes, loss_type, extra,
                                                                empty):
    """On an environment (``by_episode``), the loss summed over two chunks of whole episodes =
    ``policy_loss`` of the batch's nonempty episodes for sequences, with the advantages of
    ``grpo.advantages`` (values and gradients); ``empty``: episode 0 has no step (a run past
    its budget), and counts nowhere."""
    from jaxgrpo import grpo
    c0, policy, params, hp, roll = episodes
    if empty:
        roll = roll._replace(mask=roll.mask.at[:, 0].set(False))
    c = dataclasses.replace(c0, loss_type=loss_type, **extra)
    assert c.by_episode
    hp = {**c.hparams(), "ent_coef": jnp.float32(0.05), "beta": jnp.float32(0.04)}
    moved = jax.tree.map(lambda p: p * 1.05, params)
    batch, weight, keep, _ = grpo.score(c, policy, params, roll, hp)
    N, T = batch["mask"].shape
    assert batch["obs"].shape[:2] == (N, T)
    np.testing.assert_array_equal(keep, np.arange(N) >= int(empty))
    halves = [np.arange(N) < N // 2, np.arange(N) >= N // 2]
    adv = grpo.advantages(c, roll, hp["gamma"])[0].T
    rows = slice(int(empty), None)

    def ours(p):
        return sum(grpo.loss(c, policy, p, params, batch, weight, keep & h, hp)[0]
                   for h in halves)

    def ref(p):
        dist = lambda q: policy.dist(q, roll.obs.reshape(T * N, -1))
        lp = lambda q: dist(q).log_prob(roll.action.reshape(-1)).reshape(T, N).T[rows]
        return policy_loss(lp(p), roll.logp.T[rows], lp(params), adv[rows], roll.mask.T[rows],
                           loss_type=loss_type, clip_eps=hp["clip_eps"],
                           clip_eps_high=hp["clip_eps_high"], beta=hp["beta"], max_len=T,
                           entropy=dist(p).entropy().reshape(T, N).T[rows],
                           ent_coef=hp["ent_coef"],
                           off_policy_mask_threshold=c.off_policy_mask_threshold)[0]

    assert_same_value_and_grad(ours, ref, moved)


def test_one_iteration_text_and_env_runs():
    """A tiny compiled iteration of a text run (vespo, off-policy mask, entropy selection and
    bonus) and of environment runs (cispo with entropy selection; vespo with the off-policy
    mask, by episode): finite, TRL's names."""
    c = GRPOConfig(**TINY, loss_type="vespo", off_policy_mask_threshold=0.5,
                   top_entropy_quantile=0.5, ent_coef=0.01)
    _, m = jax.jit(make_train(c))(jax.random.key(0))
    for k in ("loss", "vespo/phi_seq_mean", "off_policy_mask/dropped_ratio", "entropy"):
        assert np.all(np.isfinite(np.asarray(m[k]))), k
    c = GRPOConfig(num_groups=2, group_size=4, num_iterations=1, loss_type="cispo",
                   clip_eps_high=2.0, top_entropy_quantile=0.5, on_policy=True,
                   total_timesteps=10**5)
    _, m = jax.jit(make_train(c))(jax.random.key(0))
    for k in ("loss", "cispo_clip_ratio", "entropy"):
        assert np.all(np.isfinite(np.asarray(m[k]))), k
    c = GRPOConfig(**{**ENV, "chunk_size": 128}, loss_type="vespo",
                   off_policy_mask_threshold=0.5)
    _, m = jax.jit(make_train(c))(jax.random.key(0))
    for k in ("loss", "vespo/phi_seq_mean", "off_policy_mask/dropped_ratio", "entropy"):
        assert np.all(np.isfinite(np.asarray(m[k]))), k


def test_docs_option_table_defaults_are_the_code():
    """docs/language-models.md's loss options table quotes GRPOConfig's defaults, and its loss
    type table names every loss type."""
    from pathlib import Path
    import re
    text = (Path(__file__).parent.parent / "docs/language-models.md").read_text()
    section = text[text.index("## Loss types and loss options"):]
    types, options = section.split("| option | default | meaning |")
    c = GRPOConfig(**TINY)
    quoted = {}
    for names, values in re.findall(r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]+) \|", options, re.M):
        for n, v in zip(re.findall(r"`(\w+)`", names), values.split(","), strict=True):
            quoted[n] = v.strip()
    assert set(quoted) == {*NEW_HPARAMS, "off_policy_mask_threshold", "ent_coef"}
    for n, v in quoted.items():
        assert (None if v == "None" else float(v)) == getattr(c, n), n
    assert set(re.findall(r"`(\w+)`", " ".join(re.findall(r"^\| (.*?) \|", types, re.M)))) \
        >= set(LOSS_TYPES)


def test_sweep_over_loss_type_compiles_once_per_type_and_runs(monkeypatch):
    """A real sweep over two loss types (one learning from whole episodes) x a dynamic loss
    option: one compilation per loss type, every run finite."""
    import warnings

    from jaxgrpo import compiled
    from jaxgrpo.sweeps import runner as runner_mod, sweep
    built = []
    real = runner_mod.Runner

    def counting(config, *a, **kw):
        built.append(config.loss_type)
        return real(config, *a, **kw)

    monkeypatch.setattr(runner_mod, "Runner", counting)
    monkeypatch.setattr(compiled, "CACHE", compiled.CompileCache())
    cfg = GRPOConfig(**{**ENV, "num_iterations": 2, "chunk_size": 500}, on_policy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the static loss_type: a StaticSweepWarning
        r = sweep(cfg, {"loss_type": ["sapo", "gmpo"], "sapo_temperature_neg": [1.05, 2.0]},
                  1, compiler_options={"xla_backend_optimization_level": 0})
    assert built == ["sapo", "gmpo"]
    assert [c.loss_type for c in r.configs] == ["sapo", "sapo", "gmpo", "gmpo"]
    assert [c.sapo_temperature_neg for c in r.configs] == [1.05, 2.0, 1.05, 2.0]
    assert np.all(np.isfinite(r.metrics["loss"][:, :, -1]))
