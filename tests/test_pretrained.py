"""jaxgrpo.text.pretrained: Hugging Face checkpoints against transformers itself (PyTorch CPU),
nothing downloaded. Tiny random checkpoints of each architecture (gpt2; llama with Llama 3's
rope scaling, tied embeddings, grouped-query attention and MLP biases; qwen2 with q/k/v biases
and a padded vocabulary; qwen3 with q/k RMSNorm and a head width other than width / heads) are
built here with transformers' ``save_pretrained`` next to a BPE tokenizer trained here
(``test_hf_tokenizer.make_tokenizer``). Checked: logits on a left-padded batch equal
transformers' (float32, 1e-4), the KV cache's logits equal the full forward at every decoded
position, greedy generation equals transformers' ``generate(do_sample=False)`` token for token
on chat-templated prompts, an exported checkpoint (with and without LoRA merged) loads in
transformers with equal logits, configs in transformers-4 and -5 form read the same, sharded
and bfloat16 weights load, and bad checkpoints get one ValueError naming the problem.
"""
import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from jaxgrpo.text.hf_tokenizer import HFTokenizer
from jaxgrpo.text.model import ModelConfig, Transformer
from jaxgrpo.text.pretrained import (is_pretrained_dir, load_pretrained, read_model_config,
                                     save_pretrained)
from test_hf_tokenizer import CHATS

ARCHS = ("gpt2", "llama", "qwen2", "qwen3")
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}
ATOL = 1e-4
B, T, PADS = 3, 12, (0, 3, 6)          # a left-padded batch: row b has PADS[b] pads
M = 8                                   # greedy tokens generated


def hf_config(arch):
    """A tiny transformers config of ``arch`` (2 layers, width 64, 4 query heads; 2 key/value
    heads for llama and qwen)."""
    common = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=96, max_position_embeddings=128)
    if arch == "gpt2":
        return transformers.GPT2Config(vocab_size=360, n_embd=64, n_layer=2, n_head=4,
                                       n_positions=128, bos_token_id=1, eos_token_id=3)
    if arch == "llama":
        return transformers.LlamaConfig(vocab_size=360, tie_word_embeddings=True, mlp_bias=True,
                                        rope_scaling={**LLAMA3, "rope_theta": 500000.0},
                                        rope_theta=500000.0, **common)
    if arch == "qwen2":
        return transformers.Qwen2Config(vocab_size=384, rope_theta=1000000.0, **common)
    return transformers.Qwen3Config(vocab_size=360, head_dim=24, rms_norm_eps=1e-5, **common)


def to_v4_config(directory):
    """Rewrite config.json from transformers 5's ``rope_parameters`` into transformers 4's
    ``rope_theta`` / ``rope_scaling`` (the form most checkpoints on disk have)."""
    path = directory / "config.json"
    raw = json.loads(path.read_text())
    rope = raw.pop("rope_parameters", None)
    if rope is not None:
        raw["rope_theta"] = rope.pop("rope_theta")
        raw["rope_scaling"] = None if rope.get("rope_type") == "default" else rope
    path.write_text(json.dumps(raw))


def randomize(model, seed):
    """Every parameter random (norm scales around 1), so no path is an identity or zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=g)
            if p.ndim == 1 and name.endswith("weight"):          # LayerNorm / RMSNorm scales
                p.copy_(1.0 + 0.2 * z)
            elif "wte" in name or "embed_tokens" in name or "wpe" in name:
                p.copy_(0.5 * z)
            else:
                p.copy_(0.15 * z)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer(tok_dir):
    return HFTokenizer(tok_dir)


@pytest.fixture(scope="module", params=ARCHS)
def ckpt(request, tmp_path_factory, tok_dir):
    """(arch, folder (transformers-4 config), folder with the transformers-5 config, the
    transformers model, the loaded (model, params, tokenizer), jitted forward)."""
    arch = request.param
    hf = randomize(transformers.AutoModelForCausalLM.from_config(hf_config(arch)),
                   seed=ARCHS.index(arch))
    v5 = tmp_path_factory.mktemp(f"{arch}_v5")
    hf.save_pretrained(str(v5))
    for f in tok_dir.iterdir():
        shutil.copy(f, v5)
    v4 = tmp_path_factory.mktemp(arch)
    shutil.copytree(v5, v4, dirs_exist_ok=True)
    to_v4_config(v4)
    model, params, tok = load_pretrained(v4)
    return dict(arch=arch, dir=v4, v5=v5, hf=hf, model=model, params=params, tok=tok,
                forward=jax.jit(model.forward))


def padded_batch(tok, seed=0):
    """tokens int32 [B, T] (random ids, left-padded with the pad id), valid bool [B, T]."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 360, (B, T)).astype(np.int32)
    valid = np.arange(T)[None, :] >= np.array(PADS)[:, None]
    return np.where(valid, tokens, tok.pad_id).astype(np.int32), valid


