"""jaxgrpo.text.model: KV-cache decoding against the full forward, generate's log-probs against
token_logp, EOS/PAD/length semantics, seeds and vmap, greedy decoding, padding invariance and
config validation. A small model (2 layers x 64 wide) so the file compiles quickly; every
jitted function is built once per position kind (``setup``)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import BITWISE
from jaxgrpo.text import EOS, PAD, completion_length, make_task, reference_completion
from jaxgrpo.text.model import ModelConfig, Transformer, init

TASK = make_task("addition", digits=2, leading_zeros=False)   # prompt_len 7; answers of 1-3 digits
V = TASK.tokenizer.vocab_size
P = TASK.prompt_len
M = 8                                           # completion width: past the answer's EOS
B = 16
POSITIONS = ["learned", "rotary"]


def cfg_of(positions):
    return ModelConfig(vocab_size=V, num_layers=2, width=64, num_heads=4, max_len=32,
                       positions=positions)


@functools.cache
def _sampled():
    """64 training and B test prompts (left-padded, real lengths 5..7) with their reference
    completions [., M] (answer, EOS, PAD)."""
    @jax.jit
    def sample(key):
        prompts = jax.vmap(TASK.sample)(jax.random.split(key, 64 + B))
        ref = jax.vmap(reference_completion, (0, None))(prompts, M)
        return prompts.tokens, prompts.tokens != PAD, ref
    return sample(jax.random.PRNGKey(0))


def batch(train=False):
    """(tokens [n, P], valid [n, P], reference completions [n, M]); n = 64 or B."""
    return tuple(x[:64] if train else x[64:] for x in _sampled())


@functools.cache
def setup(positions):
    """(model, jitted functions, params {"init", "trained"}) for one position kind. "trained":
    30 Adam steps of next-token prediction of the reference completions (token_logp's
    gradient), so the logits are far from uniform and EOS comes where it should."""
    model = Transformer(cfg_of(positions))
    fns = {
        "forward": jax.jit(model.forward),
        "prefill": jax.jit(model.prefill),
        "decode_step": jax.jit(model.decode_step),
        "token_logp": jax.jit(model.token_logp),
        "generate": jax.jit(lambda p, key, tokens, valid, temperature, eos_id, greedy:
                            model.generate(p, key, tokens, valid, M, temperature, eos_id, greedy)),
        "generate_full": jax.jit(lambda p, key, tokens, valid, temperature, eos_id, greedy:
                                 model.generate(p, key, tokens, valid, M, temperature, eos_id,
                                                greedy, early_stop=False)),
    }
    opt = optax.adam(3e-3)

    @jax.jit
    def step(params, state, tokens, valid, ref):
        loss, g = jax.value_and_grad(
            lambda p: -model.token_logp(p, tokens, valid, ref, 1.0)[0].sum(-1).mean())(params)
        updates, state = opt.update(g, state)
        return optax.apply_updates(params, updates), state, loss

    params = trained = model.init(jax.random.PRNGKey(1))
    state, losses = opt.init(params), []
    for _ in range(30):
        trained, state, loss = step(trained, state, *batch(train=True))
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    return model, fns, {"init": params, "trained": trained}


def generate(fns, params, key, tokens, valid, temperature, eos_id=EOS, greedy=False,
             full=False):
    """The jitted generate, called with one signature (temperature, eos_id and greedy traced)
    so that every test shares one compilation; ``full``: without the early stop."""
    return fns["generate_full" if full else "generate"](
        params, key, tokens, valid, jnp.float32(temperature), jnp.int32(eos_id),
        jnp.bool_(greedy))


def assert_bitwise(a, b):
    """Two tuples of arrays hold the same bits (dtypes, shapes and bytes)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes(), (x, y)


def _sequences():
    """Left-padded prompts of different real lengths, then M arbitrary (real) tokens:
    tokens [B, P + M], valid [B, P + M]."""
    tokens, valid, _ = batch()
    rest = jax.random.randint(jax.random.PRNGKey(7), (B, M), 3, V)
    assert len(set(np.asarray(valid.sum(1)).tolist())) > 1        # real lengths differ
    return (jnp.concatenate([tokens, rest], 1),
            jnp.concatenate([valid, jnp.ones((B, M), bool)], 1))


# ----------------------------------------------------------------------------- KV cache

