"""A decoder-only causal transformer for language-model GRPO, in plain JAX: the built-in
nanoGPT-shaped model and the GPT-2, Llama (Llama 3's RoPE scaling, tied embeddings), Qwen2
(q/k/v biases) and Qwen3 (q/k RMSNorm) architectures, one code path, with LoRA adapters.

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

Shapes: B batch, T sequence, P prompt, M completion, V vocabulary, D width, H query heads,
K key/value heads (``num_kv_heads``; K divides H, query head h reads key/value head
h // (H / K)), hd head width (``head_dim``, D / H by default), F MLP width (``mlp_width``, 4 D
by default), L layers, S cache slots, r LoRA rank.

Architecture: token embedding (+ learned position embedding, or rotary position embedding on
queries and keys), ``num_layers`` pre-norm blocks ``x += attn(norm(x)); x += mlp(norm(x))``
(causal grouped-query self-attention; an MLP fc -> tanh-gelu -> proj, or SwiGLU
``proj(silu(gate) * up)``), a final norm and an output head (its own matrix, or the
transposed token embedding with ``tie_embeddings``). Norms are LayerNorm or RMSNorm
(``norm``); ``qk_norm`` adds an RMSNorm over each head of the queries and keys (before RoPE);
dense layers have biases or not per ``qkv_bias``, ``out_bias``, ``mlp_bias``. The defaults are
the built-in model (GPT-2's layout: LayerNorm, gelu, every bias, K = H). Every dense layer runs
on activations flattened to 2-D [B*T, D]; the residual stream, norms, softmaxes and logits are
float32 whatever ``cfg.dtype`` (the dtype of the dense layers' inputs and weights).

RoPE (rotate-half form, as Llama's): inverse frequencies ``rope_theta ** (-2i / hd)``
(float32; within one float32 rounding of transformers' ``1 / rope_theta ** (2i / hd)``), then
transformers' ``"linear"`` or ``"llama3"`` scaling when ``rope_scaling`` says so.

LoRA: when ``params`` has a ``"lora"`` entry (``init`` makes one when ``lora_rank > 0``), each
targeted projection adds ``(x @ a) @ b * lora_alpha / lora_rank`` to its output, and the base
weights are behind ``stop_gradient`` (only the adapters get gradients). ``without_lora(params)``
is the base model (the KL reference, no second copy of the weights); ``merge_lora`` folds the
adapters into the kernels.

Padding: prompts are left-padded, and a ``valid`` [B, T] bool marks real tokens. A token's
position is the number of real tokens before it (``cumsum(valid) - 1``, clipped at 0), so a
prompt's first real token has position 0 however much padding it has; a query attends to the
real keys at or before it (a pad query, whose output is never used, attends to itself only, so
no softmax row is empty). Logits of real tokens thus do not depend on the amount of padding.

KV cache (``Cache``): keys and values, one [B, K, S, hd] array per layer, preallocated; a key
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

from ..checks import check_choice, check_count, check_number, fail
from .tokenizer import EOS, PAD

POSITIONS = ("learned", "rotary")
ACTIVATIONS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")
ROPE_TYPES = ("default", "linear", "llama3")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
# the keys each supported rope_type needs (besides rope_type)
_ROPE_KEYS = {"default": (), "linear": ("factor",),
              "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                         "original_max_position_embeddings")}

_MASKED = -1e30        # score of a masked key (finite: an all-masked row stays NaN-free)


def _check_bool(name, v):
    if not isinstance(v, bool):
        fail(name, f"must be a bool, got {v!r}")


def _optional_count(name, v):
    if v is not None:
        check_count(name, v)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Transformer hyperparameters (frozen and hashable: a static argument or closure).

    ``max_len`` is the context length: the longest sequence (prompt plus completion) ``forward``,
    the cache and ``generate`` accept. ``positions`` is ``"learned"`` (a [max_len, D] embedding
    added to the tokens') or ``"rotary"`` (RoPE, rotate-half form, on queries and keys).
    ``dtype`` is the compute dtype of the dense layers (params are stored float32).

    Architecture fields (the defaults are the built-in model, bit for bit):
    ``num_kv_heads`` K (None: ``num_heads``; must divide it: grouped-query attention);
    ``head_size`` (None: width // num_heads; the property ``head_dim`` is the effective value);
    ``mlp_width`` F (None: 4 * width); ``activation`` ``"gelu"`` (tanh approximation, GPT-2's
    gelu_new: fc -> gelu -> proj) or ``"swiglu"`` (fc kernel is gate|up [D, 2F];
    ``silu(gate) * up -> proj``); ``norm`` ``"layernorm"`` or ``"rmsnorm"``
    (``x * rsqrt(mean(x^2) + eps) * scale``, no bias) with ``norm_eps``; ``qkv_bias``,
    ``out_bias``, ``mlp_bias``: whether those dense layers have biases; ``qk_norm``: RMSNorm of
    each query and key head before RoPE (Qwen3); ``rope_theta``: RoPE base; ``rope_scaling``:
    transformers' ``rope_scaling`` dict as a sorted tuple of (key, value) pairs (a dict is
    converted), rope_type ``"default"``, ``"linear"`` (``factor``) or ``"llama3"``
    (``factor``, ``low_freq_factor``, ``high_freq_factor``,
    ``original_max_position_embeddings``).

    LoRA fields: ``lora_rank`` r (0: no adapters), ``lora_alpha`` (scale ``lora_alpha / r``, as
    peft), ``lora_targets``: a tuple of "q", "k", "v", "o" (attention projections), "gate",
    "up", "down" (MLP: SwiGLU's gate and up halves of fc, and proj; a gelu MLP has no gate, so
    "gate" is skipped there and "up" is its fc). ``lora_modules`` is the effective tuple."""
    vocab_size: int
    num_layers: int = 2
    width: int = 128
    num_heads: int = 4
    max_len: int = 64
    positions: str = "learned"
    dtype: type = jnp.float32
    tie_embeddings: bool = False
    num_kv_heads: int | None = None
    head_size: int | None = None
    mlp_width: int | None = None
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    qk_norm: bool = False
    rope_theta: float = 10000.0
    rope_scaling: tuple | None = None
    lora_rank: int = 0
    lora_alpha: float = 32.0
    lora_targets: tuple = LORA_TARGETS

    def __post_init__(self):
        """The one check of a model's shape (``GRPOConfig``/``SFTConfig`` build this to check
        theirs): ``ValueError`` naming the field."""
        for name in ("vocab_size", "num_layers", "width", "num_heads", "max_len"):
            check_count(name, getattr(self, name))
        for name in ("num_kv_heads", "head_size", "mlp_width"):
            _optional_count(name, getattr(self, name))
        if self.head_size is None and self.width % self.num_heads:
            fail("num_heads", f"must divide width ({self.width}), got {self.num_heads} (or set "
                 f"head_size)")
        if self.num_heads % self.kv_heads:
            fail("num_kv_heads", f"must divide num_heads ({self.num_heads}), got "
                 f"{self.num_kv_heads}")
        check_choice("positions", self.positions, POSITIONS)
        if self.positions == "rotary" and self.head_dim % 2:
            fail("positions", f"'rotary' needs an even head dim (head_size, or width / "
                 f"num_heads), got width={self.width}, num_heads={self.num_heads} (head dim "
                 f"{self.head_dim})")
        try:
            floating = jnp.issubdtype(jnp.dtype(self.dtype), jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            fail("dtype", f"must be a floating dtype, got {self.dtype!r}")
        for name in ("tie_embeddings", "qkv_bias", "out_bias", "mlp_bias", "qk_norm"):
            _check_bool(name, getattr(self, name))
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("norm", self.norm, NORMS)
        check_number("norm_eps", self.norm_eps, low=0, low_open=True)
        check_number("rope_theta", self.rope_theta, low=0, low_open=True)
        self._check_rope_scaling()
        check_count("lora_rank", self.lora_rank, low=0)
        check_number("lora_alpha", self.lora_alpha, low=0, low_open=True)
        targets = self.lora_targets
        if isinstance(targets, str) or not isinstance(targets, (tuple, list)):
            fail("lora_targets", f"must be a tuple of names from {list(LORA_TARGETS)}, got "
                 f"{targets!r}")
        object.__setattr__(self, "lora_targets", tuple(targets))
        for t in self.lora_targets:
            check_choice("lora_targets", t, LORA_TARGETS)
        if len(set(self.lora_targets)) < len(self.lora_targets):
            fail("lora_targets", f"names one projection twice: {self.lora_targets!r}")
        if self.lora_rank and not self.lora_modules:
            why = " (a gelu MLP has no 'gate')" if self.lora_targets == ("gate",) else ""
            fail("lora_targets", f"no projection of this model to adapt with lora_rank "
                 f"{self.lora_rank}: {self.lora_targets!r}{why}")

    def _check_rope_scaling(self):
        rs = self.rope_scaling
        if rs is None:
            return
        if isinstance(rs, dict):
            rs = tuple(sorted(rs.items()))
        try:
            d = dict(rs)
            if len(d) != len(rs):
                raise ValueError
        except (TypeError, ValueError):
            fail("rope_scaling", f"must be None, a dict or a tuple of (key, value) pairs, got "
                 f"{self.rope_scaling!r}")
        rs = tuple(sorted(d.items()))
        try:
            hash(rs)
        except TypeError:
            fail("rope_scaling", f"values must be hashable (numbers, strings), got {rs!r}")
        object.__setattr__(self, "rope_scaling", rs)
        kind = d.get("rope_type", d.get("type", "default"))
        if kind not in ROPE_TYPES:
            fail("rope_scaling", f"rope_type {kind!r} is not supported (supported: "
                 f"{', '.join(ROPE_TYPES)})")
        if self.positions != "rotary":
            fail("rope_scaling", f"needs positions='rotary', got positions={self.positions!r}")
        for key in _ROPE_KEYS[kind]:
            if key not in d:
                fail("rope_scaling", f"rope_type {kind!r} needs {key!r}, got {rs!r}")
            check_number(f"rope_scaling {key}", d[key], low=0, low_open=True)
        if kind == "llama3" and d["low_freq_factor"] == d["high_freq_factor"]:
            fail("rope_scaling", f"llama3's low_freq_factor and high_freq_factor must differ, "
                 f"got {rs!r}")
        if d.get("partial_rotary_factor", 1.0) != 1.0:
            fail("rope_scaling", f"partial_rotary_factor is not supported, got {rs!r}")

    @property
    def head_dim(self) -> int:
        """hd: ``head_size``, or width // num_heads."""
        return self.width // self.num_heads if self.head_size is None else self.head_size

    @property
    def kv_heads(self) -> int:
        """K: ``num_kv_heads``, or num_heads."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def mlp_dim(self) -> int:
        """F: ``mlp_width``, or 4 * width."""
        return 4 * self.width if self.mlp_width is None else self.mlp_width

    @property
    def rope_type(self) -> str:
        """``rope_scaling``'s rope_type ("default" without scaling)."""
        d = dict(self.rope_scaling or ())
        return d.get("rope_type", d.get("type", "default"))

    @property
    def lora_modules(self) -> tuple:
        """The LoRA targets this model has (``lora_targets`` less "gate" for a gelu MLP)."""
        return tuple(t for t in self.lora_targets if t != "gate" or self.activation == "swiglu")

    @property
    def lora_scale(self) -> float:
        """``lora_alpha / lora_rank`` (0 without adapters)."""
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

    def lora_shapes(self) -> dict:
        """{target: (d_in, d_out)} for ``lora_modules``."""
        H, K, hd, D, F = self.num_heads, self.kv_heads, self.head_dim, self.width, self.mlp_dim
        shapes = {"q": (D, H * hd), "k": (D, K * hd), "v": (D, K * hd), "o": (H * hd, D),
                  "gate": (D, F), "up": (D, F), "down": (F, D)}
        return {t: shapes[t] for t in self.lora_modules}


class Cache(NamedTuple):
    """KV cache (a pytree). ``k``, ``v``: tuples of L arrays [B, K, S, hd] (one per layer) in
    ``cfg.dtype``; ``valid``: bool [B, S], slots holding real tokens; ``pos``: int32 [B], the
    position the next real token of each sequence gets (its count of real tokens so far);
    ``index``: int32 [], the next slot to write (the same for the whole batch)."""
    k: tuple
    v: tuple
    valid: jax.Array
    pos: jax.Array
    index: jax.Array


# ----------------------------------------------------------------------------- layers

def _layer_norm(x, p, eps):
    """x float32 [N, D] -> [N, D]."""
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(-1, keepdims=True)
    return xc * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def _rms_norm(x, p, eps):
    """x [..., n] -> float32 [..., n]: ``x * rsqrt(mean(x^2) + eps) * scale`` in float32."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + eps) * p["scale"]


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


def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """float32 [hd/2]: RoPE's inverse frequencies ``rope_theta ** (-2i / hd)``, then scaled as
    transformers' ``_compute_linear_scaling_rope_parameters`` (divided by ``factor``) or
    ``_compute_llama3_parameters`` (wavelengths past ``original_max_position_embeddings /
    low_freq_factor`` divided by ``factor``, those under ``... / high_freq_factor`` kept, a
    smooth interpolation between) compute them, in float32."""
    hd = cfg.head_dim
    inv_freq = cfg.rope_theta ** (-np.arange(0, hd, 2, dtype=np.float32) / hd)
    kind, d = cfg.rope_type, dict(cfg.rope_scaling or ())
    if kind == "linear":
        inv_freq = inv_freq / np.float32(d["factor"])
    elif kind == "llama3":
        factor, low, high = d["factor"], d["low_freq_factor"], d["high_freq_factor"]
        old_context_len = d["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low
        high_freq_wavelen = old_context_len / high
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
        inv_freq = np.where(is_medium, smoothed, inv_freq_llama)
    return np.asarray(inv_freq, np.float32)


def _rope_tables(pos, inv_freq):
    """pos int32 [B, T], inv_freq float32 [hd/2] -> cos, sin float32 [B, T, 1, hd/2]."""
    angle = pos[..., None, None].astype(jnp.float32) * inv_freq
    return jnp.cos(angle), jnp.sin(angle)


def _eos_ids(eos_id):
    """An int, a tuple/list of ints or an int array (may be traced) -> int32 array, [] or [E]."""
    if isinstance(eos_id, (tuple, list)) and not eos_id:
        raise ValueError("eos_id: needs at least one token id, got an empty sequence")
    eos = jnp.asarray(eos_id)                  # a tuple of (traced) ints stacks to [E]
    if eos.ndim > 1:
        raise ValueError(f"eos_id: must be an int or a 1-D sequence of ints, got shape "
                         f"{eos.shape}")
    return eos


def _is_eos(tokens, eos):
    """tokens int [...], eos int32 [] or [E] -> bool [...]: the token is one of the EOS ids."""
    if eos.ndim == 0:
        return tokens == eos
    return (tokens[..., None] == eos).any(-1)


def _length(completion, eos_id):
    """int [B, M] -> int32 [B]: index of the first EOS (``eos_id``: one id or several), M if
    none (``completion_length``)."""
    is_eos = _is_eos(completion, _eos_ids(eos_id))
    return jnp.where(is_eos.any(-1), jnp.argmax(is_eos, -1), completion.shape[-1]).astype(jnp.int32)


def filter_logits(z, top_k: int = 0, top_p: float = 1.0):
    """Logits float32 [..., V] -> the same with the tokens outside the top-k, then outside the
    top-p nucleus, set to -inf (transformers' ``TopKLogitsWarper`` then ``TopPLogitsWarper``,
    applied in that order as its ``generate`` does; ``top_k`` 0 and ``top_p`` 1.0 are off).
    Top-k keeps the tokens whose logit is at least the k-th largest; top-p keeps the smallest
    set of most likely tokens whose probability (softmax of the top-k-filtered logits) sums to
    at least ``top_p``, and always the most likely one. Tokens tied with the last one kept
    are kept too (transformers breaks such ties by its sort order)."""
    V = z.shape[-1]
    if top_k and top_k < V:
        kth = jax.lax.top_k(z, top_k)[0][..., -1:]
        z = jnp.where(z < kth, -jnp.inf, z)
    if top_p < 1.0:
        ascending = jnp.sort(z, -1)
        cum = jnp.cumsum(jax.nn.softmax(ascending, -1), -1)
        # remove the prefix whose cumulative probability is <= 1 - top_p, keep the last one
        removed = jnp.minimum((cum <= 1 - top_p).sum(-1, keepdims=True), V - 1)
        threshold = jnp.take_along_axis(ascending, removed, -1)
        z = jnp.where(z < threshold, -jnp.inf, z)
    return z


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


# ----------------------------------------------------------------------------- LoRA

def without_lora(params) -> dict:
    """params without its ``"lora"`` adapters: the base model (the same arrays, no copy)."""
    return {k: v for k, v in params.items() if k != "lora"}


def _lora_blocks(cfg: ModelConfig):
    """{target: (block param, column/row slice selector)} for merging: where each target's
    delta [d_in, d_out] lands in its kernel."""
    H, K, hd, F = cfg.num_heads, cfg.kv_heads, cfg.head_dim, cfg.mlp_dim
    q, k = H * hd, K * hd
    swiglu = cfg.activation == "swiglu"
    every = slice(None)
    return {"q": ("qkv", slice(0, q)), "k": ("qkv", slice(q, q + k)),
            "v": ("qkv", slice(q + k, q + 2 * k)), "o": ("out", every),
            "gate": ("fc", slice(0, F)), "up": ("fc", slice(F, 2 * F) if swiglu else every),
            "down": ("proj", every)}


def merge_lora(cfg_or_model, params) -> dict:
    """Fold the adapters into the base kernels: params (with or without ``"lora"``) -> params
    without it, each targeted kernel's block += ``lora_alpha / lora_rank * a @ b`` (float32;
    q/k/v: their columns of qkv, gate/up: their columns of fc, o: out, down: proj). Its
    forward equals the adapted model's (to float rounding). ``cfg_or_model``: a
    ``ModelConfig`` or a ``Transformer``."""
    cfg = cfg_or_model.cfg if isinstance(cfg_or_model, Transformer) else cfg_or_model
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"merge_lora: needs a ModelConfig or a Transformer, got "
                        f"{type(cfg_or_model).__name__}")
    if "lora" not in params:
        return dict(params)
    if cfg.lora_rank == 0:
        raise ValueError("merge_lora: params have 'lora' adapters but the config's lora_rank "
                         "is 0 (no scale to merge them with)")
    where = _lora_blocks(cfg)
    blocks = []
    for block, adapters in zip(params["blocks"], params["lora"]):
        block = {name: dict(p) for name, p in block.items()}
        for target, ab in adapters.items():
            name, cols = where[target]
            delta = cfg.lora_scale * jnp.dot(ab["a"].astype(jnp.float32),
                                             ab["b"].astype(jnp.float32))
            block[name]["kernel"] = block[name]["kernel"].at[:, cols].add(delta)
        blocks.append(block)
    merged = without_lora(params)
    merged["blocks"] = blocks
    return merged


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
        each block normal(0, 0.02 / sqrt(2 L)); biases 0, norm scales 1), plus LoRA adapters
        (``init_lora(fold_in(key, 1))``: the base weights are those of the same config without
        adapters) when ``lora_rank > 0``. Layout::

            wte [V, D]; wpe [max_len, D] (learned positions only)
            blocks: list of L dicts:
              ln1, ln2: {scale, bias [D]} (layernorm) | {scale [D]} (rmsnorm)
              qkv: {kernel [D, (H + 2K) hd], bias (qkv_bias)}   columns q (H hd) | k (K hd) |
                   v (K hd), each head-major [heads, hd]
              q_norm, k_norm: {scale [hd]} (qk_norm only)
              out: {kernel [H hd, D], bias [D] (out_bias)}
              fc: {kernel [D, F] (gelu) | [D, 2F] (swiglu: gate columns, then up), bias
                  (mlp_bias)}; proj: {kernel [F, D], bias [D] (mlp_bias)}
            ln_f: as ln1; head [D, V] (untied only)
            lora: list of L dicts {target: {a [d_in, r], b [r, d_out]}} (lora_rank > 0 only)
        """
        c = self.cfg
        D, L, V = c.width, c.num_layers, c.vocab_size
        H, K, hd, F = c.num_heads, c.kv_heads, c.head_dim, c.mlp_dim
        fc_out = 2 * F if c.activation == "swiglu" else F
        std, proj_std = 0.02, 0.02 / math.sqrt(2 * L)
        # Every weight from one normal draw (one random kernel: many separate draws make the
        # compile several seconds longer), sliced in this order.
        shapes = [((V, D), std)]
        if c.positions == "learned":
            shapes.append(((c.max_len, D), std))
        shapes += [((D, (H + 2 * K) * hd), std), ((H * hd, D), proj_std), ((D, fc_out), std),
                   ((F, D), proj_std)] * L
        if not c.tie_embeddings:
            shapes.append(((D, V), std))
        sizes = [math.prod(shape) for shape, _ in shapes]
        z = jax.random.normal(key, (sum(sizes),), jnp.float32)
        offsets = np.cumsum([0] + sizes)
        weights = iter([s * z[o:o + n].reshape(shape)
                        for (shape, s), o, n in zip(shapes, offsets, sizes)])

        def dense(d_out, bias):
            p = {"kernel": next(weights)}
            if bias:
                p["bias"] = jnp.zeros(d_out, jnp.float32)
            return p

        def norm(n=D):
            if c.norm == "rmsnorm":
                return {"scale": jnp.ones(n, jnp.float32)}
            return {"scale": jnp.ones(n, jnp.float32), "bias": jnp.zeros(n, jnp.float32)}

        def block():
            b = {"ln1": norm(), "qkv": dense((H + 2 * K) * hd, c.qkv_bias),
                 "out": dense(D, c.out_bias), "ln2": norm(), "fc": dense(fc_out, c.mlp_bias),
                 "proj": dense(D, c.mlp_bias)}
            if c.qk_norm:
                b["q_norm"] = {"scale": jnp.ones(hd, jnp.float32)}
                b["k_norm"] = {"scale": jnp.ones(hd, jnp.float32)}
            return b

        params = {"wte": next(weights)}
        if c.positions == "learned":
            params["wpe"] = next(weights)
        params["blocks"] = [block() for _ in range(L)]
        params["ln_f"] = norm()
        if not c.tie_embeddings:
            params["head"] = next(weights)
        if c.lora_rank:
            params["lora"] = self.init_lora(jax.random.fold_in(key, 1))
        return params

    def init_lora(self, key) -> list:
        """key -> LoRA adapters, a list of L dicts {target: {"a": [d_in, r], "b": [r, d_out]}}
        for the targets in ``cfg.lora_modules`` (q: d_out H hd; k, v: K hd; o: d_in H hd,
        d_out D; gate, up: D -> F; down: F -> D), initialised as peft does: a ~ U(-1/sqrt(d_in),
        1/sqrt(d_in)) (its kaiming_uniform with a = sqrt(5)), b = 0, so the adapted model
        starts equal to the base. Needs ``lora_rank > 0``."""
        c = self.cfg
        r = c.lora_rank
        if r == 0:
            raise ValueError("init_lora: lora_rank is 0 (no adapters); set lora_rank > 0")
        shapes = c.lora_shapes()
        sizes = [d_in * r for d_in, _ in shapes.values()] * c.num_layers
        u = jax.random.uniform(key, (sum(sizes),), jnp.float32, -1.0, 1.0)
        offsets = iter(np.cumsum([0] + sizes))
        out = []
        for _ in range(c.num_layers):
            layer = {}
            for target, (d_in, d_out) in shapes.items():
                o = next(offsets)
                a = u[o:o + d_in * r].reshape(d_in, r) / math.sqrt(d_in)
                layer[target] = {"a": a, "b": jnp.zeros((r, d_out), jnp.float32)}
            out.append(layer)
        return out

    def _split(self, params):
        """params -> (base params, LoRA adapters or None). With adapters, the base is behind
        ``stop_gradient``: only the adapters train."""
        if "lora" not in params:
            return params, None
        if self.cfg.lora_rank == 0:
            raise ValueError("params have 'lora' adapters but the model's lora_rank is 0; "
                             "build the model with the adapters' lora_rank (and lora_alpha)")
        return jax.lax.stop_gradient(without_lora(params)), params["lora"]

    # ------------------------------------------------------------------------- pieces

    def _delta(self, x, lp, target):
        """LoRA delta of ``target`` on x [N, d_in] (cfg.dtype) -> float32 [N, d_out], or None
        (no adapter for it)."""
        if lp is None or target not in lp:
            return None
        dt = self.cfg.dtype
        h = jnp.dot(x.astype(dt), lp[target]["a"].astype(dt), preferred_element_type=jnp.float32)
        d = jnp.dot(h.astype(dt), lp[target]["b"].astype(dt), preferred_element_type=jnp.float32)
        return d * self.cfg.lora_scale

    def _deltas(self, x, lp, parts):
        """The concatenated LoRA deltas of ``parts`` ((target, d_out) pairs, in kernel column
        order; zeros for targets without an adapter) -> float32 [N, sum d_out], or None when
        none of them has an adapter."""
        ds = [self._delta(x, lp, t) for t, _ in parts]
        if all(d is None for d in ds):
            return None
        n = x.shape[0]
        return jnp.concatenate([jnp.zeros((n, w), jnp.float32) if d is None else d
                                for d, (_, w) in zip(ds, parts)], -1)

    def _dense(self, x, p, bias, delta=None):
        """x [N, d_in] -> float32 [N, d_out] (+ bias when ``bias``, + a LoRA delta)."""
        dt = self.cfg.dtype
        y = jnp.dot(x.astype(dt), p["kernel"].astype(dt), preferred_element_type=jnp.float32)
        if bias:
            y = y + p["bias"]
        return y if delta is None else y + delta

    def _norm(self, x, p):
        """x float32 [N, n] -> float32 [N, n]: the config's norm."""
        if self.cfg.norm == "rmsnorm":
            return _rms_norm(x, p, self.cfg.norm_eps)
        return _layer_norm(x, p, self.cfg.norm_eps)

    def _rope(self, pos):
        """pos int32 [B, T] -> RoPE tables, or None with learned positions."""
        if self.cfg.positions != "rotary":
            return None
        return _rope_tables(pos, rope_inv_freq(self.cfg))

    def _embed(self, params, tokens, pos):
        """tokens, pos int32 [B, T] -> float32 [B*T, D]."""
        x = params["wte"][tokens.reshape(-1)]
        if self.cfg.positions == "learned":
            x = x + params["wpe"][pos.reshape(-1)]
        return x

    def _head(self, params, x):
        """Final hidden float32 [N, D] -> logits float32 [N, V]."""
        h = self._norm(x, params["ln_f"]).astype(self.cfg.dtype)
        if self.cfg.tie_embeddings:
            w = params["wte"].astype(self.cfg.dtype)
            return jnp.einsum("nd,vd->nv", h, w, preferred_element_type=jnp.float32)
        return jnp.dot(h, params["head"].astype(self.cfg.dtype),
                       preferred_element_type=jnp.float32)

    def _qkv(self, p, lp, x, B, T, rope):
        """Block params, adapters, x float32 [B*T, D] -> q [B, T, H, hd], k, v [B, T, K, hd]
        (cfg.dtype), q/k-normed and RoPE'd."""
        c = self.cfg
        H, K, hd = c.num_heads, c.kv_heads, c.head_dim
        h = self._norm(x, p["ln1"])
        delta = None if lp is None else self._deltas(
            h, lp, (("q", H * hd), ("k", K * hd), ("v", K * hd)))
        qkv = self._dense(h, p["qkv"], c.qkv_bias, delta).astype(c.dtype)
        if K == H:
            qkv = qkv.reshape(B, T, 3, H, hd)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        else:
            q = qkv[:, :H * hd].reshape(B, T, H, hd)
            k = qkv[:, H * hd:(H + K) * hd].reshape(B, T, K, hd)
            v = qkv[:, (H + K) * hd:].reshape(B, T, K, hd)
        if c.qk_norm:
            q = _rms_norm(q, p["q_norm"], c.norm_eps).astype(c.dtype)
            k = _rms_norm(k, p["k_norm"], c.norm_eps).astype(c.dtype)
        if rope is not None:
            q, k = _rope(q, *rope), _rope(k, *rope)
        return q, k, v

    def _out(self, p, lp, a, x):
        """Residual attention output: a float32 [B*T, H hd], x [B*T, D] -> x + out(a)."""
        delta = self._delta(a, lp, "o")
        return x + self._dense(a, p["out"], self.cfg.out_bias, delta)

    def _mlp(self, p, lp, x):
        """Residual MLP: x float32 [N, D] -> x + mlp(norm(x))."""
        c = self.cfg
        F = c.mlp_dim
        h = self._norm(x, p["ln2"])
        if c.activation == "swiglu":
            delta = None if lp is None else self._deltas(h, lp, (("gate", F), ("up", F)))
            y = self._dense(h, p["fc"], c.mlp_bias, delta)
            a = jax.nn.silu(y[:, :F]) * y[:, F:]
        else:
            a = jax.nn.gelu(self._dense(h, p["fc"], c.mlp_bias, self._delta(h, lp, "up")))
        return x + self._dense(a, p["proj"], c.mlp_bias, self._delta(a, lp, "down"))

    def _attend(self, q, k, v, allowed):
        """q [B, T, H, hd]; k, v [B, K, S, hd]; allowed bool [B, T, S] -> float32
        [B*T, H hd]. Query head h reads key/value head h // (H / K)."""
        B, T, H, hd = q.shape
        K = k.shape[1]
        scale = 1.0 / math.sqrt(self.cfg.head_dim)
        if K == H:
            s = jnp.einsum("bqhd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
            w = _softmax_rows(s, allowed[:, None]).astype(q.dtype)
            o = jnp.einsum("bhqk,bhkd->bqhd", w, v, preferred_element_type=jnp.float32)
        else:
            qg = q.reshape(B, T, K, H // K, hd)
            s = jnp.einsum("bqkgd,bksd->bkgqs", qg, k,
                           preferred_element_type=jnp.float32) * scale
            w = _softmax_rows(s, allowed[:, None, None]).astype(q.dtype)
            o = jnp.einsum("bkgqs,bksd->bqkgd", w, v, preferred_element_type=jnp.float32)
        return o.reshape(B * T, -1)

    def _check_len(self, n, what):
        if n > self.cfg.max_len:
            raise ValueError(f"{what} ({n}) exceeds the model's max_len ({self.cfg.max_len})")

    # ------------------------------------------------------------------------- full forward

    def _hidden(self, params, lora, tokens, valid):
        B, T = tokens.shape
        self._check_len(T, "sequence length")
        valid = jnp.ones((B, T), bool) if valid is None else valid.astype(bool)
        pos = _positions(valid)
        rope = self._rope(pos)
        i = jnp.arange(T)
        allowed = (i[:, None] >= i[None, :]) & (valid[:, None, :] | (i[:, None] == i[None, :]))
        x = self._embed(params, tokens, pos)
        heads_first = lambda a: a.transpose(0, 2, 1, 3)       # [B, T, h, hd] -> [B, h, T, hd]
        for n, p in enumerate(params["blocks"]):
            lp = None if lora is None else lora[n]
            q, k, v = self._qkv(p, lp, x, B, T, rope)
            x = self._out(p, lp, self._attend(q, heads_first(k), heads_first(v), allowed), x)
            x = self._mlp(p, lp, x)
        return x

    def hidden(self, params, tokens, valid=None):
        """Final residual stream (before the final norm): tokens int [B, T], valid bool
        [B, T] (default all real) -> float32 [B*T, D]. See ``forward``."""
        return self._hidden(*self._split(params), tokens, valid)

    def forward(self, params, tokens, valid=None):
        """Causal forward over whole sequences: tokens int [B, T] (left-padded prompts, then
        anything), valid bool [B, T] (real tokens; default all) -> logits float32 [B, T, V],
        where ``logits[:, t]`` predicts token t + 1. Positions are ``cumsum(valid) - 1``
        (clipped at 0); each query attends to the real keys at or before it. Logits at pad
        positions are meaningless. T must be <= cfg.max_len. LoRA adapters apply iff params
        has "lora"."""
        B, T = tokens.shape
        base, lora = self._split(params)
        return self._head(base, self._hidden(base, lora, tokens, valid)).reshape(B, T, -1)

    __call__ = forward

    def token_logp(self, params, prompt_tokens, prompt_valid, completion, temperature=1.0,
                   eos_id=EOS):
        """Log-prob and entropy of each completion token under the temperature-scaled model,
        in one causal forward over prompt + completion (the learn phase's recomputation).

        prompt_tokens int [B, P], prompt_valid bool [B, P] (left-padded), completion int [B, M]
        (as ``generate`` returns it; every completion token counts as real), temperature
        float scalar (may be traced) -> logp float32 [B, M], ``log softmax(logits / T)`` at the
        completion token; entropy float32 [B, M] of ``softmax(logits / T)``. Both are 0 after
        the completion's first EOS (``eos_id``: an int, or several as a tuple / int array;
        ``completion_length``), as in ``generate``; the EOS itself counts. P + M must be <=
        cfg.max_len."""
        B, P = prompt_tokens.shape
        M = completion.shape[1]
        base, lora = self._split(params)
        tokens = jnp.concatenate([prompt_tokens, completion], 1).astype(jnp.int32)
        valid = jnp.concatenate([prompt_valid.astype(bool), jnp.ones((B, M), bool)], 1)
        x = self._hidden(base, lora, tokens, valid).reshape(B, P + M, -1)
        x = x[:, P - 1:P + M - 1].reshape(B * M, -1)          # the states predicting completion
        z = self._head(base, x).reshape(B, M, -1) / temperature
        logz = jax.nn.logsumexp(z, -1)
        logp = jnp.take_along_axis(z, completion[..., None].astype(jnp.int32), -1)[..., 0] - logz
        probs = jnp.exp(z - logz[..., None])
        entropy = logz - (probs * z).sum(-1)
        keep = jnp.arange(M) <= _length(completion, eos_id)[:, None]
        return jnp.where(keep, logp, 0.0), jnp.where(keep, entropy, 0.0)

    # ------------------------------------------------------------------------- KV cache

    def init_cache(self, batch: int, max_len: int | None = None) -> Cache:
        """An empty cache for ``batch`` sequences of up to ``max_len`` (default cfg.max_len,
        at most cfg.max_len) tokens, prompt included: k, v [batch, K, S, hd] per layer."""
        c = self.cfg
        S = c.max_len if max_len is None else max_len
        self._check_len(S, "cache length")
        zeros = lambda: tuple(jnp.zeros((batch, c.kv_heads, S, c.head_dim), c.dtype)
                              for _ in range(c.num_layers))
        return Cache(k=zeros(), v=zeros(),
                     valid=jnp.zeros((batch, S), bool), pos=jnp.zeros(batch, jnp.int32),
                     index=jnp.zeros((), jnp.int32))

    def _extend(self, params, lora, tokens, valid, cache):
        """Run a chunk tokens int [B, T], valid bool [B, T] at the cache's write index ->
        (final hidden float32 [B*T, D], cache with the chunk written and index advanced by T).
        The chunk attends to the cache's real slots before it and causally within itself."""
        B, T = tokens.shape
        S = cache.valid.shape[1]
        index = cache.index
        pos = _positions(valid, cache.pos)
        rope = self._rope(pos)
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
        for n, (p, k_cache, v_cache) in enumerate(zip(params["blocks"], cache.k, cache.v)):
            lp = None if lora is None else lora[n]
            q, k, v = self._qkv(p, lp, x, B, T, rope)
            ks.append(write(k_cache, k))
            vs.append(write(v_cache, v))
            x = self._out(p, lp, self._attend(q, ks[-1], vs[-1], allowed), x)
            x = self._mlp(p, lp, x)
        new = Cache(tuple(ks), tuple(vs), kv_valid, cache.pos + valid.sum(1, dtype=jnp.int32), index + T)
        return x, new

    def prefill(self, params, tokens, valid, cache):
        """Run the (left-padded) prompts through the cache: tokens int [B, P], valid bool
        [B, P], cache (normally empty) -> (logits float32 [B, V] after the last prompt token,
        cache). With a non-empty cache the chunk continues the cached sequences."""
        B, T = tokens.shape
        base, lora = self._split(params)
        x, cache = self._extend(base, lora, tokens.astype(jnp.int32), valid.astype(bool), cache)
        return self._head(base, x.reshape(B, T, -1)[:, -1]), cache

    def decode_step(self, params, token, cache):
        """Append one real token per sequence: token int [B], cache -> (logits float32 [B, V]
        predicting the next token, cache). The caller keeps index < S."""
        base, lora = self._split(params)
        x, cache = self._extend(base, lora, token[:, None].astype(jnp.int32),
                                jnp.ones((token.shape[0], 1), bool), cache)
        return self._head(base, x), cache

    # ------------------------------------------------------------------------- sampling

    def generate(self, params, key, prompt_tokens, prompt_valid, max_new_tokens: int,
                 temperature=1.0, eos_id=EOS, greedy: bool = False,
                 early_stop: bool = True, top_k: int = 0, top_p: float = 1.0):
        """Sample completions with the KV cache: one prefill, then up to ``max_new_tokens - 1``
        decode steps in a ``lax.while_loop``, which stops as soon as every sequence of the
        batch has drawn its EOS (``early_stop=False``: always ``max_new_tokens - 1`` steps; the
        outputs are the same bit for bit, only the time differs).

        prompt_tokens int [B, P], prompt_valid bool [B, P] (left-padded), max_new_tokens M
        (static), temperature float scalar (> 0), eos_id (an int, or several EOS ids as a
        tuple / int array [E]) and greedy bool (all three may be traced), early_stop bool,
        top_k int >= 0 and top_p float in (0, 1] (static) -> completion int32 [B, M], logp
        float32 [B, M], length int32 [B]. Tokens are drawn from ``softmax(logits /
        temperature)`` restricted by ``top_k`` (0: off) then ``top_p`` (1.0: off) as
        transformers' warpers do (``filter_logits``), or are the argmax of the logits with
        ``greedy``; logp is the drawn token's log-prob under the temperature-scaled
        distribution, UNFILTERED (for greedy too; what TRL records, and what ``token_logp``
        recomputes). After a sequence's first EOS (any of the ids), tokens are PAD and logp 0;
        ``length`` counts the tokens before the first EOS (M if none), as
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
        top_k = check_count("top_k", top_k, low=0)
        top_p = check_number("top_p", top_p, low=0, high=1, low_open=True)
        filtering = bool(top_k) or top_p < 1.0
        self._check_len(P + M, "prompt + max_new_tokens")
        eos = _eos_ids(eos_id)
        logits, cache = self.prefill(params, prompt_tokens, prompt_valid,
                                     self.init_cache(B, P + M))
        keys = jax.random.split(key, M)

        def sample(logits, key, done):
            z = logits / temperature
            zs = filter_logits(z, top_k, top_p) if filtering else z
            tok = jnp.where(greedy, jnp.argmax(z, -1), jax.random.categorical(key, zs))
            tok = tok.astype(jnp.int32)
            lp = jnp.take_along_axis(jax.nn.log_softmax(z), tok[:, None], -1)[:, 0]
            tok, lp = jnp.where(done, PAD, tok), jnp.where(done, 0.0, lp)
            return tok, lp, done | _is_eos(tok, eos)

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
        return completion, logp, _length(completion, eos)


def init(key, cfg: ModelConfig) -> dict:
    """``Transformer(cfg).init(key)``: GPT-2-initialised params (with LoRA adapters when
    ``cfg.lora_rank > 0``)."""
    return Transformer(cfg).init(key)