def hf_logits(hf, tokens, valid):
    """transformers' logits [B, T, V] with the attention mask and positions cumsum(mask) - 1."""
    mask = torch.tensor(valid.astype(np.int64))
    pos = torch.clamp(mask.cumsum(-1) - 1, min=0)
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(tokens.astype(np.int64)), attention_mask=mask,
                 position_ids=pos)
    return out.logits.float().numpy()


def assert_logits_equal(ours, theirs, valid):
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape
    assert np.abs(theirs[valid]).max() > 1.0                   # not a degenerate comparison
    np.testing.assert_allclose(ours[valid], theirs[valid], rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------- config

def test_read_model_config(ckpt):
    cfg, arch = ckpt["model"].cfg, ckpt["arch"]
    assert cfg == read_model_config(ckpt["dir"]) and cfg.dtype == jnp.float32
    assert cfg.num_layers == 2 and cfg.width == 64 and cfg.num_heads == 4
    if arch == "gpt2":       # GPT-2 is the built-in model's shape: its defaults
        assert cfg == ModelConfig(vocab_size=360, num_layers=2, width=64, num_heads=4,
                                  max_len=128, tie_embeddings=True)
        return
    assert (cfg.num_kv_heads, cfg.mlp_width, cfg.positions, cfg.norm, cfg.activation) == \
        (2, 96, "rotary", "rmsnorm", "swiglu")
    assert cfg.head_dim == (24 if arch == "qwen3" else 16)
    assert cfg.qk_norm == (arch == "qwen3")
    assert (cfg.qkv_bias, cfg.out_bias, cfg.mlp_bias) == \
        {"llama": (False, False, True), "qwen2": (True, False, False),
         "qwen3": (False, False, False)}[arch]
    assert cfg.tie_embeddings == (arch == "llama")
    assert cfg.rope_theta == {"llama": 500000.0, "qwen2": 1e6, "qwen3": 10000.0}[arch]
    assert cfg.norm_eps == (1e-5 if arch == "qwen3" else 1e-6)
    if arch == "llama":
        assert dict(cfg.rope_scaling) == LLAMA3
    else:
        assert cfg.rope_scaling is None


def test_transformers_5_config_reads_the_same(ckpt):
    raw4 = json.loads((ckpt["dir"] / "config.json").read_text())
    raw5 = json.loads((ckpt["v5"] / "config.json").read_text())
    if ckpt["arch"] != "gpt2":
        assert "rope_parameters" in raw5 and "rope_parameters" not in raw4 and "rope_theta" in raw4
    assert read_model_config(ckpt["v5"]) == ckpt["model"].cfg
    _, params, _ = load_pretrained(ckpt["v5"])
    jax.tree.map(np.testing.assert_array_equal, params, ckpt["params"])


def test_rope_scaling_forms(llama, tmp_path):
    """transformers 4's old "type" key, a null rope_scaling, and rope_parameters without a
    type all read as transformers reads them."""
    d = _copy(llama[0], tmp_path / "rope")
    raw = json.loads((d / "config.json").read_text())
    del raw["rope_parameters"]
    for scaling, theta, expected in (({"type": "linear", "factor": 2.0}, 1e4,
                                      (("factor", 2.0), ("rope_type", "linear"))),
                                     (None, 5e5, None), ({"rope_type": "default"}, 1e4, None)):
        (d / "config.json").write_text(json.dumps({**raw, "rope_theta": theta,
                                                   "rope_scaling": scaling}))
        cfg = read_model_config(d)
        assert (cfg.rope_theta, cfg.rope_scaling) == (theta, expected)
    (d / "config.json").write_text(json.dumps({**raw, "rope_parameters": {"rope_theta": 7.0}}))
    assert (read_model_config(d).rope_theta, read_model_config(d).rope_scaling) == (7.0, None)


def test_is_pretrained_dir(ckpt, tmp_path):
    assert is_pretrained_dir(ckpt["dir"]) and is_pretrained_dir(str(ckpt["dir"]))
    (tmp_path / "config.yaml").write_text("algo: grpo\n")
    assert not is_pretrained_dir(tmp_path) and not is_pretrained_dir(tmp_path / "nothing")


# ----------------------------------------------------------------------------- parity

def test_logits_equal_transformers_on_a_left_padded_batch(ckpt):
    tokens, valid = padded_batch(ckpt["tok"])
    ours = ckpt["forward"](ckpt["params"], tokens, valid)
    assert_logits_equal(ours, hf_logits(ckpt["hf"], tokens, valid), valid)
    # and a row's real logits do not depend on its padding
    one = ckpt["forward"](ckpt["params"], tokens[2:, PADS[2]:], valid[2:, PADS[2]:])
    np.testing.assert_allclose(np.asarray(one)[0], np.asarray(ours)[2, PADS[2]:], atol=ATOL)


def test_decode_cache_equals_full_forward_at_every_position(ckpt):
    model, params = ckpt["model"], ckpt["params"]
    tokens, valid = padded_batch(ckpt["tok"], seed=1)
    P = max(PADS) + 1                     # the prompt chunk: all padding and >= 1 real token

    @jax.jit
    def cached(params, tokens, valid):
        logits, cache = model.prefill(params, tokens[:, :P], valid[:, :P], model.init_cache(B, T))
        out = [logits]
        for t in range(P, T - 1):
            logits, cache = model.decode_step(params, tokens[:, t], cache)
            out.append(logits)
        return jnp.stack(out, 1)                                  # predicting tokens P .. T-1

    full = np.asarray(ckpt["forward"](params, tokens, valid))[:, P - 1:T - 1]
    np.testing.assert_allclose(np.asarray(cached(params, tokens, valid)), full, rtol=0, atol=ATOL)


def test_greedy_generate_equals_transformers(ckpt):
    """Chat-templated prompts, left-padded; the EOS ids are the tokenizer's and a token that
    transformers' greedy decode draws at step 3 of the first prompt, so completions end at
    different steps (and a sequence that ended is padded while the others go on)."""
    model, params, tok, hf = ckpt["model"], ckpt["params"], ckpt["tok"], ckpt["hf"]
    prompts = [tok.apply_chat_template(c) for c in CHATS] + [tok.apply_chat_template(
        [{"role": "user", "content": "the cat"}])]
    P = max(len(p) for p in prompts)
    tokens = np.array([[tok.pad_id] * (P - len(p)) + p.tolist() for p in prompts], np.int32)
    valid = np.array([[False] * (P - len(p)) + [True] * len(p) for p in prompts])

    def hf_greedy(eos):
        with torch.no_grad():
            out = hf.generate(input_ids=torch.tensor(tokens.astype(np.int64)),
                              attention_mask=torch.tensor(valid.astype(np.int64)),
                              max_new_tokens=M, do_sample=False, pad_token_id=tok.pad_id,
                              eos_token_id=list(eos))[:, P:].numpy()
        return np.pad(out, ((0, 0), (0, M - out.shape[1])), constant_values=-1)

    eos = tok.eos_token_ids + (int(hf_greedy(tok.eos_token_ids)[0, 3]),)
    theirs = hf_greedy(eos)
    completion, _, length = jax.jit(
        model.generate, static_argnames=("max_new_tokens", "greedy"))(
            params, jax.random.PRNGKey(0), tokens, valid, max_new_tokens=M, eos_id=eos,
            greedy=True)
    completion, length = np.asarray(completion), np.asarray(length)
    assert len({tuple(r) for r in completion.tolist()}) > 1     # the prompts lead apart
    assert length[0] <= 3 and length.max() > length[0]
    for b in range(len(prompts)):
        n = min(int(length[b]) + 1, M)                          # through the first EOS
        assert completion[b, :n].tolist() == theirs[b, :n].tolist()
        ends = np.flatnonzero(np.isin(theirs[b], eos))
        assert length[b] == (ends[0] if len(ends) else M)


# ----------------------------------------------------------------------------- export

def _hf_from(directory):
    return transformers.AutoModelForCausalLM.from_pretrained(str(directory),
                                                             dtype=torch.float32).eval()


def test_export_loads_in_transformers_with_equal_logits(ckpt, tmp_path):
    model, params, tok = ckpt["model"], ckpt["params"], ckpt["tok"]
    save_pretrained(model, params, tok, tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == ckpt["arch"] and "rope_parameters" not in raw
    tokens, valid = padded_batch(tok, seed=2)
    assert_logits_equal(ckpt["forward"](params, tokens, valid),
                        hf_logits(_hf_from(tmp_path), tokens, valid), valid)
    # the round trip is exact, and the tokenizer comes along
    model2, params2, tok2 = load_pretrained(tmp_path)
    assert model2 == model
    jax.tree.map(np.testing.assert_array_equal, params2, params)
    assert tok2.apply_chat_template(CHATS[1]).tolist() == tok.apply_chat_template(CHATS[1]).tolist()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    ids = hf_tok.apply_chat_template(CHATS[1], tokenize=True, add_generation_prompt=True)
    ids = ids if isinstance(ids, list) else ids["input_ids"]
    assert ids == tok.apply_chat_template(CHATS[1]).tolist()
    gen = transformers.GenerationConfig.from_pretrained(str(tmp_path))
    assert gen.eos_token_id in (tok.eos_token_ids[0], list(tok.eos_token_ids))


def test_export_merges_lora(ckpt, tmp_path):
    model, params, tok = ckpt["model"], ckpt["params"], ckpt["tok"]
    lora_model = Transformer(dataclasses.replace(model.cfg, lora_rank=4, lora_alpha=8.0))
    lora = lora_model.init_lora(jax.random.PRNGKey(1))
    leaves, treedef = jax.tree.flatten(lora)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    lora = jax.tree.unflatten(treedef, [0.3 * jax.random.normal(k, x.shape)
                                        for k, x in zip(keys, leaves)])     # b != 0 too
    lora_params = {**params, "lora": lora}
    tokens, valid = padded_batch(tok, seed=3)
    ours = np.asarray(jax.jit(lora_model.forward)(lora_params, tokens, valid))
    base = np.asarray(ckpt["forward"](params, tokens, valid))
    assert np.abs(ours - base)[valid].max() > 0.05                 # the adapters matter
    save_pretrained(lora_model, lora_params, tok, tmp_path)
    assert_logits_equal(ours, hf_logits(_hf_from(tmp_path), tokens, valid), valid)
    model2, _, _ = load_pretrained(tmp_path)
    assert model2.cfg.lora_rank == 0


def test_export_of_the_builtin_model(tmp_path):
    """The built-in (from scratch, untied) model is GPT-2's shape: it exports as gpt2."""
    model = Transformer(ModelConfig(vocab_size=50, num_layers=2, width=32, num_heads=4,
                                    max_len=16))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: np.asarray(x) + np.float32(0.3) * rng.standard_normal(
        x.shape, np.float32), model.init(jax.random.PRNGKey(0)))
    save_pretrained(model, params, None, tmp_path)
    tokens = np.random.default_rng(0).integers(0, 50, (2, 16)).astype(np.int32)
    valid = np.arange(16)[None] >= np.array([[0], [5]])
    assert_logits_equal(jax.jit(model.forward)(params, tokens, valid),
                        hf_logits(_hf_from(tmp_path), tokens, valid), valid)


def test_export_refuses_a_shape_no_architecture_has(tmp_path):
    model = Transformer(ModelConfig(vocab_size=50, num_layers=1, width=32, num_heads=4,
                                    max_len=16, positions="rotary"))
    with pytest.raises(ValueError, match="no Hugging Face architecture has this model's shape"):
        save_pretrained(model, {}, None, tmp_path)


# ----------------------------------------------------------------------------- weights on disk

@pytest.fixture(scope="module")
def llama(tmp_path_factory, tok_dir):
    hf = randomize(transformers.AutoModelForCausalLM.from_config(hf_config("llama")), seed=7)
    d = tmp_path_factory.mktemp("llama_disk")
    hf.save_pretrained(str(d))
    for f in tok_dir.iterdir():
        shutil.copy(f, d)
    return d, load_pretrained(d)[1]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_sharded_weights(llama, tmp_path):
    src, params = llama
    d = _copy(src, tmp_path / "sharded")
    tensors = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    for f, group in shards.items():
        save_file({n: tensors[n] for n in group}, str(d / f), metadata={"format": "pt"})
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: f for f, g in shards.items() for n in g}}))
    jax.tree.map(np.testing.assert_array_equal, load_pretrained(d)[1], params)


