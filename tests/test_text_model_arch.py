"""jaxgrpo.text.model's architecture options (the pretrained families' pieces) against a plain
NumPy transformer: grouped-query attention, RMSNorm, SwiGLU, optional biases, q/k RMSNorm,
RoPE theta and linear / llama3 scaling, tied embeddings, LoRA adapters (forward, merge, the
base without them, gradients), the decode cache on such a model, top-k / top-p sampling
against a NumPy transcription of transformers' warpers, several EOS ids, and the config's
checks. Tiny models (width 32, 2 layers, vocabulary 24): every config compiles a few small
functions once (``setup``)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.text.model import (ModelConfig, Transformer, filter_logits, merge_lora,
                                rope_inv_freq, without_lora)

V, B, T = 24, 3, 9
BASE = dict(vocab_size=V, num_layers=2, width=32, num_heads=4, max_len=24)
LLAMA3 = (("factor", 4.0), ("high_freq_factor", 4.0), ("low_freq_factor", 1.0),
          ("original_max_position_embeddings", 64), ("rope_type", "llama3"))
CONFIGS = {
    "builtin": dict(),
    "builtin_rotary": dict(positions="rotary"),
    # Llama 3.2 / SmolLM2 shape: GQA, RMSNorm, SwiGLU, no biases, llama3 RoPE, tied embeddings
    "llama": dict(positions="rotary", num_kv_heads=2, activation="swiglu", norm="rmsnorm",
                  norm_eps=1e-6, qkv_bias=False, out_bias=False, mlp_bias=False,
                  rope_theta=500000.0, rope_scaling=LLAMA3, tie_embeddings=True, mlp_width=48),
    # Qwen2: q/k/v biases only, one kv head
    "qwen2": dict(positions="rotary", num_kv_heads=1, activation="swiglu", norm="rmsnorm",
                  out_bias=False, mlp_bias=False, rope_theta=1e6, mlp_width=40),
    # Qwen3: q/k RMSNorm, head_size with H * hd != D, linear RoPE scaling
    "qwen3": dict(positions="rotary", num_kv_heads=2, head_size=16, activation="swiglu",
                  norm="rmsnorm", qkv_bias=False, out_bias=False, mlp_bias=False, qk_norm=True,
                  rope_scaling=(("factor", 2.0), ("rope_type", "linear")), mlp_width=40),
}


# ----------------------------------------------------------------------------- NumPy reference

def ref_inv_freq(hd, theta, scaling):
    """transformers' RoPE inverse frequencies (default, linear, llama3), float64."""
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    d = dict(scaling or ())
    kind = d.get("rope_type", "default")
    if kind == "linear":
        return inv / d["factor"]
    if kind == "llama3":
        factor, low, high = d["factor"], d["low_freq_factor"], d["high_freq_factor"]
        old = d["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        out = np.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        return np.where(medium, (1 - smooth) * out / factor + smooth * out, out)
    return inv


def ref_forward(cfg, params, tokens, valid):
    """A plain NumPy (float64) forward of the model ``cfg`` describes: tokens [B, T], valid
    [B, T] -> logits [B, T, V]. Grouped-query attention by repeating each kv head H / K times
    (transformers' repeat_kv), RoPE as cos/sin of cat(freqs, freqs) with rotate_half."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    lora = p.get("lora")
    H, K, hd, F = cfg.num_heads, cfg.kv_heads, cfg.head_dim, cfg.mlp_dim
    eps = cfg.norm_eps
    tokens, valid = np.asarray(tokens), np.asarray(valid, bool)
    b, t = tokens.shape
    pos = np.maximum(np.cumsum(valid, 1) - 1, 0)

    def norm(x, q):
        if cfg.norm == "rmsnorm":
            return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * q["scale"]
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) \
            * q["scale"] + q["bias"]

    def delta(x, lp, target):
        if lp is None or target not in lp:
            return 0.0
        return x @ lp[target]["a"] @ lp[target]["b"] * cfg.lora_alpha / cfg.lora_rank

    def lin(x, q, cols, bias):
        y = x @ q["kernel"][:, cols]
        return y + q["bias"][cols] if bias else y

    freqs = pos[..., None] * ref_inv_freq(hd, cfg.rope_theta, cfg.rope_scaling)
    emb = np.concatenate([freqs, freqs], -1)[:, :, None]          # [B, T, 1, hd]
    cos, sin = np.cos(emb), np.sin(emb)

    def rope(x):
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    i = np.arange(t)
    allowed = (i[:, None] >= i[None, :]) & (valid[:, None, :] | (i[:, None] == i[None, :]))
    x = p["wte"][tokens]
    if cfg.positions == "learned":
        x = x + p["wpe"][pos]
    all_cols = slice(None)
    for n, blk in enumerate(p["blocks"]):
        lp = None if lora is None else lora[n]
        h = norm(x, blk["ln1"])
        q = lin(h, blk["qkv"], slice(0, H * hd), cfg.qkv_bias) + delta(h, lp, "q")
        k = lin(h, blk["qkv"], slice(H * hd, (H + K) * hd), cfg.qkv_bias) + delta(h, lp, "k")
        v = lin(h, blk["qkv"], slice((H + K) * hd, None), cfg.qkv_bias) + delta(h, lp, "v")
        q, k, v = q.reshape(b, t, H, hd), k.reshape(b, t, K, hd), v.reshape(b, t, K, hd)
        if cfg.qk_norm:
            q, k = norm(q, blk["q_norm"]), norm(k, blk["k_norm"])
        if cfg.positions == "rotary":
            q, k = rope(q), rope(k)
        k, v = np.repeat(k, H // K, axis=2), np.repeat(v, H // K, axis=2)
        s = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        s = np.where(allowed[:, None], s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        w = w / w.sum(-1, keepdims=True)
        o = np.einsum("bhqk,bkhd->bqhd", w, v).reshape(b, t, H * hd)
        x = x + lin(o, blk["out"], all_cols, cfg.out_bias) + delta(o, lp, "o")
        h = norm(x, blk["ln2"])
        if cfg.activation == "swiglu":
            g = lin(h, blk["fc"], slice(0, F), cfg.mlp_bias) + delta(h, lp, "gate")
            u = lin(h, blk["fc"], slice(F, None), cfg.mlp_bias) + delta(h, lp, "up")
            a = g / (1 + np.exp(-g)) * u
        else:
            y = lin(h, blk["fc"], all_cols, cfg.mlp_bias) + delta(h, lp, "up")
            a = 0.5 * y * (1 + np.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y ** 3)))
        x = x + lin(a, blk["proj"], all_cols, cfg.mlp_bias) + delta(a, lp, "down")
    h = norm(x, p["ln_f"])
    return h @ (p["wte"].T if cfg.tie_embeddings else p["head"])


# ----------------------------------------------------------------------------- fixtures

def randomized(params, key, scale=0.25):
    """Every leaf replaced by a random draw (norm scales around 1, LoRA b non-zero), so
    biases, norm scales and adapters all matter and the logits are far from uniform."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, leaf), k in zip(leaves, keys):
        z = np.asarray(jax.random.normal(k, leaf.shape), np.float32)
        name = jax.tree_util.keystr(path)
        out.append(1 + 0.2 * z if "scale" in name else scale * z)
    return jax.tree_util.tree_unflatten(tree, [jnp.asarray(a) for a in out])


def left_padded(seed=0, lengths=(9, 6, 3)):
    """tokens int32 [B, T] (pads 0, real tokens random in [1, V)), valid bool [B, T]."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, V, (B, T)).astype(np.int32)
    valid = np.arange(T)[None, :] >= T - np.asarray(lengths)[:, None]
    return jnp.asarray(np.where(valid, tokens, 0)), jnp.asarray(valid)


@functools.cache
def setup(name, lora_rank=0):
    cfg = ModelConfig(**BASE, **CONFIGS[name], lora_rank=lora_rank, lora_alpha=8.0)
    model = Transformer(cfg)
    params = randomized(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    return model, params, jax.jit(model.forward)


# ----------------------------------------------------------------------------- forward

@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_matches_numpy_reference(name):
    model, params, forward = setup(name)
    tokens, valid = left_padded()
    got = np.asarray(forward(params, tokens, valid))
    want = ref_forward(model.cfg, params, tokens, valid)
    real = np.asarray(valid)
    assert np.abs(want[real]).max() > 1.0                  # not a near-zero output
    np.testing.assert_allclose(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_rope_inv_freq_matches_transformers_formulas():
    """Llama 3.1's real scaling (theta 500000, hd 128, factor 8, 1 / 4, 8192): all three
    regions (kept, divided, interpolated) occur, within float32 rounding of the float64
    transcription; linear divides by factor; the default keeps its closed form."""
    scaling = (("factor", 8.0), ("high_freq_factor", 4.0), ("low_freq_factor", 1.0),
               ("original_max_position_embeddings", 8192), ("rope_type", "llama3"))
    cfg = ModelConfig(vocab_size=10, width=512, num_heads=4, positions="rotary",
                      rope_theta=500000.0, rope_scaling=scaling)
    got = rope_inv_freq(cfg)
    assert got.dtype == np.float32 and got.shape == (64,)
    base = ref_inv_freq(128, 500000.0, None)
    want = ref_inv_freq(128, 500000.0, scaling)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)
    ratio = want / base
    assert np.any(ratio == 1) and np.any(np.isclose(ratio, 1 / 8))
    assert np.any((ratio < 1) & (ratio > 1 / 8) & ~np.isclose(ratio, 1 / 8))
    linear = ModelConfig(vocab_size=10, width=64, num_heads=2, positions="rotary",
                         rope_theta=1e6, rope_scaling={"rope_type": "linear", "factor": 3.0})
    np.testing.assert_allclose(rope_inv_freq(linear), ref_inv_freq(32, 1e6, None) / 3,
                               rtol=2e-6, atol=0)
    default = ModelConfig(vocab_size=10, width=64, num_heads=2, positions="rotary")
    np.testing.assert_array_equal(rope_inv_freq(default),
                                  10000.0 ** (-np.arange(0, 32, 2, dtype=np.float32) / 32))


def test_param_layout():
    """Shapes and presence of params per the config flags (the layout pretrained checkpoints
    are loaded into)."""
    model, params, _ = setup("qwen3", lora_rank=2)
    blk = params["blocks"][0]
    assert set(blk) == {"ln1", "ln2", "qkv", "out", "fc", "proj", "q_norm", "k_norm"}
    assert set(blk["ln1"]) == {"scale"} and set(params["ln_f"]) == {"scale"}
    assert blk["qkv"]["kernel"].shape == (32, (4 + 2 * 2) * 16) and "bias" not in blk["qkv"]
    assert blk["out"]["kernel"].shape == (64, 32) and "bias" not in blk["out"]
    assert blk["fc"]["kernel"].shape == (32, 80) and blk["proj"]["kernel"].shape == (40, 32)
    assert blk["q_norm"]["scale"].shape == (16,) and "head" in params and "wpe" not in params
    shapes = {t: (ab["a"].shape, ab["b"].shape) for t, ab in params["lora"][0].items()}
    assert shapes == {"q": ((32, 2), (2, 64)), "k": ((32, 2), (2, 32)), "v": ((32, 2), (2, 32)),
                      "o": ((64, 2), (2, 32)), "gate": ((32, 2), (2, 40)),
                      "up": ((32, 2), (2, 40)), "down": ((40, 2), (2, 32))}
    qwen2, p2, _ = setup("qwen2")
    assert p2["blocks"][0]["qkv"]["bias"].shape == ((4 + 2) * 8,)
    assert "bias" not in p2["blocks"][0]["out"] and "bias" not in p2["blocks"][0]["fc"]
    assert "head" not in setup("llama")[1]
    cache = qwen2.init_cache(2, 10)
    assert all(a.shape == (2, 1, 10, 8) for a in cache.k + cache.v)          # [B, K, S, hd]


# ----------------------------------------------------------------------------- decode cache

@pytest.mark.parametrize("lora_rank", [0, 2])
def test_cache_matches_forward_gqa_qk_norm(lora_rank):
    """GQA + q/k RMSNorm + RMSNorm + SwiGLU (+ adapters): the prompt prefilled, then one
    decode step per token, gives the full forward's logits at every position; with left
    padding."""
    model, params, forward = setup("qwen3", lora_rank)
    tokens, valid = left_padded(1, lengths=(9, 7, 5))    # every prompt has a real token
    P = 5
    full = np.asarray(forward(params, tokens, valid))
    prefill, decode = jax.jit(model.prefill), jax.jit(model.decode_step)
    logits, cache = prefill(params, tokens[:, :P], valid[:, :P], model.init_cache(B, T))
    got = [logits]
    for t in range(P, T):
        logits, cache = decode(params, tokens[:, t], cache)
        got.append(logits)
    got = np.stack(got, 1)                                   # predicts tokens P .. T
    real = np.asarray(valid)[:, P - 1:]                      # rows whose query was real
    np.testing.assert_allclose(got[real], full[:, P - 1:][real], atol=2e-5, rtol=1e-5)
    assert int(cache.index) == T
    # one token at a time through prefill, pads included (a row with no real token yet)
    tokens, valid = left_padded(2)
    full = np.asarray(forward(params, tokens, valid))
    real = np.asarray(valid)
    cache = model.init_cache(B, T)
    for t in range(T):
        logits, cache = prefill(params, tokens[:, t:t + 1], valid[:, t:t + 1], cache)
        np.testing.assert_allclose(np.asarray(logits)[real[:, t]], full[real[:, t], t],
                                   atol=2e-5, rtol=1e-5, err_msg=f"position {t}")


# ----------------------------------------------------------------------------- LoRA

def test_lora_init_merge_and_base():
    model, params, forward = setup("llama", lora_rank=2)
    tokens, valid = left_padded(2)
    real = np.asarray(valid)
    plain = Transformer(ModelConfig(**BASE, **CONFIGS["llama"]))
    # init: the base is the adapter-free config's init; a ~ U(+-1/sqrt(d_in)), b = 0
    fresh = model.init(jax.random.PRNGKey(0))
    base0 = plain.init(jax.random.PRNGKey(0))
    for a, b in zip(jax.tree.leaves(without_lora(fresh)), jax.tree.leaves(base0)):
        np.testing.assert_array_equal(a, b)
    for target, ab in fresh["lora"][0].items():
        bound = 1 / math.sqrt(model.cfg.lora_shapes()[target][0])
        a = np.asarray(ab["a"])
        assert np.all(np.abs(a) <= bound) and np.abs(a).max() > 0.5 * bound
        assert np.all(np.asarray(ab["b"]) == 0)
    np.testing.assert_array_equal(jax.jit(model.forward)(fresh, tokens, valid),
                                  jax.jit(model.forward)(without_lora(fresh), tokens, valid))

    adapted = np.asarray(forward(params, tokens, valid))
    np.testing.assert_allclose(adapted[real], ref_forward(model.cfg, params, tokens, valid)[real],
                               atol=1e-5, rtol=1e-5)
    merged = merge_lora(model, params)
    assert "lora" not in merged and "lora" in params
    np.testing.assert_allclose(np.asarray(forward(merged, tokens, valid))[real], adapted[real],
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(forward(merge_lora(model.cfg, params), tokens,
                                                  valid))[real], adapted[real], atol=1e-5,
                               rtol=1e-5)
    base = without_lora(params)
    assert "lora" not in base and base["wte"] is params["wte"]
    np.testing.assert_array_equal(forward(base, tokens, valid),
                                  jax.jit(plain.forward)(base, tokens, valid))
    assert np.abs(adapted[real] - np.asarray(forward(base, tokens, valid))[real]).max() > 0.1


def test_lora_gelu_builtin_merge():
    """The built-in (gelu) model with adapters: "gate" is skipped, "up" is fc; merge equals
    the adapted forward."""
    model, params, forward = setup("builtin", lora_rank=2)
    assert set(params["lora"][0]) == {"q", "k", "v", "o", "up", "down"}
    tokens, valid = left_padded(3)
    real = np.asarray(valid)
    adapted = np.asarray(forward(params, tokens, valid))
    np.testing.assert_allclose(adapted[real], ref_forward(model.cfg, params, tokens, valid)[real],
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(forward(merge_lora(model, params), tokens,
                                                  valid))[real], adapted[real], atol=1e-5,
                               rtol=1e-5)


def test_lora_gradients_reach_only_the_adapters():
    model, params, _ = setup("qwen2", lora_rank=2)
    tokens, valid = left_padded(4)
    completion = jnp.asarray(np.random.default_rng(0).integers(1, V, (B, 4)), jnp.int32)

    def loss(p):
        return -model.token_logp(p, tokens, valid, completion, 1.0)[0].sum()
    g = jax.jit(jax.grad(loss))(params)
    for leaf in jax.tree.leaves(without_lora(g)):
        assert np.all(np.asarray(leaf) == 0)
    for blk in g["lora"]:
        for ab in blk.values():
            assert np.abs(np.asarray(ab["a"])).max() > 0 and np.abs(np.asarray(ab["b"])).max() > 0
    # without adapters, the same loss trains the base
    g0 = jax.jit(jax.grad(loss))(without_lora(params))
    assert np.abs(np.asarray(g0["blocks"][0]["qkv"]["kernel"])).max() > 0


def test_lora_errors():
    model, params, _ = setup("qwen2", lora_rank=2)
    plain = Transformer(ModelConfig(**BASE, **CONFIGS["qwen2"]))
    with pytest.raises(ValueError, match="lora_rank"):
        plain.forward(params, jnp.ones((1, 3), jnp.int32))
    with pytest.raises(ValueError, match="lora_rank"):
        plain.init_lora(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="lora_rank"):
        merge_lora(plain, params)
    with pytest.raises(TypeError):
        merge_lora({"lora_rank": 2}, params)


# ----------------------------------------------------------------------------- sampling

def hf_top_k(scores, top_k):
    """transformers' TopKLogitsWarper (min_tokens_to_keep 1, filter value -inf)."""
    top_k = min(max(top_k, 1), scores.shape[-1])
    kth = -np.sort(-scores, -1)[..., top_k - 1:top_k]
    return np.where(scores < kth, -np.inf, scores)


def hf_top_p(scores, top_p):
    """transformers' TopPLogitsWarper (min_tokens_to_keep 1, filter value -inf), float32."""
    order = np.argsort(scores, -1, kind="stable")
    sorted_logits = np.take_along_axis(scores, order, -1)
    e = np.exp(sorted_logits - sorted_logits.max(-1, keepdims=True))
    cum = np.cumsum(e / e.sum(-1, keepdims=True), -1, dtype=np.float32)
    remove_sorted = cum <= np.float32(1 - top_p)
    remove_sorted[..., -1:] = False
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, -1)
    return np.where(remove, -np.inf, scores)


