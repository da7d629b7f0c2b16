"""make_train end to end: shapes, vmap over seeds and hparams, resume, small learning checks.

Compiled functions are shared through module-scoped fixtures; the full-size learning targets
are in experiments/ (see README)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import BITWISE
import jaxgrpo

SMALL = dict(total_timesteps=40_000)


@pytest.fixture(scope="module")
def grpo_run():
    cfg = jaxgrpo.GRPOConfig(**SMALL)
    train = jax.jit(jax.vmap(jaxgrpo.make_train(cfg)))
    state, metrics = train(jax.random.split(jax.random.key(0), 2))
    return cfg, state, jax.device_get(metrics)


@pytest.fixture(scope="module")
def ppo_run():
    cfg = jaxgrpo.PPOConfig(total_timesteps=80_000)
    train = jax.jit(jax.vmap(jaxgrpo.make_train(cfg)))
    state, metrics = train(jax.random.split(jax.random.key(0), 2))
    return cfg, state, jax.device_get(metrics)


def test_grpo_metrics_are_per_iteration(grpo_run):
    cfg, _, m = grpo_run
    for k in ["episode_return", "env_steps", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean",
              "clip_ratio/region_mean", "entropy", "reward_std", "frac_reward_zero_std",
              "valid_frac", "episode_length"]:
        assert m[k].shape == (2, cfg.iterations), k


def test_grpo_on_policy_runs_while_budget_remains(grpo_on_policy_run):
    """On-policy, an iteration runs while the env steps used are below the budget: the run
    uses all of it and ends past it by less than one iteration (the default iteration count is
    an upper bound: as many iterations as episodes of one step would take)."""
    cfg, state, m = grpo_on_policy_run
    steps = m["env_steps"]
    assert (np.diff(steps, axis=1) >= 0).all()
    ran = ~np.isnan(m["episode_return"])
    for s in range(2):
        n = ran[s].sum()
        # iterations that ran form a prefix; the rest are NaN and leave env_steps unchanged
        assert ran[s, :n].all() and not ran[s, n:].any()
        assert int(state.iteration[s]) == n
        before_last = steps[s, n - 2] if n >= 2 else 0.0
        assert before_last < cfg.total_timesteps                 # the last one was allowed
        assert n < cfg.iterations                                # the budget stopped it ...
        assert steps[s, -1] >= cfg.total_timesteps               # ... having used all of it
        assert steps[s, -1] - before_last <= cfg.max_steps_per_iteration


@pytest.fixture(scope="module")
def grpo_tiny_budget():
    """On-policy GRPO on Catch-bsuite, whose episodes are 9 steps and its time limit 1000: a
    budget below one iteration's worst case (8 episodes of 1000 steps), and 28 iterations of
    8 episodes of 9 steps (the former default iteration count, 5, stopped it at 360 steps)."""
    cfg = jaxgrpo.GRPOConfig(env="Catch-bsuite", total_timesteps=2_000, num_groups=2,
                             group_size=4, on_policy=True, num_minibatches=2)
    assert cfg.total_timesteps < cfg.max_steps_per_iteration
    state, m = jax.jit(jaxgrpo.make_train(cfg))(jax.random.key(0))
    return cfg, state, jax.tree.map(lambda x: np.asarray(x)[None], m)


def test_a_budget_below_one_iteration_runs_one(grpo_tiny_budget):
    """A budget smaller than one iteration's worst case is allowed: one iteration runs."""
    cfg, _, m = grpo_tiny_budget
    ran = ~np.isnan(m["episode_return"])
    assert ran[:, 0].all() and m["env_steps"][:, -1].min() >= cfg.total_timesteps


def test_a_spent_run_goes_on_bitwise_without_its_rollout(grpo_tiny_budget):
    """``train.run_spent`` (what a run folder's chunk loop calls once every seed's budget is
    spent) gives ``train.run``'s state and metrics, bitwise, from a spent state; PPO has none."""
    from jaxgrpo.keys import key_data
    cfg, state, _ = grpo_tiny_budget
    assert not bool(jaxgrpo.train.budget_left(cfg, state))
    train = jaxgrpo.make_train(cfg)
    a = jax.jit(lambda s: train.run(s, None, 3))(state)
    b = jax.jit(lambda s: train.run_spent(s, None, 3))(state)
    plain = lambda t: [np.asarray(x) for x in jax.tree.leaves(key_data(t))]
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(plain(a), plain(b)):
        np.testing.assert_array_equal(x, y)
    assert np.isnan(b[1]["loss"]).all() and (b[1]["env_steps"] == state.env_steps).all()
    assert jaxgrpo.make_train(jaxgrpo.PPOConfig(total_timesteps=1024)).run_spent is None