def test_bfloat16_weights_and_compute_dtype(tmp_path):
    hf = randomize(transformers.AutoModelForCausalLM.from_config(hf_config("qwen3")), seed=3)
    hf.to(torch.bfloat16).save_pretrained(str(tmp_path))
    model, params, tok = load_pretrained(tmp_path, dtype=jnp.bfloat16)
    assert tok is None                                           # no tokenizer.json there
    assert model.cfg.dtype == jnp.bfloat16
    ref = hf.model.layers[1].self_attn.q_proj.weight.detach().float().numpy().T
    q = params["blocks"][1]["qkv"]["kernel"]
    assert q.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(q)[:, :ref.shape[1]], ref)
    # bfloat16 compute stays near float32 compute on the same (bfloat16-valued) weights
    tokens = np.random.default_rng(0).integers(0, 360, (2, 10)).astype(np.int32)
    valid = np.arange(10)[None] >= np.array([[0], [4]])
    theirs = hf_logits(hf.float(), tokens, valid)
    ours = np.asarray(jax.jit(model.forward)(params, tokens, valid))
    err = np.abs(ours - theirs)[valid].max()
    assert 1e-4 < err < 0.05 * np.abs(theirs[valid]).max()


def _edit_weights(d, edit):
    tensors = dict(load_file(str(d / "model.safetensors")))
    edit(tensors)
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})