def test_filter_logits_matches_transformers_warpers():
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (64, 50)) * 2.0, np.float32)
    f = jax.jit(filter_logits, static_argnums=(1, 2))
    for top_k in (0, 1, 5, 50, 80):
        for top_p in (1.0, 0.95, 0.7, 0.3, 0.01):
            want = z
            if top_k:
                want = hf_top_k(want, top_k)
            if top_p < 1.0:
                want = hf_top_p(want, top_p)
            got = np.asarray(f(jnp.asarray(z), top_k, top_p))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want),
                                          err_msg=f"top_k={top_k} top_p={top_p}")
            np.testing.assert_array_equal(got[~np.isinf(got)], z[~np.isinf(got)])
            kept = (~np.isinf(got)).sum(-1)
            assert kept.min() >= 1
            if top_k:
                assert kept.max() <= max(top_k, 1) or top_k >= 50


@functools.cache
def sampler(name="llama"):
    model, params, forward = setup(name)
    M = 6

    @functools.partial(jax.jit, static_argnames=("top_k", "top_p"))
    def gen(params, key, tokens, valid, temperature, eos_id, greedy, top_k=0, top_p=1.0):
        return model.generate(params, key, tokens, valid, M, temperature, eos_id, greedy,
                              top_k=top_k, top_p=top_p)
    return model, params, forward, gen, M, jax.jit(model.token_logp)


