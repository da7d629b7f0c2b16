"""A decoder-only causal transformer for language-model GRPO (nanoGPT shape), in plain JAX.

``Transformer(cfg)`` is a hashable, static description of the model; its methods are pure
functions of ``params`` (a nested dict of float32 arrays, optax- and checkpoint-friendly), so
they jit, differentiate and vmap (over seeds, or over stacked params) like any JAX function::

    cfg = ModelConfig(vocab_size=task.tokenizer.vocab_size)
    model = Transformer(cfg)
    params = model.init(key)                            # or init(key, cfg)
    completion, logp, length = model.generate(params, key, prompt.tokens, prompt.tokens != PAD,
                                              task.max_new_tokens, temperature=1.0, eos_id=EOS)
    new_logp, entropy = model.token_logp(params, prompt.tokens, prompt.tokens != PAD,
                                         completion, temperature=1.0)

Shapes: B batch, T sequence, P prompt, M completion, V vocabulary, D width, H heads,
hd = D / H head width, L layers, S cache slots.

Architecture: token embedding (+ learned position embedding, or rotary position embedding on
queries and keys), ``num_layers`` pre-LayerNorm blocks ``x += attn(ln(x)); x += mlp(ln(x))``
(causal multi-head self-attention; MLP 4x wide with tanh-gelu), a final LayerNorm and an output
head (its own matrix, or the transposed token embedding with ``tie_embeddings``). Every dense
layer runs on activations flattened to 2-D [B*T, D]; the residual stream, LayerNorms, softmaxes
and logits are float32 whatever ``cfg.dtype`` (the dtype of the dense layers' inputs and
weights).

Padding: prompts are left-padded, and a ``valid`` [B, T] bool marks real tokens. A token's
position is the number of real tokens before it (``cumsum(valid) - 1``, clipped at 0), so a
prompt's first real token has position 0 however much padding it has; a query attends to the
real keys at or before it (a pad query, whose output is never used, attends to itself only, so
no softmax row is empty). Logits of real tokens thus do not depend on the amount of padding.

KV cache (``Cache``): keys and values, one [B, H, S, hd] array per layer, preallocated; a key
mask ``valid`` [B, S], each sequence's next position ``pos`` [B] and one write index ``index``
[] shared by the batch (prompts are left-padded to the same length, so every sequence writes
the same slot). ``prefill`` writes a chunk of tokens at ``index`` (normally the whole prompt
into an empty cache) and ``decode_step`` one token; slots at or past the write index are never
attended to. Shapes are static, so a decode step's attention runs over all S slots with the
unwritten ones masked: size the cache to what will be used (``generate`` uses S = P + M).
Each layer's cache is its own array, heads before slots, so a decode step writes one slot in
place and its attention reads the cache as it lies (no per-step copy or transpose of it).
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..checks import check_choice, check_count, fail
from .tokenizer import EOS, PAD

POSITIONS = ("learned", "rotary")

_MASKED = -1e30        # score of a masked key (finite: an all-masked row stays NaN-free)
_LN_EPS = 1e-5
_ROPE_BASE = 10000.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Transformer hyperparameters (frozen and hashable: a static argument or closure).

    ``max_len`` is the context length: the longest sequence (prompt plus completion) ``forward``,
    the cache and ``generate`` accept. ``positions`` is ``"learned"`` (a [max_len, D] embedding
    added to the tokens') or ``"rotary"`` (RoPE, rotate-half form, on queries and keys).
    ``dtype`` is the compute dtype of the dense layers (params are stored float32)."""
    vocab_size: int
    num_layers: int = 2
    width: int = 128
    num_heads: int = 4
    max_len: int = 64
    positions: str = "learned"
    dtype: type = jnp.float32
    tie_embeddings: bool = False

    def __post_init__(self):
        """The one check of a model's shape (``GRPOConfig``/``SFTConfig`` build this to check
        theirs): ``ValueError`` naming the field."""
        for name in ("vocab_size", "num_layers", "width", "num_heads", "max_len"):
            check_count(name, getattr(self, name))
        if self.width % self.num_heads:
            fail("num_heads", f"must divide width ({self.width}), got {self.num_heads}")
        check_choice("positions", self.positions, POSITIONS)
        if self.positions == "rotary" and self.head_dim % 2:
            fail("positions", f"'rotary' needs an even head dim (width / num_heads), got "
                 f"width={self.width}, num_heads={self.num_heads} (head dim {self.head_dim})")
        try:
            floating = jnp.issubdtype(jnp.dtype(self.dtype), jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            fail("dtype", f"must be a floating dtype, got {self.dtype!r}")
        if not isinstance(self.tie_embeddings, bool):
            fail("tie_embeddings", f"must be a bool, got {self.tie_embeddings!r}")

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


class Cache(NamedTuple):
    """KV cache (a pytree). ``k``, ``v``: tuples of L arrays [B, H, S, hd] (one per layer) in
    ``cfg.dtype``; ``valid``: bool [B, S], slots holding real tokens; ``pos``: int32 [B], the
    position the next real token of each sequence gets (its count of real tokens so far);
    ``index``: int32 [], the next slot to write (the same for the whole batch)."""
    k: tuple
    v: tuple
    valid: jax.Array
    pos: jax.Array
    index: jax.Array


# ----------------------------------------------------------------------------- layers

def _layer_norm(x, p):
    """x float32 [N, D] -> [N, D]."""
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(-1, keepdims=True)
    return xc * jax.lax.rsqrt(var + _LN_EPS) * p["scale"] + p["bias"]


def _positions(valid, start=0):
    """valid bool [B, T], start int32 [B] or 0 -> int32 [B, T]: ``start + cumsum(valid) - 1``,
    clipped at 0 (the position of each real token; pads get their neighbour's, or 0)."""
    pos = jnp.cumsum(valid.astype(jnp.int32), axis=1) - 1
    if not isinstance(start, int):
        pos = pos + start[:, None]
    return jnp.maximum(pos, 0)


def _rope(x, cos, sin):
    """Rotate-half RoPE. x [B, T, H, hd]; cos, sin float32 [B, T, 1, hd/2] -> [B, T, H, hd]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


def _rope_tables(pos, head_dim):
    """pos int32 [B, T] -> cos, sin float32 [B, T, 1, hd/2]."""
    inv_freq = _ROPE_BASE ** (-np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
    angle = pos[..., None, None].astype(jnp.float32) * inv_freq
    return jnp.cos(angle), jnp.sin(angle)


def _length(completion, eos_id):
    """int [B, M] -> int32 [B]: index of the first eos_id, M if none (``completion_length``)."""
    is_eos = completion == eos_id
    return jnp.where(is_eos.any(-1), jnp.argmax(is_eos, -1), completion.shape[-1]).astype(jnp.int32)


@jax.custom_batching.custom_vmap
def _all_members(x):
    """``jnp.all(x)``, and vmapped, the all of every member's: one unbatched bool. A decode
    loop conditioned on it stays one loop with a scalar condition under vmap (seeds), running
    until every member is done; with a batched condition, vmap would instead select every
    member's whole carry (the KV cache) at each step, which costs more than the step."""
    return jnp.all(x)


@_all_members.def_vmap
def _all_members_vmap(axis_size, in_batched, x):
    return _all_members(x), False


def _softmax_rows(s, allowed):
    """Scores float32 [..., K] and allowed bool (broadcasting) -> softmax over K of the
    allowed scores (masked keys get exactly 0)."""
    s = jnp.where(allowed, s, _MASKED)
    return jax.nn.softmax(s, axis=-1)


class Transformer:
    """Decoder-only causal transformer with config ``cfg``; methods are pure functions of
    ``params``. Hashable by ``cfg`` (close over it, or pass it as a static argument)."""

    def __init__(self, cfg: ModelConfig):
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"Transformer: cfg must be a ModelConfig, got {type(cfg).__name__}")
        self.cfg = cfg

    def __eq__(self, other):
        return isinstance(other, Transformer) and other.cfg == self.cfg

    def __hash__(self):
        return hash(("Transformer", self.cfg))

    def __repr__(self):
        return f"Transformer({self.cfg!r})"

    # ------------------------------------------------------------------------- params

    def init(self, key) -> dict:
        """key -> params: GPT-2 init (weights normal(0, 0.02), the two residual projections of
        each block normal(0, 0.02 / sqrt(2 L)); biases 0, LayerNorm scales 1). Layout::

            wte [V, D]; wpe [max_len, D] (learned positions only)
            blocks: list of L dicts: ln1, ln2 {scale, bias [D]}; qkv {kernel [D, 3D], bias};
                    out {kernel [D, D], bias}; fc {kernel [D, 4D], bias}; proj {kernel [4D, D],
                    bias}   (qkv's columns are q | k | v, each head-major: [3, H, hd])
            ln_f {scale, bias [D]}; head [D, V] (untied only)
        """
        c = self.cfg
        D, L = c.width, c.num_layers
        std, proj_std = 0.02, 0.02 / math.sqrt(2 * L)
        # Every weight from one normal draw (one random kernel: many separate draws make the
        # compile several seconds longer), sliced in this order.
        shapes = [((c.vocab_size, D), std)]
        if c.positions == "learned":
            shapes.append(((c.max_len, D), std))
        shapes += [((D, 3 * D), std), ((D, D), proj_std), ((D, 4 * D), std),
                   ((4 * D, D), proj_std)] * L
        if not c.tie_embeddings:
            shapes.append(((D, c.vocab_size), std))
        sizes = [math.prod(shape) for shape, _ in shapes]
        z = jax.random.normal(key, (sum(sizes),), jnp.float32)
        offsets = np.cumsum([0] + sizes)
        weights = iter([s * z[o:o + n].reshape(shape)
                        for (shape, s), o, n in zip(shapes, offsets, sizes)])

        def dense(d_out):
            return {"kernel": next(weights), "bias": jnp.zeros(d_out, jnp.float32)}

        def ln():
            return {"scale": jnp.ones(D, jnp.float32), "bias": jnp.zeros(D, jnp.float32)}

        params = {"wte": next(weights)}
        if c.positions == "learned":
            params["wpe"] = next(weights)
        params["blocks"] = [
            {"ln1": ln(), "qkv": dense(3 * D), "out": dense(D), "ln2": ln(), "fc": dense(4 * D),
             "proj": dense(D)}
            for _ in range(L)]
        params["ln_f"] = ln()
        if not c.tie_embeddings:
            params["head"] = next(weights)
        return params

    # ------------------------------------------------------------------------- pieces

    def _dense(self, x, p):
        """x [N, d_in] -> float32 [N, d_out]."""
        dt = self.cfg.dtype
        return jnp.dot(x.astype(dt), p["kernel"].astype(dt),
                       preferred_element_type=jnp.float32) + p["bias"]

    def _embed(self, params, tokens, pos):
        """tokens, pos int32 [B, T] -> float32 [B*T, D]."""
        x = params["wte"][tokens.reshape(-1)]
        if self.cfg.positions == "learned":
            x = x + params["wpe"][pos.reshape(-1)]
        return x

    def _head(self, params, x):
        """Final hidden float32 [N, D] -> logits float32 [N, V]."""
        h = _layer_norm(x, params["ln_f"]).astype(self.cfg.dtype)
        if self.cfg.tie_embeddings:
            w = params["wte"].astype(self.cfg.dtype)
            return jnp.einsum("nd,vd->nv", h, w, preferred_element_type=jnp.float32)
        return jnp.dot(h, params["head"].astype(self.cfg.dtype),
                       preferred_element_type=jnp.float32)

    def _qkv(self, p, x, B, T, rope):
        """Block params, x float32 [B*T, D] -> q, k, v [B, T, H, hd] (cfg.dtype), RoPE'd."""
        c = self.cfg
        qkv = self._dense(_layer_norm(x, p["ln1"]), p["qkv"]).astype(c.dtype)
        qkv = qkv.reshape(B, T, 3, c.num_heads, c.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if rope is not None:
            q, k = _rope(q, *rope), _rope(k, *rope)
        return q, k, v

    def _mlp(self, p, x):
        """Residual MLP: x float32 [N, D] -> x + mlp(ln(x))."""
        h = jax.nn.gelu(self._dense(_layer_norm(x, p["ln2"]), p["fc"]))
        return x + self._dense(h, p["proj"])

    def _attend(self, q, k, v, allowed):
        """q [B, T, H, hd]; k, v [B, H, K, hd]; allowed bool [B, T, K] -> float32 [B*T, D]."""
        B, T = q.shape[:2]
        scale = 1.0 / math.sqrt(self.cfg.head_dim)
        s = jnp.einsum("bqhd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
        w = _softmax_rows(s, allowed[:, None]).astype(q.dtype)
        o = jnp.einsum("bhqk,bhkd->bqhd", w, v, preferred_element_type=jnp.float32)
        return o.reshape(B * T, -1)

    def _check_len(self, n, what):
        if n > self.cfg.max_len:
            raise ValueError(f"{what} ({n}) exceeds the model's max_len ({self.cfg.max_len})")

    # ------------------------------------------------------------------------- full forward

    def hidden(self, params, tokens, valid=None):
        """Final residual stream (before the final LayerNorm): tokens int [B, T], valid bool
        [B, T] (default all real) -> float32 [B*T, D]. See ``forward``."""
        c = self.cfg
        B, T = tokens.shape
        self._check_len(T, "sequence length")
        valid = jnp.ones((B, T), bool) if valid is None else valid.astype(bool)
        pos = _positions(valid)
        rope = _rope_tables(pos, c.head_dim) if c.positions == "rotary" else None
        i = jnp.arange(T)
        allowed = (i[:, None] >= i[None, :]) & (valid[:, None, :] | (i[:, None] == i[None, :]))
        x = self._embed(params, tokens, pos)
        heads_first = lambda a: a.transpose(0, 2, 1, 3)       # [B, T, H, hd] -> [B, H, T, hd]
        for p in params["blocks"]:
            q, k, v = self._qkv(p, x, B, T, rope)
            x = x + self._dense(self._attend(q, heads_first(k), heads_first(v), allowed), p["out"])
            x = self._mlp(p, x)
        return x

    def forward(self, params, tokens, valid=None):
        """Causal forward over whole sequences: tokens int [B, T] (left-padded prompts, then
        anything), valid bool [B, T] (real tokens; default all) -> logits float32 [B, T, V],
        where ``logits[:, t]`` predicts token t + 1. Positions are ``cumsum(valid) - 1``
        (clipped at 0); each query attends to the real keys at or before it. Logits at pad
        positions are meaningless. T must be <= cfg.max_len."""
        B, T = tokens.shape
        return self._head(params, self.hidden(params, tokens, valid)).reshape(B, T, -1)

    __call__ = forward

    def token_logp(self, params, prompt_tokens, prompt_valid, completion, temperature=1.0,
                   eos_id: int = EOS):
        """Log-prob and entropy of each completion token under the temperature-scaled model,
        in one causal forward over prompt + completion (the learn phase's recomputation).

        prompt_tokens int [B, P], prompt_valid bool [B, P] (left-padded), completion int [B, M]
        (as ``generate`` returns it; every completion token counts as real), temperature
        float scalar (may be traced) -> logp float32 [B, M], ``log softmax(logits / T)`` at the
        completion token; entropy float32 [B, M] of ``softmax(logits / T)``. Both are 0 after
        the completion's first ``eos_id`` (``completion_length``), as in ``generate``; the EOS
        itself counts. P + M must be <= cfg.max_len."""
        B, P = prompt_tokens.shape
        M = completion.shape[1]
        tokens = jnp.concatenate([prompt_tokens, completion], 1).astype(jnp.int32)
        valid = jnp.concatenate([prompt_valid.astype(bool), jnp.ones((B, M), bool)], 1)
        x = self.hidden(params, tokens, valid).reshape(B, P + M, -1)
        x = x[:, P - 1:P + M - 1].reshape(B * M, -1)          # the states predicting completion
        z = self._head(params, x).reshape(B, M, -1) / temperature
        logz = jax.nn.logsumexp(z, -1)
        logp = jnp.take_along_axis(z, completion[..., None].astype(jnp.int32), -1)[..., 0] - logz
        probs = jnp.exp(z - logz[..., None])
        entropy = logz - (probs * z).sum(-1)
        keep = jnp.arange(M) <= _length(completion, eos_id)[:, None]
        return jnp.where(keep, logp, 0.0), jnp.where(keep, entropy, 0.0)

    # ------------------------------------------------------------------------- KV cache

    def init_cache(self, batch: int, max_len: int | None = None) -> Cache:
        """An empty cache for ``batch`` sequences of up to ``max_len`` (default cfg.max_len,
        at most cfg.max_len) tokens, prompt included."""
        c = self.cfg
        S = c.max_len if max_len is None else max_len
        self._check_len(S, "cache length")
        zeros = lambda: tuple(jnp.zeros((batch, c.num_heads, S, c.head_dim), c.dtype)
                              for _ in range(c.num_layers))
        return Cache(k=zeros(), v=zeros(),
                     valid=jnp.zeros((batch, S), bool), pos=jnp.zeros(batch, jnp.int32),
                     index=jnp.zeros((), jnp.int32))

    def _extend(self, params, tokens, valid, cache):
        """Run a chunk tokens int [B, T], valid bool [B, T] at the cache's write index ->
        (final hidden float32 [B*T, D], cache with the chunk written and index advanced by T).
        The chunk attends to the cache's real slots before it and causally within itself."""
        c = self.cfg
        B, T = tokens.shape
        S = cache.valid.shape[1]
        index = cache.index
        pos = _positions(valid, cache.pos)
        rope = _rope_tables(pos, c.head_dim) if c.positions == "rotary" else None
        kv_valid = jax.lax.dynamic_update_slice(cache.valid, valid, (0, index))
        slot, qslot = jnp.arange(S), index + jnp.arange(T)
        allowed = ((slot[None, :] <= qslot[:, None])
                   & (kv_valid[:, None, :] | (slot[None, :] == qslot[:, None])))   # [B, T, S]
        x = self._embed(params, tokens, pos)
        zero = jnp.zeros((), jnp.int32)
        at = (zero, zero, index, zero)
        write = lambda cached, new: jax.lax.dynamic_update_slice(
            cached, new.transpose(0, 2, 1, 3).astype(cached.dtype), at)
        ks, vs = [], []
        for p, k_cache, v_cache in zip(params["blocks"], cache.k, cache.v):
            q, k, v = self._qkv(p, x, B, T, rope)
            ks.append(write(k_cache, k))
            vs.append(write(v_cache, v))
            x = x + self._dense(self._attend(q, ks[-1], vs[-1], allowed), p["out"])
            x = self._mlp(p, x)
        new = Cache(tuple(ks), tuple(vs), kv_valid, cache.pos + valid.sum(1, dtype=jnp.int32), index + T)
        return x, new

    def prefill(self, params, tokens, valid, cache):
        """Run the (left-padded) prompts through the cache: tokens int [B, P], valid bool
        [B, P], cache (normally empty) -> (logits float32 [B, V] after the last prompt token,
        cache). With a non-empty cache the chunk continues the cached sequences."""
        B, T = tokens.shape
        x, cache = self._extend(params, tokens.astype(jnp.int32), valid.astype(bool), cache)
        return self._head(params, x.reshape(B, T, -1)[:, -1]), cache

    def decode_step(self, params, token, cache):
        """Append one real token per sequence: token int [B], cache -> (logits float32 [B, V]
        predicting the next token, cache). The caller keeps index < S."""
        x, cache = self._extend(params, token[:, None].astype(jnp.int32),
                                jnp.ones((token.shape[0], 1), bool), cache)
        return self._head(params, x), cache

    # ------------------------------------------------------------------------- sampling

    def generate(self, params, key, prompt_tokens, prompt_valid, max_new_tokens: int,
                 temperature=1.0, eos_id: int = EOS, greedy: bool = False,
                 early_stop: bool = True):
        """Sample completions with the KV cache: one prefill, then up to ``max_new_tokens - 1``
        decode steps in a ``lax.while_loop``, which stops as soon as every sequence of the
        batch has drawn its EOS (``early_stop=False``: always ``max_new_tokens - 1`` steps; the
        outputs are the same bit for bit, only the time differs).

        prompt_tokens int [B, P], prompt_valid bool [B, P] (left-padded), max_new_tokens M
        (static), temperature float scalar (> 0), eos_id int and greedy bool (all three may be
        traced), early_stop bool (static) -> completion int32 [B, M], logp float32 [B, M],
        length int32 [B]. Tokens are drawn from ``softmax(logits / temperature)`` (argmax of the
        logits with ``greedy``); logp is the drawn token's log-prob under that
        temperature-scaled distribution (for greedy too). After a sequence's first EOS, tokens
        are PAD and logp 0; ``length`` counts the tokens before the first EOS (M if none), as
        ``completion_length``. P + M must be <= cfg.max_len. Vmappable over keys and params
        (e.g. one per seed): vmapped, the loop runs until every sequence of every member has
        ended (a member already done decodes on, drawing PAD and 0 as the full decode does).

        Randomness: the M step keys are split from ``key`` up front and step t draws with key
        t whether or not the loop stops early, so a stopped decode writes exactly the tokens
        and log-probs the full-length one does (the steps it skips would all write PAD and 0,
        which the output buffers already hold)."""
        B, P = prompt_tokens.shape
        M = int(max_new_tokens)
        if M < 1:
            raise ValueError(f"generate: max_new_tokens must be >= 1, got {max_new_tokens}")
        if not isinstance(early_stop, bool):
            raise TypeError(f"generate: early_stop must be a bool (static), got {early_stop!r}")
        self._check_len(P + M, "prompt + max_new_tokens")
        logits, cache = self.prefill(params, prompt_tokens, prompt_valid,
                                     self.init_cache(B, P + M))
        keys = jax.random.split(key, M)

        def sample(logits, key, done):
            z = logits / temperature
            tok = jnp.where(greedy, jnp.argmax(z, -1), jax.random.categorical(key, z))
            tok = tok.astype(jnp.int32)
            lp = jnp.take_along_axis(jax.nn.log_softmax(z), tok[:, None], -1)[:, 0]
            tok, lp = jnp.where(done, PAD, tok), jnp.where(done, 0.0, lp)
            return tok, lp, done | (tok == eos_id)

        tok0, lp0, done0 = sample(logits, keys[0], jnp.zeros(B, bool))
        # [M, B] buffers (step-major: a step writes one contiguous row), PAD and 0 where no
        # step writes
        toks = jnp.full((M, B), PAD, jnp.int32).at[0].set(tok0)
        lps = jnp.zeros((M, B), jnp.float32).at[0].set(lp0)

        def more(carry):
            t, _, done = carry[:3]
            return (t < M) & ~_all_members(done) if early_stop else t < M

        def step(carry):
            t, tok, done, cache, toks, lps = carry
            logits, cache = self.decode_step(params, tok, cache)
            tok, lp, done = sample(logits, keys[t], done)
            return t + 1, tok, done, cache, toks.at[t].set(tok), lps.at[t].set(lp)

        *_, toks, lps = jax.lax.while_loop(more, step, (jnp.int32(1), tok0, done0, cache,
                                                        toks, lps))
        completion, logp = toks.T, lps.T
        return completion, logp, _length(completion, eos_id)


def init(key, cfg: ModelConfig) -> dict:
    """``Transformer(cfg).init(key)``: GPT-2-initialised params."""
    return Transformer(cfg).init(key)
