"""Language-model GRPO in the training loop: collect/score/loss on text tasks, SFT warm start,
init_from, and the run-level guarantees (vmap over seeds = separate runs, same key = same
numbers). A tiny model keeps compilation short; the compiled functions are module-scoped."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import BITWISE
from jaxgrpo.config import GRPOConfig, SFTConfig
from jaxgrpo.losses import loss_weights, policy_loss
from jaxgrpo.text import EOS, PAD
from jaxgrpo.text import grpo as tg
from jaxgrpo.train import make_train

TINY = dict(num_layers=1, width=32, num_heads=2, max_len=16)
BASE = dict(env="text:addition", env_kwargs={"digits": 1}, num_groups=4, group_size=4,
            total_timesteps=10**6, num_iterations=3, chunk_size=8, **TINY)


def cfg(**kw):
    return GRPOConfig(**{**BASE, **kw})


@pytest.fixture(scope="module")
def setup():
    c = cfg(temperature=0.7)
    model = tg.make_policy(c)
    params = model.init(jax.random.key(0))
    hp = c.hparams()
    roll, stats = jax.jit(lambda p, k: tg.sample_completions(model, c.task, p, k, 4, 4,
                                                             hp["temperature"]))(
        params, jax.random.key(1))
    return c, model, params, hp, roll, stats


def test_collect_groups_share_a_prompt_and_mask_ends_at_eos(setup):
    c, model, params, hp, roll, stats = setup
    prompts = np.asarray(roll.prompt).reshape(4, 4, -1)
    assert (prompts == prompts[:, :1]).all()
    assert not (prompts[0, 0] == prompts[1, 0]).all() or not (prompts[0, 0] == prompts[2, 0]).all()
    comp, mask, length = map(np.asarray, (roll.completion, roll.mask, roll.length))
    M = comp.shape[1]
    for i in range(comp.shape[0]):
        eos = np.flatnonzero(comp[i] == EOS)
        n = eos[0] + 1 if eos.size else M
        assert mask[i].tolist() == [True] * n + [False] * (M - n)
        assert length[i] == (eos[0] if eos.size else M)
    assert float(stats.valid_steps) == mask.sum()
    assert float(stats.count) == comp.shape[0]


def test_first_epoch_logp_equals_sampling_logp_at_temperature(setup):
    """The learn phase's one causal forward recomputes the sampler's log-probs (KV cache,
    temperature 0.7): ratio 1 to 1e-5 on every completion token."""
    c, model, params, hp, roll, _ = setup
    logp, _ = model.token_logp(params, roll.prompt, roll.prompt != PAD, roll.completion,
                               hp["temperature"])
    ratio = np.exp(np.asarray(logp) - np.asarray(roll.logp))[np.asarray(roll.mask)]
    np.testing.assert_allclose(ratio, 1.0, atol=1e-5)


def _batch_loss(c, model, params, roll, hp):
    batch, weight, keep, _ = tg.score(c, model, params, roll, hp)
    C = keep.shape[0]
    return tg.loss(c, model, params, params, batch, weight, keep, hp), batch, weight, keep, C


@pytest.mark.parametrize("kw", [dict(), dict(loss_type="bnpo"), dict(loss_type="dr_grpo"),
                                dict(importance_sampling_level="sequence", delta=1.5)])
def test_text_loss_is_policy_loss_on_the_batch(setup, kw):
    """With the whole batch as one chunk, the text loss is ``policy_loss`` on [C, M] arrays with
    the group-normalized rewards: values and gradients. Params moved off the sampler so the
    ratios differ from 1."""
    c0, model, params, hp, roll, _ = setup
    c = dataclasses.replace(c0, **kw)
    moved = jax.tree.map(lambda p: p * 1.05, params)
    batch, weight, keep, _ = tg.score(c, model, params, roll, hp)

    def ours(p):
        return tg.loss(c, model, p, params, batch, weight, keep, hp)[0]

    def ref(p):
        logp, _ = model.token_logp(p, roll.prompt, roll.prompt != PAD, roll.completion,
                                   hp["temperature"])
        return policy_loss(logp, roll.logp, logp, batch["adv"], batch["mask"],
                           loss_type=c.loss_type, clip_eps=0.2, clip_eps_high=0.2,
                           delta=c.delta, importance_sampling_level=c.importance_sampling_level,
                           max_len=roll.completion.shape[1])[0]

    v1, g1 = jax.value_and_grad(ours)(moved)
    v2, g2 = jax.value_and_grad(ref)(moved)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert abs(float(v1)) > 0 or float(jnp.abs(batch["adv"]).sum()) == 0


def test_tokens_after_eos_never_reach_the_loss(setup):
    """Overwriting every token and log-prob after each completion's EOS changes neither the
    loss, its gradient nor a metric."""
    c, model, params, hp, roll, _ = setup
    after = ~np.asarray(roll.mask)
    junk = roll._replace(completion=jnp.where(after, 7, roll.completion),
                         logp=jnp.where(after, -3.0, roll.logp))
    moved = jax.tree.map(lambda p: p * 1.05, params)
    outs = []
    for r in (roll, junk):
        batch, weight, keep, metrics = tg.score(c, model, params, r, hp)
        (v, aux), g = jax.value_and_grad(
            lambda p: tg.loss(c, model, p, params, batch, weight, keep, hp), has_aux=True)(moved)
        outs.append((v, aux, g, metrics))
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_mask_truncated_and_dynamic_sampling(setup):
    c, model, params, hp, roll, _ = setup
    M = roll.completion.shape[1]
    # make completion 0 truncated (no EOS), and group 1's rewards all equal, group 0's mixed
    # every completion "5, EOS" except completion 0, which never ends (truncated)
    comp = jnp.zeros_like(roll.completion).at[:, 0].set(5).at[:, 1].set(EOS).at[0].set(5)
    length = jnp.ones_like(roll.length).at[0].set(M)
    r = roll._replace(completion=comp, length=length, mask=tg.token_mask(length, M),
                      reward=jnp.asarray([1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 0.]))
    _, w0, keep0, m0 = tg.score(c, model, params, r, hp)
    assert bool(keep0.all()) and float(w0[0].sum()) > 0
    _, w1, keep1, m1 = tg.score(dataclasses.replace(c, mask_truncated_completions=True), model,
                                params, r, hp)
    assert not bool(keep1[0]) and float(jnp.abs(w1[0]).sum()) == 0 and bool(keep1[1:].all())
    # grpo keeps a masked truncated completion in the sequence count (TRL): same weights
    np.testing.assert_allclose(w1[1:], w0[1:], rtol=1e-6)
    _, w2, keep2, m2 = tg.score(dataclasses.replace(c, dynamic_sampling=True), model, params,
                                r, hp)
    np.testing.assert_array_equal(keep2, np.repeat([True, False, True, True], 4))
    assert float(m2["dropped_groups"]) == 1 and float(m0["dropped_groups"]) == 0
    assert float(m2["frac_reward_zero_std"]) == 0.25
    # the dropped group leaves the batch: grpo's mean over sequences counts 12 rows
    mask = np.asarray(r.mask) & np.asarray(keep2)[:, None]
    expect = np.asarray(loss_weights(jnp.asarray(mask[keep2]).T, "grpo", M,
                                     count_empty=True).T)
    np.testing.assert_allclose(np.asarray(w2)[np.asarray(keep2)], expect, rtol=1e-6)


def test_score_metrics_match_numpy(setup):
    c, model, params, hp, roll, _ = setup
    r = roll._replace(reward=jnp.asarray([1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 0.]))
    batch, _, _, m = tg.score(c, model, params, r, hp)
    rew = np.asarray(r.reward).reshape(4, 4)
    adv = (rew - rew.mean(1, keepdims=True)) / (rew.std(1, ddof=1, keepdims=True) + c.adv_eps)
    np.testing.assert_allclose(np.asarray(batch["adv"]).reshape(4, 4), adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["reward"], rew.mean(), rtol=1e-6)
    np.testing.assert_allclose(m["reward_std"], rew.std(1, ddof=1).mean(), rtol=1e-5)
    np.testing.assert_allclose(m["accuracy"], (rew >= 1).mean(), rtol=1e-6)
    np.testing.assert_allclose(m["frac_reward_zero_std"], 0.25)
    lengths = np.asarray(r.mask).sum(1)
    np.testing.assert_allclose(m["completions/mean_length"], lengths.mean(), rtol=1e-6)
    ok = np.asarray(r.reward) >= 1
    np.testing.assert_allclose(m["completions/mean_length_correct"], lengths[ok].mean(), rtol=1e-6)
    np.testing.assert_allclose(m["completions/mean_length_wrong"], lengths[~ok].mean(), rtol=1e-6)
    _, _, _, m1 = tg.score(c, model, params, r._replace(reward=jnp.zeros(16)), hp)
    assert np.isnan(m1["completions/mean_length_correct"])   # no correct completion
    trunc = np.asarray(r.length) >= r.completion.shape[1]
    np.testing.assert_allclose(m["completions/clipped_ratio"], trunc.mean())


# ----------------------------------------------------------------------------- whole runs

@pytest.fixture(scope="module")
def runs():
    c = cfg(beta=0.04)
    train = make_train(c)
    keys = jax.random.split(jax.random.key(3), 2)
    vm = jax.jit(jax.vmap(train))(keys)
    single = jax.jit(train)
    return c, keys, vm, single


def test_vmapped_seeds_equal_separate_runs_and_same_key_same_numbers(runs):
    c, keys, (vstate, vmetrics), single = runs
    for s in range(2):
        state, metrics = single(keys[s])
        for k in metrics:
            np.testing.assert_allclose(vmetrics[k][s], metrics[k], rtol=2e-5, atol=1e-6,
                                       err_msg=k)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(vstate.params)):
            np.testing.assert_allclose(a, b[s], rtol=1e-4, atol=1e-6)
    again = single(keys[0])[1]
    first = single(keys[0])[1]
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])


def test_run_metrics_have_trl_names_and_count_tokens(runs):
    c, keys, (state, m), _ = runs
    for name in ("reward", "reward_std", "frac_reward_zero_std", "kl", "entropy", "accuracy",
                 "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean",
                 "completions/mean_length", "completions/clipped_ratio", "env_steps"):
        assert name in m and m[name].shape == (2, c.num_iterations), name
    m = jax.tree.map(np.asarray, m)
    tokens = m["completions/mean_length"] * c.num_groups * c.group_size
    np.testing.assert_allclose(np.diff(m["env_steps"], prepend=0, axis=1), tokens, rtol=1e-5)
    np.testing.assert_allclose(m["episode_return"], m["reward"])
    assert np.all(m["kl"][:, 0] < 1e-6) and np.all(m["kl"] >= 0)   # k3 is never negative
    assert np.all(np.isfinite(m["entropy"]))


def test_budget_stops_text_runs():
    c = cfg(total_timesteps=40, num_iterations=4)
    _, m = jax.jit(make_train(c))(jax.random.key(0))
    steps = np.asarray(m["env_steps"])
    ran = np.isfinite(np.asarray(m["reward"]))
    assert ran[0] and not ran.all()
    assert steps[ran].max() >= 40 and steps[ran][-2] < 40 if ran.sum() > 1 else steps[0] >= 40


# ----------------------------------------------------------------------------- SFT, init_from

@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    from jaxgrpo import sft
    out = tmp_path_factory.mktemp("sft") / "run"
    c = SFTConfig(env="text:addition", env_kwargs={"digits": 1}, num_steps=60, batch_size=32,
                  lr=3e-3, warmup_steps=5, **TINY)
    summary = sft(c, out, seeds=2)
    return c, out, summary


def test_sft_learns_and_writes_a_run_folder(sft_run):
    import pandas as pd
    c, out, summary = sft_run
    df = pd.read_csv(out / "metrics.csv")
    assert {"loss", "accuracy", "token_accuracy"} <= set(df.columns)
    assert len(df) == 2 * c.num_steps and set(df.seed) == {0, 1}
    for _, d in df.groupby("seed"):
        assert d.loss.iloc[-10:].mean() < 0.7 * d.loss.iloc[:5].mean()
    assert summary["complete"] and (out / "checkpoints").is_dir()


def test_init_from_starts_and_anchors_at_the_sft_policy(sft_run):
    from jaxgrpo.runs import init_params, load_run
    c, out, _ = sft_run
    g = cfg(init_from=str(out))
    with pytest.raises(ValueError, match=r"^init_from: make_train reads no run folder"):
        make_train(g)
    state = make_train(g, params=init_params(g)).init(jax.random.key(5))
    sft_params = load_run(out).state.params
    for a, b, r in zip(jax.tree.leaves(state.params), jax.tree.leaves(sft_params),
                       jax.tree.leaves(state.ref_params)):
        np.testing.assert_array_equal(a, np.asarray(b)[0])
        np.testing.assert_array_equal(r, a)


def test_grpo_seed_i_starts_from_sft_seed_i(sft_run):
    """run_training's initial state (runs._compiled_init) of 2 GRPO seeds from the 2-seed SFT
    run: seed i has SFT seed i's params. From Python, the same with make_train: vmap over
    (keys, runs.init_params(config, seeds)). (From a 1-seed run every seed starts from it:
    runs.init_params(config), one params, as before.)"""
    from jaxgrpo import runs
    from jaxgrpo.configio import config_from_dict
    keys = jax.random.split(jax.random.key(0), 2)
    fields = {k: v for k, v in BASE.items() if k not in ("env", "env_kwargs", *TINY)}
    g = config_from_dict({**fields, "init_from": str(sft_run[1])})[0]
    sft_params = jax.tree.leaves(runs.load_run(sft_run[1]).state.params)
    state = runs._compiled_init(g, 2, 1)[0](keys)
    assert not np.array_equal(sft_params[0][0], sft_params[0][1])     # the seeds differ
    for a, b in zip(jax.tree.leaves(state.params), sft_params):
        np.testing.assert_array_equal(a, b)
    train = make_train(g, params=runs.init_params(g))
    py = jax.vmap(train.init, in_axes=(0, None, 0))(keys, None, runs.init_params(g, 2))
    for a, b in zip(jax.tree.leaves(py.params), sft_params):
        np.testing.assert_array_equal(a, b)


def test_early_stop_sampling_is_bitwise_the_full_decode(sft_run):
    """GRPO's sampling from the SFT policy, whose completions end well before max_new_tokens
    (8): with the early stop (the default) and without it, the same completions, log-probs,
    masks, rewards and stats, bit for bit (a whole run's metrics: benchmarks/text_early_stop)."""
    from jaxgrpo.runs import init_params
    _, out, _ = sft_run
    g = cfg(init_from=str(out), max_new_tokens=8)
    params = init_params(g)
    model, M = tg.make_policy(g), g.task.max_new_tokens

    def bits(tree):
        return [(np.asarray(x).dtype, np.asarray(x).tobytes()) for x in jax.tree.leaves(tree)]

    sample = {early: jax.jit(lambda p, k, early=early: tg.sample_completions(
        model, g.task, p, k, 4, 4, 0.7, early_stop=early), compiler_options=BITWISE)
        for early in (True, False)}
    for k in (1, 2):
        roll = sample[True](params, jax.random.key(k))
        assert int(np.asarray(roll[0].length).max()) < M - 1     # the batch could stop early
        assert bits(roll) == bits(sample[False](params, jax.random.key(k)))


def test_init_from_shape_mismatch_and_missing_folder_are_one_line(sft_run, tmp_path):
    from jaxgrpo.runs import init_params    # building a config reads no disk: runs checks it
    c, out, _ = sft_run
    with pytest.raises(ValueError, match=r"^init_from: the model of .* differs .*width 32 "
                                         r"\(this config: 64\)"):
        init_params(cfg(init_from=str(out), width=64))
    with pytest.raises(ValueError, match=r"^init_from: .* is not a run folder"):
        init_params(cfg(init_from=str(tmp_path / "nothing")))


def test_text_config_errors_name_the_field():
    for kw, field in [(dict(env="text:adition"), "env"), (dict(env_kwargs={"digts": 2}),
                      "env_kwargs"), (dict(max_len=6), "max_len"),
                      (dict(group_mode="state"), "group_mode"),
                      (dict(importance_sampling_level="seq"), "importance_sampling_level"),
                      (dict(delta=0.5), "delta"), (dict(num_heads=3), "num_heads")]:
        with pytest.raises(ValueError, match=rf"^{field}:"):
            cfg(**kw)
    with pytest.raises(ValueError, match=r"^width: only for text tasks"):
        GRPOConfig(width=64)
    with pytest.raises(ValueError, match=r"^env: SFT needs a text task"):
        SFTConfig(env="CartPole-v1")


def test_kind_defaults_follow_the_env():
    env, text = GRPOConfig(), GRPOConfig(env="text:addition")
    assert (env.lr, env.num_groups, env.update_epochs) == (3e-3, 4, 4)
    assert (text.lr, text.num_groups, text.update_epochs) == (1e-4, 64, 1)
    assert env.replace(env="text:addition") == text
    assert env.replace(env="text:addition", lr=1e-3).lr == 1e-3
    assert GRPOConfig(lr=1e-3).replace(env="text:sort").lr == 1e-3
    assert "temperature" in text.hparams() and "temperature" not in env.hparams()