@pytest.mark.parametrize("which", ["init", "trained"])
@pytest.mark.parametrize("positions", POSITIONS)
def test_cache_matches_forward(positions, which):
    model, fns, params = setup(positions)
    params = params[which]
    tokens, valid = _sequences()
    full = np.asarray(fns["forward"](params, tokens, valid))           # [B, P + M, V]
    real = np.asarray(valid)
    if which == "trained":                                             # not near-uniform
        probs = jax.nn.softmax(full[:, P - 1:], -1)
        assert float(probs.max(-1).mean()) > 10 / V          # uniform: 1 / V

    # The whole prompt in one prefill, then one decode step per token.
    logits, cache = fns["prefill"](params, tokens[:, :P], valid[:, :P], model.init_cache(B, P + M))
    got = [logits]
    for t in range(P, P + M - 1):
        logits, cache = fns["decode_step"](params, tokens[:, t], cache)
        got.append(logits)
    np.testing.assert_allclose(np.stack(got, 1), full[:, P - 1:P + M - 1], atol=5e-5, rtol=0)
    assert int(cache.index) == P + M - 1
    np.testing.assert_array_equal(cache.pos, real[:, :-1].sum(1))

    # One token at a time through prefill (pads included): every real position.
    cache = model.init_cache(B, P + M)
    for t in range(P + M):
        logits, cache = fns["prefill"](params, tokens[:, t:t + 1], valid[:, t:t + 1], cache)
        np.testing.assert_allclose(np.asarray(logits)[real[:, t]], full[real[:, t], t],
                                   atol=5e-5, rtol=0, err_msg=f"position {t}")


def test_cache_layout():
    model, _, _ = setup("learned")
    cache = model.init_cache(3, 20)
    assert len(cache.k) == len(cache.v) == 2                          # one per layer
    assert all(a.shape == (3, 4, 20, 16) for a in cache.k + cache.v)  # [B, H, S, hd]
    assert cache.valid.shape == (3, 20) and cache.pos.shape == (3,) and cache.index.shape == ()
    assert model.init_cache(3).k[0].shape[2] == 32
    with pytest.raises(ValueError, match="max_len"):
        model.init_cache(3, 33)


# ----------------------------------------------------------------------------- generate

@pytest.mark.parametrize("temperature", [0.7, 1.3])
@pytest.mark.parametrize("positions", POSITIONS)
def test_token_logp_matches_generate(positions, temperature):
    model, fns, params = setup(positions)
    tokens, valid, _ = batch()
    for which in ("init", "trained"):
        completion, logp, length = generate(fns, params[which], jax.random.PRNGKey(3), tokens,
                                            valid, temperature)
        new_logp, entropy = fns["token_logp"](params[which], tokens, valid, completion,
                                              temperature)
        if which == "trained":
            assert np.any(np.asarray(length) < M)
        np.testing.assert_allclose(new_logp, logp, atol=1e-5, rtol=0)
        after = np.arange(M) > np.asarray(length)[:, None]
        assert np.all(np.asarray(entropy)[after] == 0)
        assert np.all(np.asarray(entropy)[~after] > 0)
        assert np.all(np.asarray(entropy)[~after] <= np.log(V) + 1e-4)