def test_top_k_1_is_greedy():
    model, params, _, gen, M, _ = sampler()
    tokens, valid = left_padded(5)
    greedy = gen(params, jax.random.PRNGKey(0), tokens, valid, 0.8, V + 1, True)
    for k in range(3):
        sampled = gen(params, jax.random.PRNGKey(k), tokens, valid, 0.8, V + 1, False, top_k=1)
        np.testing.assert_array_equal(sampled[0], greedy[0])
        np.testing.assert_allclose(sampled[1], greedy[1], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(sampled[2], greedy[2])
    assert np.all(np.asarray(greedy[1]) < 0)                  # unfiltered: not log(1) = 0


@pytest.mark.parametrize("top_k, top_p", [(0, 0.6), (4, 1.0), (6, 0.8)])
def test_top_k_top_p_sampling(top_k, top_p):
    """The first token's frequencies (64 keys x 3 prompts x 3 copies) follow the filtered,
    renormalised softmax(logits / T) (nothing outside it is drawn); every recorded logp is
    the UNFILTERED log-prob, as token_logp recomputes it."""
    model, params, forward, gen, M, token_logp = sampler()
    tokens, valid = left_padded(6)
    tokens, valid = jnp.tile(tokens, (3, 1)), jnp.tile(valid, (3, 1))
    temperature = 1.3
    firsts, outs = [], []
    for k in range(64):
        out = gen(params, jax.random.PRNGKey(k), tokens, valid, temperature, V + 1, False,
                  top_k=top_k, top_p=top_p)
        firsts.append(np.asarray(out[0][:, 0]))
        outs.append(out)
    first = np.stack(firsts)                                   # [64, 9]
    z = np.asarray(forward(params, tokens, valid))[:, -1] / temperature
    filtered = np.asarray(filter_logits(jnp.asarray(z), top_k, top_p))
    p = np.asarray(jax.nn.softmax(filtered))                   # [9, V]
    for row in range(3):                                       # one prompt: 3 copies x 64 keys
        drawn = first[:, row::3].ravel()
        freq = np.bincount(drawn, minlength=V) / drawn.size
        assert np.all(freq[p[row] == 0] == 0)
        tol = 4 * np.sqrt(p[row] * (1 - p[row]) / drawn.size) + 2e-3
        assert np.all(np.abs(freq - p[row]) < tol), (freq, p[row])
    assert (p > 0).sum(-1).max() < V                           # the filter removed tokens
    for completion, logp, _ in outs[:4]:
        want, _ = token_logp(params, tokens, valid, completion, temperature, V + 1)
        np.testing.assert_allclose(logp, want, atol=2e-5, rtol=0)


def test_several_eos_ids():
    """eos_id as a tuple: a completion ends at its first token in the set, equal to the
    one-id run up to that token (the same keys), PAD and logp 0 after; token_logp and
    completion lengths agree."""
    model, params, _, gen, M, token_logp = sampler()
    tokens, valid = left_padded(7)
    tokens, valid = jnp.tile(tokens, (4, 1)), jnp.tile(valid, (4, 1))
    key = jax.random.PRNGKey(3)
    never = gen(params, key, tokens, valid, 1.5, V + 1, False)
    c = np.asarray(never[0])
    assert np.all(np.asarray(never[2]) == M)
    counts = np.bincount(c.ravel(), minlength=V)
    eos = tuple(int(i) for i in np.argsort(-counts)[:2])       # the two most drawn tokens
    out = gen(params, key, tokens, valid, 1.5, jnp.asarray(eos, jnp.int32), False)
    comp, logp, length = map(np.asarray, out)
    hit = np.isin(c, eos)
    want_len = np.where(hit.any(1), hit.argmax(1), M)
    np.testing.assert_array_equal(length, want_len)
    assert 0 < (want_len < M).sum() and np.any(want_len > 0)
    keep = np.arange(M)[None] <= want_len[:, None]
    np.testing.assert_array_equal(comp[keep], c[keep])
    assert np.all(comp[~keep] == 0) and np.all(logp[~keep] == 0)
    np.testing.assert_allclose(logp[keep], np.asarray(never[1])[keep], atol=1e-6, rtol=0)
    tl, ent = token_logp(params, tokens, valid, jnp.asarray(comp), 1.5, eos)
    np.testing.assert_allclose(tl, logp, atol=2e-5, rtol=0)
    assert np.all(np.asarray(ent)[~keep] == 0)
    # a tuple of ints (traced under jit) is the same as the int array
    same = gen(params, key, tokens, valid, 1.5, eos, False)
    np.testing.assert_array_equal(same[0], comp)


@pytest.mark.parametrize("kwargs, field", [
    ({"top_k": -1}, "top_k"), ({"top_k": 2.0}, "top_k"), ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"), ({"eos_id": ()}, "eos_id"),
])
def test_generate_bad_sampling_args(kwargs, field):
    model, params, _ = setup("builtin")
    tokens, valid = left_padded()
    with pytest.raises(ValueError, match=field):
        model.generate(params, jax.random.PRNGKey(0), tokens, valid, 3, **kwargs)


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("kwargs, field", [
    ({"num_kv_heads": 3}, "num_kv_heads"),
    ({"num_kv_heads": 0}, "num_kv_heads"),
    ({"head_size": 0}, "head_size"),
    ({"positions": "rotary", "head_size": 5}, "positions"),
    ({"mlp_width": -4}, "mlp_width"),
    ({"activation": "relu"}, "activation"),
    ({"norm": "batchnorm"}, "norm"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"qkv_bias": 1}, "qkv_bias"),
    ({"out_bias": None}, "out_bias"),
    ({"mlp_bias": "no"}, "mlp_bias"),
    ({"qk_norm": 0}, "qk_norm"),
    ({"rope_theta": 0.0}, "rope_theta"),
    ({"positions": "rotary", "rope_scaling": (("rope_type", "yarn"), ("factor", 2.0))}, "yarn"),
    ({"positions": "rotary", "rope_scaling": {"type": "dynamic", "factor": 2.0}}, "dynamic"),
    ({"positions": "rotary", "rope_scaling": {"rope_type": "linear"}}, "factor"),
    ({"positions": "rotary", "rope_scaling": dict(LLAMA3[:2] + LLAMA3[3:])},
     "low_freq_factor"),
    ({"positions": "rotary", "rope_scaling": {"rope_type": "linear", "factor": -1.0}},
     "factor"),
    ({"positions": "rotary", "rope_scaling": "linear"}, "rope_scaling"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rotary"),
    ({"lora_rank": -1}, "lora_rank"),
    ({"lora_rank": 2.5}, "lora_rank"),
    ({"lora_alpha": 0}, "lora_alpha"),
    ({"lora_targets": ("q", "x")}, "lora_targets"),
    ({"lora_targets": "q"}, "lora_targets"),
    ({"lora_targets": ("q", "q")}, "lora_targets"),
    ({"lora_rank": 4, "lora_targets": ("gate",)}, "lora_targets"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(vocab_size=10, width=32, num_heads=4, **kwargs)


def test_config_normalisation_and_defaults():
    cfg = ModelConfig(vocab_size=10, width=32, num_heads=4, positions="rotary",
                      rope_scaling={"rope_type": "linear", "factor": 2.0},
                      lora_targets=["q", "v"])
    assert cfg.rope_scaling == (("factor", 2.0), ("rope_type", "linear"))
    assert cfg.lora_targets == ("q", "v") and cfg.rope_type == "linear"
    assert hash(cfg) == hash(ModelConfig(vocab_size=10, width=32, num_heads=4,
                                         positions="rotary",
                                         rope_scaling=(("factor", 2.0), ("rope_type", "linear")),
                                         lora_targets=("q", "v")))
    d = ModelConfig(vocab_size=10, width=32, num_heads=4)
    assert (d.head_dim, d.kv_heads, d.mlp_dim, d.rope_type, d.lora_scale) == (8, 4, 128,
                                                                              "default", 0.0)
    assert d.lora_modules == ("q", "k", "v", "o", "up", "down")
    odd = ModelConfig(vocab_size=10, width=30, num_heads=4, head_size=8, num_kv_heads=2)
    assert odd.head_dim == 8 and odd.kv_heads == 2
