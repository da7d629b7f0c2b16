"""Hugging Face checkpoints in and out: ``load_pretrained(DIR)`` and ``save_pretrained(...)``.

A checkpoint folder holds ``config.json``, the weights (``model.safetensors``, or shards listed
by ``model.safetensors.index.json``) and the tokenizer files (``tokenizer.json``,
``tokenizer_config.json``, ``chat_template.jinja``, ``generation_config.json``)::

    model, params, tokenizer = load_pretrained("Qwen2.5-0.5B-Instruct", dtype=jnp.bfloat16)
    logits = model.forward(params, tokens, valid)              # [B, T, V]
    save_pretrained(model, params, tokenizer, "out")            # transformers loads "out"

Architectures (``model_type``): ``gpt2``, ``llama`` (Llama 3's rope scaling, tied embeddings),
``qwen2`` (q/k/v biases) and ``qwen3`` (q/k RMSNorm); each maps onto the one
``jaxgrpo.text.model.Transformer`` (``ModelConfig`` fields: grouped-query attention, RMSNorm,
SwiGLU, RoPE with the checkpoint's theta). Configs are read in the form transformers 4 writes
(``rope_theta``, ``rope_scaling``) and the one transformers 5 writes (``rope_parameters``);
``save_pretrained`` writes the transformers-4 form, which both read.

Weights are read with ``safetensors`` (no PyTorch): every tensor's shape is checked against
the config before any is read, and the params are float32 (``dtype`` is the compute dtype of
the dense layers, as for the built-in model). Torch's ``Linear`` weights are [out, in] and are
transposed into the layout's [in, out] kernels; GPT-2's ``Conv1D`` weights are [in, out]
already. Shapes: V vocabulary, D width, H query heads, K key/value heads, hd head width,
F MLP width, L layers.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path

import numpy as np

from .hf_tokenizer import read_json

MODEL_TYPES = ("gpt2", "llama", "qwen2", "qwen3")
ROPE_TYPES = ("default", "linear", "llama3")
_ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM",
                  "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
_GELU = ("gelu_new", "gelu_pytorch_tanh")    # the tanh-approximate gelu, the built-in "gelu"
# buffers some checkpoints carry that are not weights (GPT-2's causal mask, old rotary tables)
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


def _fail(directory, msg):
    raise ValueError(f"{directory}: {msg}")


def is_pretrained_dir(path) -> bool:
    """Whether ``path`` is a Hugging Face checkpoint folder (``config.json`` and ``*.safetensors``
    weights), as opposed to a jaxgrpo run folder (``config.yaml``)."""
    p = Path(path).expanduser()
    return (p.is_dir() and (p / "config.json").is_file()
            and any(p.glob("*.safetensors")))


# ----------------------------------------------------------------------------- config.json

def _rope(raw: dict, directory) -> tuple:
    """config.json -> (rope_theta float, rope_scaling tuple or None): transformers 5's
    ``rope_parameters`` {"rope_type", "rope_theta", ...} or transformers 4's ``rope_theta`` and
    ``rope_scaling`` {"rope_type" (or "type"), ...}. The scaling tuple is the sorted (key, value)
    pairs with "rope_type" (None for the default type)."""
    params = raw.get("rope_parameters")
    if isinstance(params, dict) and params:
        scaling = dict(params)
        theta = scaling.pop("rope_theta", raw.get("rope_theta", 10000.0))
    else:
        theta = raw.get("rope_theta", 10000.0)
        scaling = dict(raw.get("rope_scaling") or {})
    if "type" in scaling:                 # the old name of rope_type
        scaling.setdefault("rope_type", scaling.pop("type"))
        scaling.pop("type", None)
    rope_type = scaling.get("rope_type", "default")
    if rope_type not in ROPE_TYPES:
        _fail(directory, f"config.json: rope type {rope_type!r} is not supported (supported: "
                         f"{', '.join(ROPE_TYPES)})")
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
        _fail(directory, f"config.json: rope_theta must be a positive number, got {theta!r}")
    if rope_type == "default":
        return float(theta), None
    scaling["rope_type"] = rope_type
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in scaling.items()))
    return float(theta), items


def _get(raw, key, default=None, directory=None, kind=int):
    v = raw.get(key, default)
    if v is None:
        return default
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        _fail(directory, f"config.json: {key} must be an int, got {v!r}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        _fail(directory, f"config.json: {key} must be a number, got {v!r}")
    if kind is bool and not isinstance(v, bool):
        _fail(directory, f"config.json: {key} must be true or false, got {v!r}")
    return kind(v)


def model_config_fields(raw: dict, directory="config.json") -> dict:
    """A config.json dict -> ``ModelConfig`` keyword arguments (without dtype). ``ValueError``
    (one line) for an unsupported model_type, activation, rope type or attention variant."""
    model_type = raw.get("model_type")
    if model_type not in MODEL_TYPES:
        _fail(directory, f"model_type {model_type!r} is not supported (supported: "
                         f"{', '.join(MODEL_TYPES)})")
    g = lambda key, default=None, kind=int: _get(raw, key, default, directory, kind)
    if model_type == "gpt2":
        act = raw.get("activation_function", "gelu_new")
        if act not in _GELU:
            _fail(directory, f"config.json: gpt2 activation_function {act!r} is not supported "
                             f"(supported: gelu_new)")
        if raw.get("scale_attn_by_inverse_layer_idx") or raw.get("scale_attn_weights") is False:
            _fail(directory, "config.json: gpt2 with scale_attn_by_inverse_layer_idx or without "
                             "scale_attn_weights is not supported")
        # the built-in model's defaults are GPT-2's: a gpt2 config is a default ModelConfig
        return dict(vocab_size=g("vocab_size", 50257), num_layers=g("n_layer", 12),
                    width=g("n_embd", 768), num_heads=g("n_head", 12),
                    max_len=g("n_positions", g("n_ctx", 1024)), positions="learned",
                    tie_embeddings=g("tie_word_embeddings", True, bool),
                    mlp_width=g("n_inner", None), activation="gelu", norm="layernorm",
                    norm_eps=g("layer_norm_epsilon", 1e-5, float))
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        _fail(directory, f"config.json: {model_type} hidden_act {act!r} is not supported "
                         f"(supported: silu)")
    if raw.get("use_sliding_window"):
        _fail(directory, f"config.json: {model_type} with use_sliding_window is not supported")
    D, H = g("hidden_size"), g("num_attention_heads")
    for key, value in (("hidden_size", D), ("num_attention_heads", H),
                       ("num_hidden_layers", g("num_hidden_layers")),
                       ("intermediate_size", g("intermediate_size")),
                       ("vocab_size", g("vocab_size"))):
        if value is None:
            _fail(directory, f"config.json: {model_type} needs {key}")
    head_default = 128 if model_type == "qwen3" else (D // H if H and D % H == 0 else None)
    theta, scaling = _rope(raw, directory)
    attention_bias = g("attention_bias", False, bool)
    if model_type == "qwen2":
        qkv_bias, out_bias, mlp_bias = True, False, False
    elif model_type == "qwen3":
        qkv_bias = out_bias = attention_bias
        mlp_bias = False
    else:
        qkv_bias = out_bias = attention_bias
        mlp_bias = g("mlp_bias", False, bool)
    return dict(vocab_size=g("vocab_size"), num_layers=g("num_hidden_layers"), width=D,
                num_heads=H, max_len=g("max_position_embeddings", 2048), positions="rotary",
                tie_embeddings=g("tie_word_embeddings", False, bool),
                num_kv_heads=g("num_key_value_heads", None) or H,
                head_size=g("head_dim", None) or head_default,
                mlp_width=g("intermediate_size"), activation="swiglu", norm="rmsnorm",
                norm_eps=g("rms_norm_eps", 1e-6, float), qkv_bias=qkv_bias, out_bias=out_bias,
                mlp_bias=mlp_bias, qk_norm=model_type == "qwen3", rope_theta=theta,
                rope_scaling=scaling)


@functools.lru_cache(maxsize=32)
def _read_model_config(path: str, text: str, dtype):
    from .model import ModelConfig
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: config.json is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: config.json must hold a JSON object, got {type(raw).__name__}")
    fields = model_config_fields(raw, path)
    try:
        return ModelConfig(dtype=dtype, **fields)
    except ValueError as e:
        raise ValueError(f"{path}: config.json does not make a valid model: {e}") from None


def read_model_config(directory, dtype=None):
    """The ``ModelConfig`` of a checkpoint folder (reads config.json only; cached by its
    contents). ``dtype``: compute dtype (default float32). ``ValueError`` (one line) for a
    missing config.json or an unsupported architecture."""
    import jax.numpy as jnp
    p = Path(directory).expanduser().resolve()
    f = p / "config.json"
    if not f.is_file():
        raise ValueError(f"{p}: no config.json (not a Hugging Face checkpoint folder)")
    try:
        text = f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{f}: cannot read it: {e}") from None
    return _read_model_config(str(p), text, jnp.float32 if dtype is None else dtype)


def model_type_of(cfg) -> str:
    """The Hugging Face model_type that holds a ``ModelConfig`` (``save_pretrained`` writes
    it): gpt2 (learned positions, LayerNorm, gelu, biases), qwen3 (q/k norm), qwen2 (q/k/v
    biases only), llama (RoPE, RMSNorm, SwiGLU). ``ValueError`` for a shape none of them has."""
    c = cfg
    if (c.positions == "learned" and c.norm == "layernorm" and c.activation == "gelu"
            and c.qkv_bias and c.out_bias and c.mlp_bias and not c.qk_norm
            and c.num_kv_heads in (None, c.num_heads) and c.head_dim * c.num_heads == c.width):
        return "gpt2"
    if c.positions == "rotary" and c.norm == "rmsnorm" and c.activation == "swiglu":
        if c.qk_norm and c.qkv_bias == c.out_bias and not c.mlp_bias:
            return "qwen3"
        if not c.qk_norm and c.qkv_bias and not c.out_bias and not c.mlp_bias:
            return "qwen2"
        if not c.qk_norm and c.qkv_bias == c.out_bias:
            return "llama"
    raise ValueError(
        f"save_pretrained: no Hugging Face architecture has this model's shape (positions="
        f"{c.positions!r}, norm={c.norm!r}, activation={c.activation!r}, qkv_bias={c.qkv_bias}, "
        f"out_bias={c.out_bias}, mlp_bias={c.mlp_bias}, qk_norm={c.qk_norm}); gpt2 is learned "
        f"positions + layernorm + gelu, llama/qwen2/qwen3 are rotary + rmsnorm + swiglu")


def hf_config(cfg, model_type: str, tokenizer=None) -> dict:
    """A ``ModelConfig`` -> config.json (transformers-4 form) for ``model_type``."""
    c = cfg
    ids = {}
    if tokenizer is not None:
        ids = {"bos_token_id": tokenizer.bos_id, "pad_token_id": tokenizer.pad_id,
               "eos_token_id": (tokenizer.eos_token_ids[0] if len(tokenizer.eos_token_ids) == 1
                                else list(tokenizer.eos_token_ids))}
    common = {"architectures": [_ARCHITECTURES[model_type]], "model_type": model_type,
              "vocab_size": c.vocab_size, "tie_word_embeddings": c.tie_embeddings,
              "torch_dtype": "float32", **ids}
    if model_type == "gpt2":
        return {**common, "n_embd": c.width, "n_layer": c.num_layers, "n_head": c.num_heads,
                "n_positions": c.max_len, "n_ctx": c.max_len, "n_inner": c.mlp_width,
                "activation_function": "gelu_new", "layer_norm_epsilon": c.norm_eps,
                "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                "reorder_and_upcast_attn": False}
    out = {**common, "hidden_size": c.width, "num_hidden_layers": c.num_layers,
           "num_attention_heads": c.num_heads, "num_key_value_heads": _kv_heads(c),
           "head_dim": c.head_dim, "intermediate_size": _mlp_width(c), "hidden_act": "silu",
           "max_position_embeddings": c.max_len, "rms_norm_eps": c.norm_eps,
           "rope_theta": c.rope_theta,
           "rope_scaling": dict(c.rope_scaling) if c.rope_scaling else None,
           "attention_dropout": 0.0}
    if model_type == "llama":
        out.update(attention_bias=c.qkv_bias, mlp_bias=c.mlp_bias, pretraining_tp=1)
    elif model_type == "qwen3":
        out.update(attention_bias=c.qkv_bias, use_sliding_window=False, sliding_window=None)
    else:
        out.update(use_sliding_window=False, sliding_window=None)
    return out


def _kv_heads(c):
    return c.num_heads if c.num_kv_heads is None else c.num_kv_heads


def _mlp_width(c):
    return 4 * c.width if c.mlp_width is None else c.mlp_width


# ----------------------------------------------------------------------------- weight names

def _tensor_map(model_type: str, cfg, prefix: str, tied: bool) -> list:
    """The layout's leaves and the HF tensors each is made of: a list of (path, pieces), path a
    tuple of keys into params (ints for the blocks list), pieces a list of (hf_name, hf_shape,
    transpose). A leaf is the concatenation, along its last axis, of its pieces (transposed
    where ``transpose``: torch's Linear weights are [out, in])."""
    c = cfg
    D, V, L, F = c.width, c.vocab_size, c.num_layers, _mlp_width(c)
    H, K, hd = c.num_heads, _kv_heads(c), c.head_dim
    leaves = []
    add = lambda path, *pieces: leaves.append((path, list(pieces)))
    if model_type == "gpt2":
        add(("wte",), (f"{prefix}wte.weight", (V, D), False))
        add(("wpe",), (f"{prefix}wpe.weight", (c.max_len, D), False))
        for i in range(L):
            b = f"{prefix}h.{i}."
            for ln, name in (("ln1", "ln_1"), ("ln2", "ln_2")):
                add(("blocks", i, ln, "scale"), (f"{b}{name}.weight", (D,), False))
                add(("blocks", i, ln, "bias"), (f"{b}{name}.bias", (D,), False))
            for leaf, name, d_in, d_out in (("qkv", "attn.c_attn", D, 3 * D),
                                            ("out", "attn.c_proj", D, D),
                                            ("fc", "mlp.c_fc", D, F),
                                            ("proj", "mlp.c_proj", F, D)):
                add(("blocks", i, leaf, "kernel"), (f"{b}{name}.weight", (d_in, d_out), False))
                add(("blocks", i, leaf, "bias"), (f"{b}{name}.bias", (d_out,), False))
        add(("ln_f", "scale"), (f"{prefix}ln_f.weight", (D,), False))
        add(("ln_f", "bias"), (f"{prefix}ln_f.bias", (D,), False))
        if not tied:
            add(("head",), ("lm_head.weight", (V, D), True))
        return leaves
    add(("wte",), (f"{prefix}embed_tokens.weight", (V, D), False))
    for i in range(L):
        b = f"{prefix}layers.{i}."
        add(("blocks", i, "ln1", "scale"), (f"{b}input_layernorm.weight", (D,), False))
        add(("blocks", i, "ln2", "scale"), (f"{b}post_attention_layernorm.weight", (D,), False))
        qkv = [("q", H * hd), ("k", K * hd), ("v", K * hd)]
        add(("blocks", i, "qkv", "kernel"),
            *[(f"{b}self_attn.{n}_proj.weight", (d, D), True) for n, d in qkv])
        if c.qkv_bias:
            add(("blocks", i, "qkv", "bias"),
                *[(f"{b}self_attn.{n}_proj.bias", (d,), False) for n, d in qkv])
        if c.qk_norm:
            add(("blocks", i, "q_norm", "scale"), (f"{b}self_attn.q_norm.weight", (hd,), False))
            add(("blocks", i, "k_norm", "scale"), (f"{b}self_attn.k_norm.weight", (hd,), False))
        add(("blocks", i, "out", "kernel"), (f"{b}self_attn.o_proj.weight", (D, H * hd), True))
        if c.out_bias:
            add(("blocks", i, "out", "bias"), (f"{b}self_attn.o_proj.bias", (D,), False))
        add(("blocks", i, "fc", "kernel"), (f"{b}mlp.gate_proj.weight", (F, D), True),
            (f"{b}mlp.up_proj.weight", (F, D), True))
        add(("blocks", i, "proj", "kernel"), (f"{b}mlp.down_proj.weight", (D, F), True))
        if c.mlp_bias:
            add(("blocks", i, "fc", "bias"), (f"{b}mlp.gate_proj.bias", (F,), False),
                (f"{b}mlp.up_proj.bias", (F,), False))
            add(("blocks", i, "proj", "bias"), (f"{b}mlp.down_proj.bias", (D,), False))
    add(("ln_f", "scale"), (f"{prefix}norm.weight", (D,), False))
    if not tied:
        add(("head",), ("lm_head.weight", (V, D), True))
    return leaves


def _weight_files(directory: Path) -> dict:
    """Tensor name -> safetensors file, from model.safetensors.index.json's weight_map (sharded
    checkpoints) or the headers of every *.safetensors file."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            _fail(directory, "model.safetensors.index.json has no weight_map")
        missing = sorted({f for f in weight_map.values() if not (directory / f).is_file()})
        if missing:
            _fail(directory, f"model.safetensors.index.json lists {missing[0]}, which is missing")
        return {name: directory / f for name, f in weight_map.items()}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        _fail(directory, "no *.safetensors weights (PyTorch .bin checkpoints are not read: "
                         "convert them with transformers' save_pretrained)")
    names = {}
    for f in files:
        with _opened(f) as h:
            names.update({k: f for k in h.keys()})
    return names


@contextlib.contextmanager
def _opened(f: Path):
    """``safe_open(f)`` (NumPy), a file it cannot read (truncated, not safetensors) a one-line
    ValueError naming it."""
    from safetensors import SafetensorError, safe_open
    try:
        h = safe_open(str(f), framework="np")
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{f}: not a readable safetensors file ({e})") from None
    with h:
        yield h


def _read_tensors(files: dict, names) -> dict:
    """Read the named tensors -> {name: float32 np.ndarray}. NumPy dtypes through
    ``safetensors``' NumPy framework; bfloat16 (which NumPy lacks) through its JAX one."""
    from safetensors import safe_open
    by_file = {}
    for name in names:
        by_file.setdefault(files[name], []).append(name)
    out = {}
    for f, group in by_file.items():
        with safe_open(str(f), framework="np") as h:
            bf16 = [n for n in group if h.get_slice(n).get_dtype() == "BF16"]
            for n in group:
                if n not in bf16:
                    out[n] = np.asarray(h.get_tensor(n), np.float32)
        if bf16:
            with safe_open(str(f), framework="flax") as h:
                for n in bf16:
                    out[n] = np.asarray(h.get_tensor(n), np.float32)
    return out


def _shapes(files: dict) -> dict:
    shapes = {}
    for f in set(files.values()):
        with _opened(f) as h:
            for n in h.keys():
                if files.get(n) == f:
                    shapes[n] = tuple(h.get_slice(n).get_shape())
    return shapes


def _prefix(model_type: str, names) -> str:
    """The prefix of the base model's tensor names: "transformer." / "model." as the
    *ForCausalLM classes save them, or "" as the base model classes do."""
    base = "wte.weight" if model_type == "gpt2" else "embed_tokens.weight"
    full = ("transformer." if model_type == "gpt2" else "model.")
    return full if (full + base) in names or base not in names else ""


def _check_tensors(directory, expected: dict, shapes: dict, ignored) -> None:
    """One ValueError listing how the checkpoint's tensors differ from what config.json
    implies (wrong shapes, missing and unexpected tensors), naming each tensor and shape."""
    problems = []
    for name, shape in expected.items():
        if name not in shapes:
            problems.append(f"tensor {name} is missing (config.json implies shape {shape})")
        elif shapes[name] != shape:
            problems.append(f"tensor {name} has shape {shapes[name]}, config.json implies {shape}")
    for name in shapes:
        if name not in expected and name not in ignored:
            problems.append(f"unexpected tensor {name} of shape {shapes[name]}")
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        _fail(directory, f"the weights do not match config.json: {problems[0]}{more}")


def _expected_tensors(directory: Path, cfg, model_type: str):
    """(files, leaves) of a checkpoint folder for ``cfg``, after checking every tensor's shape
    in the safetensors headers against ``cfg`` (no tensor is read)."""
    files = _weight_files(directory)
    shapes = _shapes(files)
    prefix = _prefix(model_type, shapes)
    leaves = _tensor_map(model_type, cfg, prefix, cfg.tie_embeddings)
    expected = {n: s for _, pieces in leaves for n, s, _ in pieces}
    ignored = {n for n in shapes if n.endswith(_IGNORED_SUFFIXES)}
    if cfg.tie_embeddings:      # tied checkpoints may still store the head (transformers ignores it)
        ignored.add("lm_head.weight")
    _check_tensors(directory, expected, shapes, ignored)
    return files, leaves, expected


@functools.lru_cache(maxsize=32)
def _checked_weights(path: str, stamp: tuple) -> bool:
    p = Path(path)
    cfg = read_model_config(p)
    _expected_tensors(p, cfg, read_json(p / "config.json")["model_type"])
    return True


def check_weights(directory) -> None:
    """Check a checkpoint folder's safetensors headers against its config.json (what
    ``load_weights`` does first, no tensor read): ``ValueError`` (one line) naming the first
    tensor that is missing, unexpected or of the wrong shape. Cached by the folder's files'
    sizes and modification times, so a config checks it once."""
    p = Path(directory).expanduser().resolve()
    stamp = tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                         for f in p.iterdir() if f.suffix in (".json", ".safetensors")))
    _checked_weights(str(p), stamp)


