"""LoRA fine-tuning in the training loop (``lora_rank`` > 0): only the adapters train and hold
optimizer state, the base weights stay bit for bit, the reference policy is the base with the
adapters off (no copy of the base weights), and the adapters' effect is what merging them
into the weights gives. A tiny built-in model (the adapters are the same code on pretrained
ones); compiled functions are module-scoped."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.algorithm import adapters_only, reference_of
from jaxgrpo.config import GRPOConfig, SFTConfig
from jaxgrpo.train import make_train

TINY = dict(num_layers=1, width=32, num_heads=2, max_len=16)
BASE = dict(env="text:addition", env_kwargs={"digits": 1}, num_groups=4, group_size=4,
            total_timesteps=10**6, num_iterations=3, chunk_size=8, lr=1e-2, beta=0.04, ent_coef=0.1, **TINY)
# (ent_coef: a random model earns no reward on addition, so without it nothing would move)


@pytest.fixture(scope="module")
def run():
    c = GRPOConfig(**BASE, lora_rank=4, lora_alpha=8.0)
    train = make_train(c)
    state0 = jax.jit(train.init)(jax.random.key(0))
    state, metrics = jax.jit(train.run)(state0)
    return c, train, state0, state, metrics


def test_only_adapters_train(run):
    c, train, state0, state, _ = run
    base0 = {k: v for k, v in state0.params.items() if k != "lora"}
    base1 = {k: v for k, v in state.params.items() if k != "lora"}
    for a, b in zip(jax.tree.leaves(base0), jax.tree.leaves(base1)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state0.params["lora"]),
                                                       jax.tree.leaves(state.params["lora"]))]
    assert any(moved)


def test_optimizer_state_holds_adapters_only(run):
    c, train, state0, state, _ = run
    n_lora = sum(x.size for x in jax.tree.leaves(state0.params["lora"]))
    n_all = sum(x.size for x in jax.tree.leaves(state0.params))
    n_opt = sum(x.size for x in jax.tree.leaves(state0.opt_state)
                if hasattr(x, "size") and x.ndim > 0)
    assert n_opt == 2 * n_lora < n_all          # Adam's two moments of the adapters


def test_reference_is_base_with_adapters_off(run):
    """The reference state is zero adapters only (no copy of the base); completed with the
    base, it is the base model exactly: starting at b = 0 the policy equals it, after training
    the reference still gives the base model's logits."""
    c, train, state0, state, _ = run
    ref = state.ref_params
    assert set(ref) == {"lora"}
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(ref))
    model = train.policy
    tokens = jnp.array([[1, 5, 6, 7], [0, 1, 8, 9]], jnp.int32)
    valid = tokens != 0
    base = {k: v for k, v in state.params.items() if k != "lora"}
    np.testing.assert_array_equal(
        np.asarray(model.forward(reference_of(state.params, ref), tokens, valid)),
        np.asarray(model.forward({**base, "lora": ref["lora"]}, tokens, valid)))
    np.testing.assert_allclose(
        np.asarray(model.forward(reference_of(state.params, ref), tokens, valid)),
        np.asarray(model.forward(base, tokens, valid)), atol=1e-6)


def test_policy_starts_at_the_reference_and_leaves_it(run):
    """b = 0 at the start: the policy is the reference (the base) bit for bit; training moves
    it away (the KL term grows)."""
    c, train, state0, state, metrics = run
    tokens = jnp.array([[1, 5, 6, 7]], jnp.int32)
    f = lambda p: np.asarray(train.policy.forward(p, tokens))
    np.testing.assert_array_equal(f(state0.params), f(reference_of(state0.params,
                                                                      state0.ref_params)))
    kl = np.asarray(metrics["kl"])
    assert kl[-1] > kl[0] > 0


def test_adapters_only_optimizer_passes_through_nothing_else():
    import optax
    params = {"w": jnp.ones(3), "lora": [{"q": {"a": jnp.ones((2, 1)), "b": jnp.zeros((1, 2))}}]}
    opt = adapters_only(optax.sgd(1.0))
    state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, state, params)
    np.testing.assert_array_equal(np.asarray(updates["w"]), 0.0)
    np.testing.assert_array_equal(np.asarray(updates["lora"][0]["q"]["a"]), -1.0)


def test_sft_with_lora_trains_adapters_only():
    c = SFTConfig(env="text:addition", env_kwargs={"digits": 1}, num_steps=2, batch_size=8,
                  lora_rank=2, **TINY)
    train = make_train(c)
    s0 = jax.jit(train.init)(jax.random.key(1))
    s1, _ = jax.jit(train.run)(s0)
    np.testing.assert_array_equal(np.asarray(s0.params["wte"]), np.asarray(s1.params["wte"]))
    assert not np.array_equal(np.asarray(s0.params["lora"][0]["q"]["b"]),
                              np.asarray(s1.params["lora"][0]["q"]["b"]))


def test_lora_fields_are_text_only():
    with pytest.raises(ValueError, match="lora_rank"):
        GRPOConfig(env="CartPole-v1", lora_rank=4)
