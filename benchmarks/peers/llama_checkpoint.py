"""A random Llama-architecture Hugging Face checkpoint with a 32k-token vocabulary, built here
(nothing downloaded) with transformers' ``LlamaConfig`` / ``LlamaForCausalLM`` and
``save_pretrained``, and a ``tokenizers`` tokenizer saved beside it; runs in
benchmarks/.venv-trl (torch, transformers, tokenizers).

    python benchmarks/peers/llama_checkpoint.py SPEC.json

SPEC: ``{"dir", "vocab", "hidden", "intermediate", "layers", "heads", "kv_heads", "max_len",
"tied", "seed"}``. The tokenizer is a character-level ``WordLevel`` over printable ASCII (each
character one token, a ``Fuse`` decoder so decoding concatenates) whose vocabulary is padded
with ``<unused{i}>`` entries to ``vocab`` ids, so the embedding and the output head have the
size of a real model's (Llama 2's 32,000) while prompts tokenize as the character tokenizer
does. Ids: ``<pad>`` 0, ``<s>`` 1 (no BOS is added: the prompts carry none, on both sides),
``</s>`` 2 (EOS, also generation_config's). Prints ``RESULT <json>``: parameter counts and
the files written.
"""
import json
import os
import string
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPECIAL = ["<pad>", "<s>", "</s>"]


def tokenizer(vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    chars = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    words = SPECIAL + chars
    if vocab_size < len(words):
        raise ValueError(f"vocab must be at least {len(words)}, got {vocab_size}")
    words += [f"<unused{i}>" for i in range(vocab_size - len(words))]
    tk = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.add_special_tokens(SPECIAL)
    return tk


def build(spec: dict) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    out = spec["dir"]
    tk = tokenizer(int(spec["vocab"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", padding_side="left",
                                  clean_up_tokenization_spaces=False,
                                  model_max_length=int(spec["max_len"]))
    torch.manual_seed(int(spec.get("seed", 0)))
    cfg = LlamaConfig(
        vocab_size=int(spec["vocab"]), hidden_size=int(spec["hidden"]),
        intermediate_size=int(spec["intermediate"]), num_hidden_layers=int(spec["layers"]),
        num_attention_heads=int(spec["heads"]), num_key_value_heads=int(spec["kv_heads"]),
        max_position_embeddings=int(spec["max_len"]), rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=bool(spec["tied"]), attention_bias=False, mlp_bias=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.bos_token_id = 1
    model.generation_config.eos_token_id = 2
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    head = 0 if cfg.tie_word_embeddings else model.get_output_embeddings().weight.numel()
    return {"params": n, "embedding_params": emb, "head_params": head,
            "files": sorted(os.listdir(out))}


def main():
    spec = json.load(open(sys.argv[1]))
    print("RESULT " + json.dumps(build(spec)), flush=True)


if __name__ == "__main__":
    main()