def load_weights(directory, cfg, model_type: str) -> dict:
    """Read a checkpoint folder's safetensors weights into jaxgrpo's layout for ``cfg`` (see
    ``Transformer.init``): a nested dict of float32 jax arrays. Every tensor's shape is checked
    against ``cfg`` before any is read (one ``ValueError`` naming the first difference)."""
    import jax.numpy as jnp
    directory = Path(directory)
    files, leaves, expected = _expected_tensors(directory, cfg, model_type)
    arrays = _read_tensors(files, expected)
    params = {"blocks": [{} for _ in range(cfg.num_layers)]}
    for path, pieces in leaves:
        parts = [arrays.pop(n).T if transpose else arrays.pop(n) for n, _, transpose in pieces]
        leaf = parts[0] if len(parts) == 1 else np.concatenate(parts, -1)
        node = params
        for key in path[:-1]:
            node = node[key] if isinstance(key, int) else node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(np.ascontiguousarray(leaf), jnp.float32)
    return params


def load_pretrained(directory, dtype=None):
    """A Hugging Face checkpoint folder -> ``(model, params, tokenizer)``: ``model`` a
    ``Transformer`` (``read_model_config``: compute ``dtype``, default float32), ``params`` its
    float32 weights in jaxgrpo's layout, ``tokenizer`` an ``HFTokenizer`` (None if the folder
    has no tokenizer.json). ``ValueError`` (one line, before any compilation) for an
    unsupported architecture or weights that do not match config.json."""
    from .hf_tokenizer import HFTokenizer
    from .model import Transformer
    p = Path(directory).expanduser().resolve()
    cfg = read_model_config(p, dtype)
    model_type = read_json(p / "config.json")["model_type"]
    params = load_weights(p, cfg, model_type)
    tokenizer = HFTokenizer(p) if (p / "tokenizer.json").is_file() else None
    return Transformer(cfg), params, tokenizer