def _edit_config(d, **changes):
    raw = json.loads((d / "config.json").read_text())
    raw.update(changes)
    (d / "config.json").write_text(json.dumps(raw))


def test_bad_checkpoints(llama, tmp_path):
    src, _ = llama
    d = _copy(src, tmp_path / "type")
    _edit_config(d, model_type="mistral")
    with pytest.raises(ValueError, match=r"model_type 'mistral' is not supported \(supported: "
                                         r"gpt2, llama, qwen2, qwen3\)"):
        load_pretrained(d)

    d = _copy(src, tmp_path / "shape")
    k = "model.layers.1.self_attn.k_proj.weight"
    _edit_weights(d, lambda t: t.update({k: np.zeros((48, 64), np.float32)}))
    with pytest.raises(ValueError, match=rf"{k} has shape \(48, 64\), config.json implies "
                                         r"\(32, 64\)$"):
        load_pretrained(d)

    d = _copy(src, tmp_path / "missing")
    up = "model.layers.0.mlp.up_proj.weight"
    _edit_weights(d, lambda t: t.pop(up))
    with pytest.raises(ValueError, match=rf"tensor {up} is missing \(config.json implies shape "
                                         r"\(96, 64\)\)"):
        load_pretrained(d)

    d = _copy(src, tmp_path / "extra")
    _edit_weights(d, lambda t: t.update({"model.layers.2.mlp.up_proj.weight": t[up]}))
    with pytest.raises(ValueError, match=r"unexpected tensor model.layers.2.mlp.up_proj.weight "
                                         r"of shape \(96, 64\)"):
        load_pretrained(d)

    d = _copy(src, tmp_path / "act")
    _edit_config(d, hidden_act="gelu")
    with pytest.raises(ValueError, match="hidden_act 'gelu' is not supported"):
        read_model_config(d)

    d = _copy(src, tmp_path / "rope")
    raw = json.loads((d / "config.json").read_text())
    _edit_config(d, rope_parameters={**raw["rope_parameters"], "rope_type": "yarn"})
    with pytest.raises(ValueError, match=r"rope type 'yarn' is not supported \(supported: "
                                         r"default, linear, llama3\)"):
        read_model_config(d)

    with pytest.raises(ValueError, match="no config.json"):
        load_pretrained(tmp_path / "nothing")
