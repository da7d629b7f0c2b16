"""TRL's GRPOTrainer on a tiny GPT-2 with random weights and a character tokenizer, both built
here, or on a Hugging Face checkpoint folder built locally (nothing downloaded, hub access off);
runs in benchmarks/.venv-trl.

    python benchmarks/peers/trl_grpo.py SPEC.json

SPEC: ``{"prompts": [...], "answers": [...], "chars": "...", "layers", "width", "heads",
"max_len", "num_prompts", "group_size", "max_new_tokens", "steps", "warmup", "lr",
"loss_type", "threads"}``; or, instead of ``chars``/``layers``/``width``/``heads``/``max_len``,
``"model_dir"``: a checkpoint folder (``AutoModelForCausalLM``, float32, and its tokenizer),
with optional ``"lora": {"rank", "alpha", "targets"}`` (peft's LoraConfig: only the adapters
train) and ``"gradient_checkpointing"`` (absent: TRL's default, True). One optimizer step per generation batch of ``num_prompts`` x
``group_size`` completions (``per_device_train_batch_size = num_prompts * group_size``,
``steps_per_generation = 1``, ``num_iterations = 1``, ``beta = 0``: TRL then neither loads a
reference model nor recomputes old log-probs), float32, sampling at temperature 1, reward 1 for
an exact answer. Prints ``RESULT <json>``: seconds per step (median of the steps after
``warmup``), completion tokens generated per step, peak RSS, versions.
"""
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")


def vm_hwm_mib() -> float:
    """This process's peak resident memory (VmHWM; getrusage's ru_maxrss would include the
    parent's peak, inherited across fork on Linux)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gpt2(spec):
    """A GPT-2 with random weights and a character tokenizer, both built here."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    special = ["<pad>", "<bos>", "<eos>"]
    vocab = {t: i for i, t in enumerate(special + list(spec["chars"]))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>",
                                  eos_token="<eos>", padding_side="left")
    torch.manual_seed(int(spec.get("seed", 0)))
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(vocab), n_positions=spec["max_len"], n_embd=spec["width"],
        n_layer=spec["layers"], n_head=spec["heads"], resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 2
    return model, tok


def pretrained(spec):
    """The checkpoint folder ``spec["model_dir"]`` (float32) and its tokenizer (left padding)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(int(spec.get("seed", 0)))
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(spec["model_dir"], padding_side="left")
    return model, tok


def lora_config(spec):
    """peft's LoraConfig for ``spec["lora"] = {"rank", "alpha", "targets"}`` (None: full
    fine-tuning); no dropout, no bias, as jaxgrpo's adapters."""
    if not spec.get("lora"):
        return None
    from peft import LoraConfig
    lo = spec["lora"]
    return LoraConfig(r=int(lo["rank"]), lora_alpha=float(lo["alpha"]),
                      target_modules=list(lo["targets"]), lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM")


def main():
    spec = json.load(open(sys.argv[1]))
    import torch
    torch.set_num_threads(int(spec.get("threads", os.cpu_count())))
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    if spec.get("model_dir"):
        model, tok = pretrained(spec)
    else:
        model, tok = gpt2(spec)

    n_steps = int(spec["steps"]) + int(spec["warmup"])
    P, G = int(spec["num_prompts"]), int(spec["group_size"])
    reps = -(-n_steps * P // len(spec["prompts"])) + 1
    data = Dataset.from_dict({"prompt": spec["prompts"] * reps, "answer": spec["answers"] * reps})

    def exact(completions, answer, **_):
        return [float(c.strip() == a) for c, a in zip(completions, answer)]

    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    args = GRPOConfig(
        output_dir=spec.get("output_dir", "/tmp/trl-bench"), use_cpu=True, bf16=False, fp16=False,
        report_to="none", save_strategy="no", logging_steps=10**9, disable_tqdm=True,
        max_steps=n_steps, learning_rate=float(spec.get("lr", 1e-4)),
        per_device_train_batch_size=P * G, gradient_accumulation_steps=1,
        steps_per_generation=1, num_generations=G, num_iterations=1, beta=0.0,
        max_completion_length=int(spec["max_new_tokens"]), temperature=1.0, top_p=1.0,
        top_k=0, loss_type=spec.get("loss_type", "grpo"), scale_rewards="group",
        max_grad_norm=1.0, dataloader_num_workers=0, seed=int(spec.get("seed", 0)),
        shuffle_dataset=False,
        **({"gradient_checkpointing": bool(spec["gradient_checkpointing"])}
           if "gradient_checkpointing" in spec else {}))
    trainer = GRPOTrainer(model=model, reward_funcs=exact, args=args, train_dataset=data,
                          processing_class=tok, callbacks=[Clock()],
                          peft_config=lora_config(spec))
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    w = int(spec["warmup"])
    per_step = [b - a for a, b in zip(stamps[w - 1:], stamps[w:])] if w else \
        [b - a for a, b in zip([t0] + stamps[:-1], stamps)]
    from importlib.metadata import version
    out = {"step_s": statistics.median(per_step), "step_s_all": per_step, "train_s": total,
           "completion_tokens_per_step": P * G * int(spec["max_new_tokens"]),
           "peak_rss_mib": vm_hwm_mib(),
           "torch_threads": torch.get_num_threads(),
           "params": sum(p.numel() for p in trainer.model.parameters()),
           "trainable_params": sum(p.numel() for p in trainer.model.parameters()
                                   if p.requires_grad),
           "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
           "versions": {p: version(p) for p in ("trl", "transformers", "torch")
                        + ("peft",) * bool(spec.get("lora"))}}
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