def test_token_logp_entropy_reference():
    """token_logp against log_softmax(forward / T) computed directly."""
    model, fns, params = setup("rotary")
    tokens, valid, ref = batch()
    temperature = 0.7
    logp, entropy = fns["token_logp"](params["trained"], tokens, valid, ref, temperature)
    full = fns["forward"](params["trained"], jnp.concatenate([tokens, ref], 1),
                          jnp.concatenate([valid, jnp.ones_like(ref, bool)], 1))
    z = jax.nn.log_softmax(full[:, P - 1:-1] / temperature)
    want = jnp.take_along_axis(z, ref[..., None], -1)[..., 0]
    want_ent = -(jnp.exp(z) * z).sum(-1)
    keep = np.arange(M) <= np.asarray(completion_length(ref))[:, None]
    np.testing.assert_allclose(logp, np.where(keep, want, 0), atol=1e-5, rtol=0)
    np.testing.assert_allclose(entropy, np.where(keep, want_ent, 0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("positions", POSITIONS)
def test_generate_eos_pad_length_and_seeds(positions):
    model, fns, params = setup(positions)
    tokens, valid, _ = batch()

    def gen(key):
        return generate(fns, params["trained"], key, tokens, valid, 1.3)
    completion, logp, length = map(np.asarray, gen(jax.random.PRNGKey(5)))
    assert completion.shape == logp.shape == (B, M) and length.shape == (B,)
    assert completion.dtype == np.int32 and logp.dtype == np.float32 and length.dtype == np.int32
    np.testing.assert_array_equal(length, completion_length(completion))
    i = np.arange(M)
    after = i > length[:, None]
    assert np.all(completion[after] == PAD) and np.all(logp[after] == 0)
    assert np.all(logp[~after] < 0)
    assert np.all((completion == EOS) == (i == length[:, None]))     # one EOS, at `length`
    assert 0 < (length < M).sum()                                 # some sequences ended

    again = gen(jax.random.PRNGKey(5))
    for a, b in zip((completion, logp, length), again):
        np.testing.assert_array_equal(a, b)
    other = np.asarray(gen(jax.random.PRNGKey(6))[0])
    assert np.any(other != completion)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampling_distribution(temperature):
    """The first sampled token's frequencies (64 keys x B copies of one prompt) match
    softmax(logits / temperature), and not softmax(logits)."""
    model, fns, params = setup("learned")
    tokens, valid, _ = batch()
    tokens, valid = jnp.repeat(tokens[:1], B, 0), jnp.repeat(valid[:1], B, 0)
    first = np.concatenate([np.asarray(generate(fns, params["trained"], jax.random.PRNGKey(k),
                                                tokens, valid, temperature)[0][:, 0])
                            for k in range(64)])
    freq = np.bincount(first, minlength=V) / first.size
    logits = np.asarray(fns["forward"](params["trained"], tokens, valid))[0, -1]
    p = np.asarray(jax.nn.softmax(logits / temperature))
    tol = 4 * np.sqrt(p * (1 - p) / first.size) + 2e-3
    assert np.all(np.abs(freq - p) < tol), (freq, p)
    assert np.any(np.abs(freq - np.asarray(jax.nn.softmax(logits))) > tol)


def test_generate_vmapped_over_seeds():
    """generate vmapped over 3 seeds (each its own key; params init, trained, trained: a
    params axis too) equals 3 separate calls; a token outside the vocabulary as eos_id (traced,
    like temperature) never ends a sequence, so length == M and every token has a log-prob."""
    model, fns, params = setup("learned")
    tokens, valid, _ = batch()
    seeds = [params["init"], params["trained"], params["trained"]]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *seeds)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    vm = jax.jit(jax.vmap(lambda p, k: model.generate(p, k, tokens, valid, M, 1.3, EOS)))(
        stacked, keys)
    for j in range(3):
        one = generate(fns, seeds[j], keys[j], tokens, valid, 1.3)
        np.testing.assert_array_equal(vm[0][j], one[0])
        np.testing.assert_allclose(vm[1][j], one[1], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(vm[2][j], one[2])
    assert np.any(np.asarray(vm[0][1]) != np.asarray(vm[0][2]))      # the keys matter

    completion, logp, length = generate(fns, params["trained"], jax.random.PRNGKey(0), tokens,
                                        valid, 1.0, eos_id=V + 5)
    assert np.all(np.asarray(length) == M) and np.all(np.asarray(logp) < 0)
    assert np.any(np.asarray(completion) == EOS)                     # just a token now


@pytest.mark.parametrize("positions", POSITIONS)
def test_greedy(positions):
    model, fns, params = setup(positions)
    tokens, valid, _ = batch()
    p = params["trained"]
    out = [generate(fns, p, jax.random.PRNGKey(k), tokens, valid, 0.7, greedy=True)
           for k in (0, 1)]
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)                          # the key does not matter
    completion, logp, length = map(np.asarray, out[0])
    full = np.asarray(fns["forward"](p, jnp.concatenate([tokens, completion], 1),
                                     jnp.concatenate([valid, jnp.ones((B, M), bool)], 1)))
    argmax = full[:, P - 1:-1].argmax(-1)
    keep = np.arange(M) <= length[:, None]
    np.testing.assert_array_equal(completion[keep], argmax[keep])
    np.testing.assert_array_equal(completion[~keep], PAD)
    want, _ = fns["token_logp"](p, tokens, valid, completion, 0.7)   # temperature-scaled logp
    np.testing.assert_allclose(logp, want, atol=1e-5, rtol=0)
    assert np.all(logp[~keep] == 0)


# ----------------------------------------------------------------------------- early stop

class CountingTransformer(Transformer):
    """A Transformer that counts its decode steps as they run (a host callback in the decode
    loop's body)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.steps = 0

    def _count(self, _):
        self.steps += 1

    def decode_step(self, params, token, cache):
        jax.debug.callback(self._count, token[0])
        return super().decode_step(params, token, cache)


@pytest.mark.parametrize("positions", POSITIONS)
def test_early_stop_is_bitwise_the_full_decode(positions):
    """Early-stopped decoding writes the very bits of the full-length decode (tokens, log-probs,
    lengths), sampled and greedy, on a model whose batches end before M tokens and on one
    (init) whose batches do not."""
    model, fns, params = setup(positions)
    tokens, valid, _ = batch()
    ended = []
    for which in ("init", "trained"):
        for temperature, greedy in ((1.3, False), (0.7, True)):
            for k in (0, 1):
                key = jax.random.PRNGKey(k)
                out = generate(fns, params[which], key, tokens, valid, temperature, greedy=greedy)
                full = generate(fns, params[which], key, tokens, valid, temperature,
                                greedy=greedy, full=True)
                assert_bitwise(out, full)
                ended.append(int(np.asarray(out[2]).max()) < M - 1)
    assert any(ended) and not all(ended)    # some batches could stop early, some could not


def test_early_stop_runs_until_the_last_eos_and_no_further():
    """Decode steps run (counted on the host): up to the batch's last EOS with the early stop
    (the prefill draws token 0, step t token t), all M - 1 without it, and all M - 1 with the
    early stop when no completion ends (an eos_id outside the vocabulary), with the same
    bits as the full decode."""
    _, _, params = setup("learned")
    model = CountingTransformer(cfg_of("learned"))
    tokens, valid, _ = batch()
    run = {early: jax.jit(lambda p, key, eos_id, early=early: model.generate(
        p, key, tokens, valid, M, 1.3, eos_id, early_stop=early), compiler_options=BITWISE)
        for early in (True, False)}

    def steps(early, eos_id, key=jax.random.PRNGKey(0)):
        model.steps = 0
        out = run[early](params["trained"], key, jnp.int32(eos_id))
        jax.effects_barrier()
        return model.steps, out

    n, out = steps(True, EOS)
    length = np.asarray(out[2])
    assert length.max() < M - 1                               # every completion ended early
    assert n == length.max()
    n_full, full = steps(False, EOS)
    assert n_full == M - 1
    assert_bitwise(out, full)

    n, out = steps(True, V + 5)                               # no completion ends
    assert n == M - 1 and np.all(np.asarray(out[2]) == M)
    assert_bitwise(out, steps(False, V + 5)[1])


def test_early_stop_vmapped_over_seeds():
    """vmapped over keys, and over keys and params (one member, at init, never ends, so the
    loop runs all M - 1 steps while the others are done): the same bits as the vmapped full
    decode, and the tokens and lengths of separate calls."""
    model, fns, params = setup("learned")
    tokens, valid, _ = batch()
    keys = jax.random.split(jax.random.PRNGKey(4), 3)

    def vmapped(early):
        return jax.jit(jax.vmap(lambda p, k: model.generate(p, k, tokens, valid, M, 0.7, EOS,
                                                            early_stop=early)))
    on, off = vmapped(True), vmapped(False)
    trained = jax.tree.map(lambda a: jnp.stack([a] * 3), params["trained"])
    mixed = jax.tree.map(lambda *a: jnp.stack(a), params["trained"], params["init"],
                         params["trained"])
    for stacked, seeds in ((trained, [params["trained"]] * 3),
                           (mixed, [params["trained"], params["init"], params["trained"]])):
        out = on(stacked, keys)
        assert_bitwise(out, off(stacked, keys))
        for j in range(3):
            one = generate(fns, seeds[j], keys[j], tokens, valid, 0.7)
            np.testing.assert_array_equal(out[0][j], one[0])
            np.testing.assert_allclose(out[1][j], one[1], atol=1e-5, rtol=0)
            np.testing.assert_array_equal(out[2][j], one[2])
    length = np.asarray(on(trained, keys)[2])
    assert length.max() < M - 1                              # the vmapped loop could stop
    assert np.asarray(on(mixed, keys)[2])[1].max() == M      # ... and here could not
    # vmapped, the decode stays one loop with a scalar condition (a batched one would make
    # vmap select every member's carry, KV cache included, at every step)
    jaxpr = jax.make_jaxpr(jax.vmap(lambda p, k: model.generate(p, k, tokens, valid, M, 0.7,
                                                                EOS)))(trained, keys)
    loops = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "while"]
    assert len(loops) == 1 and loops[0].params["cond_jaxpr"].out_avals[0].shape == ()


# ----------------------------------------------------------------------------- padding

@pytest.mark.parametrize("positions", POSITIONS)
def test_padding_invariance(positions):
    """The same prompts left-padded to P and to P + 9, and the shortest alone without padding:
    identical logits at the real tokens."""
    model, fns, params = setup(positions)
    p = params["trained"]
    tokens, valid, _ = batch()
    extra = 9
    tokens2 = jnp.concatenate([jnp.full((B, extra), PAD), tokens], 1)
    valid2 = jnp.concatenate([jnp.zeros((B, extra), bool), valid], 1)
    a = np.asarray(fns["forward"](p, tokens, valid))
    b = np.asarray(fns["forward"](p, tokens2, valid2))[:, extra:]
    real = np.asarray(valid)
    np.testing.assert_allclose(a[real], b[real], atol=1e-5, rtol=0)
    # The forward sees no pads when a prompt is cut to its real tokens.
    row = int(np.argmin(real.sum(1)))
    n = int(real[row].sum())
    alone = np.asarray(fns["forward"](p, tokens[row:row + 1, P - n:], None))[0]
    np.testing.assert_allclose(alone, a[row, P - n:], atol=1e-5, rtol=0)



# ----------------------------------------------------------------------------- config, init

@pytest.mark.parametrize("kwargs, field", [
    ({"vocab_size": 0}, "vocab_size"),
    ({"vocab_size": 10.0}, "vocab_size"),
    ({"num_layers": 0}, "num_layers"),
    ({"width": -8}, "width"),
    ({"num_heads": 0}, "num_heads"),
    ({"max_len": 0}, "max_len"),
    ({"width": 100, "num_heads": 3}, "width"),
    ({"width": 12, "num_heads": 4, "positions": "rotary"}, "rotary"),
    ({"positions": "alibi"}, "positions"),
    ({"dtype": jnp.int32}, "dtype"),
    ({"tie_embeddings": 1}, "tie_embeddings"),
])
def test_config_validation(kwargs, field):
    kwargs = {"vocab_size": 10, **kwargs}
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_config_ok_and_hashable():
    cfg = ModelConfig(vocab_size=10, width=12, num_heads=4)      # head dim 3: fine when learned
    assert cfg.head_dim == 3
    assert hash(Transformer(cfg)) == hash(Transformer(ModelConfig(vocab_size=10, width=12,
                                                                  num_heads=4)))
    with pytest.raises(TypeError):
        Transformer({"vocab_size": 10})


def test_init_and_lengths():
    cfg = ModelConfig(vocab_size=V, num_layers=3, width=32, num_heads=2, max_len=16)
    params = jax.jit(init, static_argnums=1)(jax.random.PRNGKey(0), cfg)
    blocks = params["blocks"]
    assert len(blocks) == 3 and params["wte"].shape == (V, 32) and params["wpe"].shape == (16, 32)
    assert params["head"].shape == (32, V)
    assert blocks[0]["qkv"]["kernel"].shape == (32, 96)
    assert blocks[0]["fc"]["kernel"].shape == (32, 128)
    stds = {k: float(np.concatenate([np.ravel(b[k]["kernel"]) for b in blocks]).std())
            for k in ("qkv", "out", "fc", "proj")}
    assert abs(stds["qkv"] - 0.02) < 0.002 and abs(stds["fc"] - 0.02) < 0.002
    assert abs(stds["out"] - 0.02 / np.sqrt(6)) < 0.001
    assert abs(stds["proj"] - 0.02 / np.sqrt(6)) < 0.001
    assert np.all(np.asarray(blocks[0]["ln1"]["scale"]) == 1)

    model = Transformer(cfg)
    with pytest.raises(ValueError, match="max_len"):
        model.forward(params, jnp.zeros((1, 17), jnp.int32))
    with pytest.raises(ValueError, match="max_len"):
        model.generate(params, jax.random.PRNGKey(0), jnp.ones((1, 10), jnp.int32),
                       jnp.ones((1, 10), bool), 7)

    tied = ModelConfig(vocab_size=V, width=32, num_heads=2, max_len=16, positions="rotary",
                       tie_embeddings=True)
    p = jax.jit(init, static_argnums=1)(jax.random.PRNGKey(0), tied)
    assert "head" not in p and "wpe" not in p
    tokens = jnp.ones((2, 5), jnp.int32)
    model = Transformer(tied)
    logits, h = jax.jit(lambda p: (model.forward(p, tokens), model.hidden(p, tokens)))(p)
    h = (h - h.mean(-1, keepdims=True)) / jnp.sqrt(h.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(logits.reshape(10, V), h @ p["wte"].T, atol=1e-5, rtol=0)
