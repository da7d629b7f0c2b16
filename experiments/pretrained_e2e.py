"""A pretrained-model workflow end to end, from nothing downloaded: a Hugging Face checkpoint in,
SFT, GRPO with Python reward functions (8 seeds vmapped; full fine-tuning and LoRA), checkpoints
out, and transformers agreeing with jaxgrpo on the exported models.

    python -m experiments.pretrained_e2e            # -> experiments/results/pretrained_e2e.{md,json}
    python -m experiments.pretrained_e2e --tiny     # smoke size (the test suite runs it)

1. A byte-level BPE tokenizer (``tokenizers``, digits split one per token, a ChatML-style chat
   template) is trained on the task's text, and a small Llama-architecture model with random
   weights (transformers' ``LlamaForCausalLM``: grouped-query attention, RMSNorm, SwiGLU, RoPE,
   tied embeddings) is written with it as a Hugging Face checkpoint folder.
2. The task: sort ``--digits`` digits, ``{"prompt": [{"role": "user", "content": "sort
   314159"}], "answer": "113459"}`` rows in a JSONL file, a tenth held out.
3. ``jaxgrpo.sft`` from that folder (``init_from``), then ``jaxgrpo export`` of the SFT model to a
   new Hugging Face folder.
4. GRPO from the exported folder with the Python reward function ``sorted_correctly`` (TRL's
   signature), 8 seeds vmapped in one program: full fine-tuning, and LoRA (adapters only).
5. Held-out greedy accuracy of the SFT start and of every GRPO seed on the same held-out prompts;
   the gain per seed and its 95% bootstrap CI over seeds.
6. ``jaxgrpo export`` of seed 0 of each GRPO run (LoRA merged), loaded by transformers'
   ``AutoModelForCausalLM`` and ``AutoTokenizer``: its greedy answers on the same held-out
   prompts (the chat template applied by transformers) score the accuracy jaxgrpo's do.

Needs the test extra (``pip install -e '.[test]'``: transformers and torch's CPU build) for
steps 1 and 6.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.common import code_version

RESULTS = Path(__file__).parent / "results"
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

FULL = {"seeds": 8, "digits": 6, "rows": 4000, "width": 64, "layers": 2, "sft_steps": 100,
        "grpo_iterations": 100, "num_groups": 16, "group_size": 8, "lr": 1e-4, "lora_rank": 8,
        "lora_alpha": 16.0, "lora_lr": 2e-3, "eval_prompts": 400, "temperature": 0.5}
TINY = {"seeds": 2, "digits": 3, "rows": 200, "width": 16, "layers": 1, "sft_steps": 3,
        "grpo_iterations": 2, "num_groups": 2, "group_size": 2, "lr": 1e-4, "lora_rank": 2,
        "lora_alpha": 4.0, "lora_lr": 1e-3, "eval_prompts": 8, "temperature": 0.5}


def sorted_correctly(prompts, completions, answer, **columns):
    """The reward function (TRL's signature): 1.0 when the completion's text is exactly the
    sorted digits, else 0.0."""
    return [1.0 if c[-1]["content"].strip() == a else 0.0 for c, a in zip(completions, answer)]


# ----------------------------------------------------------------------------- 1. checkpoint

def task_rows(n, digits, seed=0):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        s = "".join(rng.choice("0123456789") for _ in range(digits))
        rows.append({"prompt": [{"role": "user", "content": f"sort {s}"}],
                     "answer": "".join(sorted(s))})
    return rows


def build_checkpoint(directory: Path, rows, width, layers):
    """Train the tokenizer on the rows' text and write it with a random Llama model."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=list(SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = [f"user\n{r['prompt'][0]['content']}\nassistant\n{r['answer']}\n" for r in rows]
    tok.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=TEMPLATE)
    fast.save_pretrained(str(directory))
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(fast), hidden_size=width, intermediate_size=2 * width,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64, tie_word_embeddings=True, rope_theta=10000.0,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    model = transformers.LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(str(directory))
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- 6. transformers