def save_pretrained(model, params, tokenizer, directory) -> None:
    """Write ``model`` (a ``Transformer``) and ``params`` as a Hugging Face checkpoint folder
    that transformers' ``AutoModelForCausalLM.from_pretrained`` loads: config.json
    (transformers-4 form), model.safetensors (float32), generation_config.json and, with a
    ``tokenizer`` (an ``HFTokenizer``; None: none), its files. LoRA adapters in ``params`` are
    merged into the kernels first. ``ValueError`` if no supported architecture has the
    model's shape."""
    from safetensors.numpy import save_file
    cfg = model.cfg
    model_type = model_type_of(cfg)
    if "lora" in params:
        from .model import merge_lora
        params = merge_lora(model, params)
    leaves = _tensor_map(model_type, cfg, "transformer." if model_type == "gpt2" else "model.",
                         cfg.tie_embeddings)
    tensors = {}
    for path, pieces in leaves:
        leaf = params
        for key in path:
            leaf = leaf[key]
        leaf = np.asarray(leaf, np.float32)
        sizes = [shape[0] if transpose else shape[-1] for _, shape, transpose in pieces]
        expected = leaf.shape[:-1] + (sum(sizes),)
        if leaf.shape != expected:
            raise ValueError(f"save_pretrained: params{''.join(f'[{k!r}]' for k in path)} has "
                             f"shape {leaf.shape}, the model's config implies {expected}")
        for (name, _, transpose), part in zip(pieces, np.split(leaf, np.cumsum(sizes)[:-1], -1)):
            tensors[name] = np.ascontiguousarray(part.T if transpose else part)
    out = Path(directory).expanduser()
    os.makedirs(out, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(
        json.dumps(hf_config(cfg, model_type, tokenizer), indent=2) + "\n", encoding="utf-8")
    gen = tokenizer.generation_config() if tokenizer is not None else {}
    if tokenizer is not None:
        tokenizer.save(out)
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")