@pytest.mark.parametrize("run", ["grpo_run", "grpo_tiny_budget", "ppo_run"])
def test_a_run_trains_its_budget_within_one_iteration(run, request):
    """From Python, whatever the episode lengths, a run ends within one iteration of
    total_timesteps: GRPO at or past it (it runs while steps remain; on-policy, the default
    iteration count is an upper bound), PPO at or below it (whole iterations of num_envs *
    num_steps, as in PureJaxRL). experiments/budgets.py measures larger budgets."""
    cfg, _, m = request.getfixturevalue(run)
    steps = m["env_steps"]
    one = np.diff(steps, axis=1, prepend=0.0).max()
    assert (abs(steps[:, -1] - cfg.total_timesteps) < one).all(), (steps[:, -1], one)
    assert (steps[:, -1] >= cfg.total_timesteps).all() == (cfg.algo == "grpo")


def test_grpo_learns_cartpole_small(grpo_run):
    cfg, state, m = grpo_run
    r = m["episode_return"]
    first = np.nanmean(r[:, :3])
    last = np.mean([x[~np.isnan(x)][-3:].mean() for x in r])
    assert last > 2 * first and last > 80, (first, last)
    ev = jaxgrpo.evaluate(cfg, state, jax.random.key(1), num_episodes=16)
    assert ev.shape == (2,) and float(ev.mean()) > 80


@pytest.fixture(scope="module")
def grpo_on_policy_run():
    """grpo_run's configuration and seeds, collected on-policy."""
    cfg = jaxgrpo.GRPOConfig(**SMALL, on_policy=True)
    train = jax.jit(jax.vmap(jaxgrpo.make_train(cfg)))
    state, metrics = train(jax.random.split(jax.random.key(0), 2))
    return cfg, state, jax.device_get(metrics)


def _valid_fraction(m):
    """Valid / simulated env steps over a run (metrics [seeds, iterations])."""
    valid = np.diff(m["env_steps"], axis=1, prepend=0.0)
    ran = ~np.isnan(m["valid_frac"])
    return valid[ran].sum() / (valid[ran] / m["valid_frac"][ran]).sum()


def test_grpo_on_policy_learns_and_pads_where_the_stream_does_not(grpo_run, grpo_on_policy_run):
    cfg, state, m = grpo_on_policy_run
    r = m["episode_return"]
    first = np.nanmean(r[:, :3])
    last = np.mean([x[~np.isnan(x)][-3:].mean() for x in r])
    assert last > 2 * first and last > 60, (first, last)
    assert (m["env_steps"][:, -1] >= cfg.total_timesteps).all()       # the budget rule holds
    assert state.env_carry is None and (m["staleness/max"][~np.isnan(m["staleness/max"])] == 0).all()
    # the stream's lanes never idle; the on-policy lanes wait for the longest episode
    stream_cfg, _, ms = grpo_run
    assert _valid_fraction(ms) == 1.0 and _valid_fraction(m) < 0.95
    np.testing.assert_array_equal(
        ms["env_steps"][:, -1], stream_cfg.iterations * stream_cfg.num_envs * stream_cfg.num_steps)


def test_ppo_learns_cartpole_small(ppo_run):
    cfg, state, m = ppo_run
    assert m["value_loss"].shape == (2, cfg.iterations)
    np.testing.assert_array_equal(m["env_steps"][:, -1], cfg.iterations * 512)
    r = m["episode_return"]
    last = np.mean([x[~np.isnan(x)][-10:].mean() for x in r])
    assert last > 120, last


def test_hparams_vmap_with_one_compilation():
    cfg = jaxgrpo.GRPOConfig(total_timesteps=8_000, num_groups=2, group_size=4, num_iterations=3,
                             env_params={"max_steps_in_episode": 50})
    train = jaxgrpo.make_train(cfg)
    hp = {"lr": jnp.array([1e-3, 1e-2]), "beta": jnp.array([0.0, 0.1])}
    sweep = jax.jit(jax.vmap(train, in_axes=(None, 0)))
    _, m = sweep(jax.random.key(0), hp)
    assert m["kl"].shape == (2, 3)
    # each row equals the separate run with those hparams
    for i in range(2):
        _, mi = jax.jit(train)(jax.random.key(0), {"lr": hp["lr"][i], "beta": hp["beta"][i]})
        np.testing.assert_allclose(m["episode_return"][i], mi["episode_return"], rtol=1e-5)