def transformers_greedy(directory: Path, rows, max_new_tokens):
    """Greedy answers of the exported checkpoint by transformers, one prompt at a time (no
    padding): the decoded completions."""
    import torch
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory),
                                                              torch_dtype=torch.float32)
    model.eval()
    out = []
    with torch.no_grad():
        for r in rows:
            ids = tok.apply_chat_template(r["prompt"], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


# ----------------------------------------------------------------------------- the run

def ci(per_seed):
    from jaxgrpo.stats import bootstrap_ci
    m, lo, hi = bootstrap_ci(np.asarray(per_seed, np.float64))
    return {"per_seed": [float(x) for x in per_seed], "mean": m, "ci95": [lo, hi]}


def greedy_per_seed(config, params, prompts):
    """jaxgrpo's greedy accuracy per seed (params [S, ...]) on ``prompts``, and seed 0's
    decoded completions."""
    import jax
    from jaxgrpo.text.evaluation import completion_scores
    from jaxgrpo.text.grpo import make_policy
    task, model = config.task, make_policy(config)
    key = jax.random.key(0)
    comp, rew = jax.jit(lambda ps: jax.lax.map(
        lambda p: completion_scores(model, task, p, prompts, key, 1, greedy=True), ps))(params)
    comp, rew = np.asarray(comp)[:, :, 0], np.asarray(rew)[:, :, 0]
    texts = [task.tokenizer.decode(c) for c in comp[0]]
    return (rew >= 1.0).mean(1), texts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="smoke size (seconds)")
    ap.add_argument("--out", help="results folder (default experiments/results; --tiny: a "
                                  "temporary one)")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the table of a finished "
                    "run's pretrained_e2e.json into experiments/results, README.md and "
                    "docs/pretrained.md")
    args = ap.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        if Path(args.render).resolve() != (RESULTS / "pretrained_e2e.json").resolve():
            (RESULTS / "pretrained_e2e.json").write_text(json.dumps(results, indent=1))
        publish(results)
        return results
    s = TINY if args.tiny else FULL
    import jax

    import jaxgrpo
    from jaxgrpo.cli import main as cli
    from jaxgrpo.config import GRPOConfig, SFTConfig
    from jaxgrpo.provenance import machine_info
    from jaxgrpo.runs import init_params
    from jaxgrpo.text import heldout_prompts

    t_start = time.time()
    work = Path(tempfile.mkdtemp(prefix="jaxgrpo-e2e-"))
    rows = task_rows(s["rows"], s["digits"])
    data = work / "sort.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = work / "llama-random"
    n_params = build_checkpoint(base, rows, s["width"], s["layers"])
    print(f"1. {base}: Llama, {n_params:,} parameters, random weights", flush=True)

    env = dict(env="text:dataset", env_kwargs={"data": str(data), "prompt_column": "prompt",
                                               "answer_column": "answer", "heldout": 0.1})
    sft_cfg = SFTConfig(**env, init_from=str(base), num_steps=s["sft_steps"], batch_size=128,
                        lr=1e-3, warmup_steps=min(10, s["sft_steps"] - 1))
    jaxgrpo.sft(sft_cfg, work / "sft")
    sft_hf = work / "sft-hf"
    assert cli(["export", str(work / "sft"), "--out", str(sft_hf)]) == 0
    print(f"3. SFT {s['sft_steps']} steps, exported to {sft_hf}", flush=True)

    common = dict(**env, init_from=str(sft_hf), reward_funcs=("experiments.pretrained_e2e:sorted_correctly",),
                  num_iterations=s["grpo_iterations"], num_groups=s["num_groups"],
                  group_size=s["group_size"], total_timesteps=10**8,
                  temperature=s["temperature"])
    arms = {"full fine-tuning": GRPOConfig(**common, lr=s["lr"]),
            f"LoRA (rank {s['lora_rank']})": GRPOConfig(**common, lr=s["lora_lr"],
                                                        lora_rank=s["lora_rank"],
                                                        lora_alpha=s["lora_alpha"])}
    first = next(iter(arms.values()))
    prompts = heldout_prompts(first.task, s["eval_prompts"], seed=0)
    sft_params = jax.tree.map(lambda x: x[None], init_params(first))
    sft_acc, _ = greedy_per_seed(first, sft_params, prompts)
    sft_acc = float(sft_acc[0])
    heldout_rows = [first.task.data.rows[int(i)] for i in np.asarray(prompts.index)]
    results = {"sft_start": sft_acc, "arms": {}}
    for name, cfg in arms.items():
        out = work / ("grpo-" + name.split()[0].lower())
        t0 = time.time()
        jaxgrpo.run_training(cfg, out, seeds=s["seeds"])
        seconds = time.time() - t0
        run = jaxgrpo.load_run(out)
        acc, texts = greedy_per_seed(cfg, run.state.params, prompts)
        hf_dir = work / (out.name + "-hf")
        assert cli(["export", str(out), "--out", str(hf_dir)]) == 0
        hf_texts = transformers_greedy(hf_dir, heldout_rows, cfg.task.max_new_tokens)
        hf_acc = float(np.mean(sorted_correctly(None, [[{"content": t}] for t in hf_texts],
                                                [r["answer"] for r in heldout_rows])))
        gain = ci(np.asarray(acc) - sft_acc)
        results["arms"][name] = {
            "greedy": ci(acc), "gain": gain, "seconds": seconds,
            "seed0_jaxgrpo": float(acc[0]), "seed0_transformers": hf_acc,
            "seed0_same_answers": int(sum(a == b for a, b in zip(texts, hf_texts))),
            "lr": cfg.lr, "lora_rank": cfg.lora_rank}
        print(f"{name}: greedy {np.mean(acc):.3f} (SFT start {sft_acc:.3f}), gain CI "
              f"{gain['ci95']}, transformers on the export {hf_acc:.3f} vs jaxgrpo "
              f"{acc[0]:.3f} ({seconds:.0f} s)", flush=True)
    results.update(settings=s, n_params=n_params, machine=machine_info(),
                   code=code_version(), seconds=time.time() - t_start)
    out_dir = Path(args.out) if args.out else (work / "results" if args.tiny else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pretrained_e2e.json").write_text(json.dumps(results, indent=1))
    (out_dir / "pretrained_e2e.md").write_text(report(results))
    if out_dir.resolve() == RESULTS.resolve():
        publish(results)
    print(report(results))
    return results


def publish(results) -> None:
    """The table into experiments/results/pretrained_e2e.md, and between the
    ``<!-- pretrained_e2e:begin/end -->`` markers of README.md and docs/pretrained.md."""
    from experiments.common import update_readme
    md = report(results)
    (RESULTS / "pretrained_e2e.md").write_text(md)
    root = RESULTS.parent.parent
    for page in (root / "README.md", root / "docs" / "pretrained.md"):
        update_readme(page, "pretrained_e2e", md)


def report(r) -> str:
    s, m = r["settings"], r["machine"]
    pct = lambda x: f"{100 * x:.1f}"
    lines = [
        f"`python -m experiments.pretrained_e2e` (code {r['code']}, {r['seconds']:.0f} s in all). "
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, jax {m.get('jax', '?')}, "
        f"device {m.get('device', '?')}.",
        "",
        f"A random Llama-architecture checkpoint ({r['n_params']:,} parameters, width "
        f"{s['width']}, {s['layers']} layers, grouped-query attention, tied embeddings) and a "
        f"byte-level BPE tokenizer built here; task: sort {s['digits']} digits (chat prompts); "
        f"SFT {s['sft_steps']} steps x 128 prompts, exported; GRPO from the export with the "
        f"Python reward `sorted_correctly`, {s['grpo_iterations']} iterations x "
        f"{s['num_groups']} prompts x {s['group_size']} completions at temperature "
        f"{s['temperature']}, {s['seeds']} seeds vmapped. "
        f"Held-out greedy accuracy (%) on {s['eval_prompts']} prompts, mean over seeds "
        f"[95% bootstrap CI]; the SFT start is one model.",
        "",
        "| arm | lr | SFT start | GRPO | gain | seconds (all seeds) | seed 0: jaxgrpo | seed 0: "
        "transformers on the export | same answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, a in r["arms"].items():
        g, d = a["greedy"], a["gain"]
        lines.append(
            f"| {name} | {a['lr']:g} | {pct(r['sft_start'])} | {pct(g['mean'])} "
            f"[{pct(g['ci95'][0])}, {pct(g['ci95'][1])}] | {pct(d['mean'])} "
            f"[{pct(d['ci95'][0])}, {pct(d['ci95'][1])}] | {a['seconds']:.0f} | "
            f"{pct(a['seed0_jaxgrpo'])} | {pct(a['seed0_transformers'])} | "
            f"{a['seed0_same_answers']}/{s['eval_prompts']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
