"""jaxgrpo.text.sft: the teacher-forced loss and its metrics against NumPy on a tiny random
model, and a two-step SFT run through ``make_train`` (its metrics and counters). SFT learning
and init_from are tested end to end in test_text_grpo.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo.config import SFTConfig
from jaxgrpo.text.model import Transformer
from jaxgrpo.text.sft import sft_loss
from jaxgrpo.text.tokenizer import EOS, PAD

CFG = SFTConfig(env="text:sort", env_kwargs={"length": 3}, width=16, num_heads=2, num_layers=1,
                batch_size=8, num_steps=2, warmup_steps=0)


@pytest.fixture(scope="module")
def setup():
    task = CFG.task
    model = Transformer(CFG.model_config())
    params = model.init(jax.random.key(0))
    prompts = jax.vmap(task.sample)(jax.random.split(jax.random.key(1), 5))
    targets = jax.vmap(task.reference_completion)(prompts)
    loss = jax.jit(lambda p, pr, t: sft_loss(model, p, pr, t))
    return task, model, params, prompts, targets, loss


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_and_metrics_match_numpy(setup):
    task, model, params, prompts, targets, loss = setup
    got, m = loss(params, prompts, targets)
    P, M = prompts.tokens.shape[1], targets.shape[1]
    tokens = jnp.concatenate([prompts.tokens, targets], 1)
    valid = tokens != PAD
    valid = valid.at[:, P:].set(True)
    logits = np.asarray(model.forward(params, tokens, valid), np.float64)[:, P - 1:P + M - 1]
    t = np.asarray(targets)
    eos = np.array([list(r).index(EOS) for r in t])           # every target has its EOS
    mask = np.arange(M)[None] <= eos[:, None]
    lp = np.take_along_axis(log_softmax(logits), t[..., None], -1)[..., 0]
    np.testing.assert_allclose(got, -lp[mask].mean(), rtol=1e-5)
    correct = logits.argmax(-1) == t
    np.testing.assert_allclose(m["token_accuracy"], correct[mask].mean(), rtol=1e-6)
    np.testing.assert_allclose(m["accuracy"], np.all(correct | ~mask, 1).mean(), rtol=1e-6)


def test_tokens_after_the_eos_do_not_count(setup):
    task, model, params, prompts, _, loss = setup
    M = task.max_new_tokens + 2                  # room after the EOS
    targets = jax.vmap(lambda p: task.reference_completion(p, M))(prompts)
    after = jnp.arange(M)[None] > jnp.argmax(targets == EOS, 1)[:, None]
    assert after.any()
    junk = jnp.where(after, 7, targets)
    np.testing.assert_array_equal(loss(params, prompts, junk)[0], loss(params, prompts, targets)[0])


def test_perfect_logits_give_accuracy_one(setup):
    """A model whose argmax is the target everywhere: both accuracies 1, loss small."""
    task, model, params, prompts, targets, _ = setup
    V = CFG.model_config().vocab_size

    class Oracle:
        def forward(self, params, tokens, valid):
            nxt = jnp.concatenate([tokens[:, 1:], tokens[:, :1]], 1)   # the next token
            return 20.0 * jax.nn.one_hot(nxt, V)

    loss, m = sft_loss(Oracle(), None, prompts, targets)
    assert float(m["accuracy"]) == 1.0 and float(m["token_accuracy"]) == 1.0
    assert float(loss) < 1e-6


def test_two_steps_through_make_train():
    train = jaxgrpo.make_train(CFG)
    state, m = jax.jit(train)(jax.random.key(0))
    assert int(state.iteration) == 2
    for k in ("loss", "token_accuracy", "accuracy", "episode_return", "episode_length",
              "episodes", "env_steps"):
        assert m[k].shape == (2,), k
    np.testing.assert_array_equal(m["env_steps"], [8, 16])
    np.testing.assert_array_equal(m["episodes"], [8, 8])
    np.testing.assert_array_equal(m["episode_return"], m["accuracy"])
    assert np.isfinite(m["loss"]).all() and (m["episode_length"] >= 4).all()   # 3 digits, EOS