@pytest.mark.parametrize("on_policy", [True, False])
def test_resume_equals_one_run(on_policy):
    cfg = jaxgrpo.GRPOConfig(total_timesteps=8_000, num_groups=2, group_size=4, num_iterations=5,
                             env_params={"max_steps_in_episode": 50}, ref_sync_every=2,
                             on_policy=on_policy, num_steps=32)
    train = jaxgrpo.make_train(cfg)
    s_full, m_full = jax.jit(train, compiler_options=BITWISE)(jax.random.key(0))
    run = jax.jit(train.run, static_argnums=2, compiler_options=BITWISE)
    s2, m2 = run(train.init(jax.random.key(0)), None, 2)
    s5, m5 = run(s2, None, 3)
    for a, b in zip(jax.tree.leaves(s_full.params), jax.tree.leaves(s5.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.concatenate([m2["kl"], m5["kl"]]), m_full["kl"])


def test_reference_policy_is_fixed_without_sync_and_follows_with_sync():
    base = dict(total_timesteps=8_000, num_groups=2, group_size=4, num_iterations=2,
                env_params={"max_steps_in_episode": 50})
    s0, _ = jax.jit(jaxgrpo.make_train(jaxgrpo.GRPOConfig(**base)))(jax.random.key(0))
    init = jaxgrpo.make_train(jaxgrpo.GRPOConfig(**base)).init(jax.random.key(0))
    for a, b in zip(jax.tree.leaves(s0.ref_params), jax.tree.leaves(init.params)):
        np.testing.assert_array_equal(a, b)
    s1, _ = jax.jit(jaxgrpo.make_train(jaxgrpo.GRPOConfig(**base, ref_sync_every=1)))(
        jax.random.key(0))
    for a, b in zip(jax.tree.leaves(s1.ref_params), jax.tree.leaves(s1.params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env,extra", [
    ("Pendulum-v1", {}),                              # continuous Gaussian policy
    ("Breakout-MinAtar", {"env_params": {"max_steps_in_episode": 30}}),  # image obs, CNN
    ("DeepSea-bsuite", {"env_kwargs": {"size": 6}}),  # 2-D obs flattened
])
def test_other_env_families_run(env, extra):
    cfg = jaxgrpo.GRPOConfig(env=env, num_groups=2, group_size=2, num_iterations=3,
                             total_timesteps=20_000, **extra)
    state, m = jax.jit(jaxgrpo.make_train(cfg))(jax.random.key(0))
    # (Pendulum's 200-step episodes end in the second iteration of 128 steps, none in the
    # first or third: an iteration where no episode ended reports a NaN return)
    assert np.isfinite(m["episode_return"]).any() and np.isfinite(m["loss"]).all()
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_ppo_continuous_runs():
    cfg = jaxgrpo.PPOConfig(env="Pendulum-v1", total_timesteps=1024, num_envs=2, num_steps=256)
    state, m = jax.jit(jaxgrpo.make_train(cfg))(jax.random.key(0))
    assert m["value_loss"].shape == (2,) and np.isfinite(m["value_loss"]).all()


def test_progress_callback_runs_inside_the_compiled_loop():
    """Every 2nd iteration and the last, per seed; each report holds each metric's last real
    value since the previous one: seed 0's budget of 600 env steps is spent after iteration 2,
    so iteration 3 is NaN, and the report at 3 holds iteration 2's return (it said NaN, and
    loggers dropped the point). The training numbers are bitwise those without a callback."""
    calls = []
    cfg = jaxgrpo.GRPOConfig(total_timesteps=600, num_groups=2, group_size=4, num_iterations=5,
                             env_params={"max_steps_in_episode": 40}, on_policy=True)
    train = jaxgrpo.make_train(cfg, callback=lambda i, m: calls.append(
        (int(i), float(m["env_steps"]), float(m["episode_return"]))), callback_every=2)
    keys = jax.random.split(jax.random.key(0), 2)
    o0 = {"xla_backend_optimization_level": 0, **BITWISE}   # both alike: faster to compile
    _, m = jax.jit(jax.vmap(train), compiler_options=o0)(keys)
    jax.effects_barrier()
    _, plain = jax.jit(jax.vmap(jaxgrpo.make_train(cfg)), compiler_options=o0)(keys)
    for k in plain:
        np.testing.assert_array_equal(np.asarray(m[k]), np.asarray(plain[k]), err_msg=k)
    assert sorted(i for i, _, _ in calls) == [1, 1, 3, 3, 4, 4]   # every 2nd and the last
    ret, steps = np.asarray(m["episode_return"]), np.asarray(m["env_steps"])
    assert np.isnan(ret[0, 3]) and not np.isnan(ret[0, 2])       # seed 0: spent after 2
    for i, lo in ((1, 0), (3, 2), (4, 4)):
        got = sorted((s, r) for j, s, r in calls if j == i)
        held = [r[~np.isnan(r)][-1] if (~np.isnan(r)).any() else np.nan
                for r in ret[:, lo:i + 1]]
        want = sorted(zip(steps[:, i].tolist(), held))
        np.testing.assert_allclose(got, want, rtol=1e-6)
