"""Language-model GRPO speed: jaxgrpo against TRL's GRPOTrainer on the same CPU, alternating.

    python -m benchmarks.text_vs_trl            # widths 64, 128, 256 -> benchmarks/text_vs_trl.md
    python -m benchmarks.text_vs_trl --tiny     # smoke size, no TRL
    python -m benchmarks.text_vs_trl --pretrained         # -> benchmarks/text_vs_trl_pretrained.md
    python -m benchmarks.text_vs_trl --pretrained --tiny  # smoke size, no TRL (needs transformers)

The same work on both sides: a causal transformer of ``--layers`` x width x ``--heads`` (TRL: a
GPT-2 configuration with random weights; jaxgrpo: ``jaxgrpo.text``'s model, the same shape:
pre-LayerNorm blocks, 4x tanh-gelu MLP, learned positions, untied head), a character tokenizer
built locally (nothing is downloaded; TRL runs with the hub offline), 3-digit addition prompts
(``text:addition``'s prompts, decoded), ``--prompts`` prompts x ``--group-size`` completions of
``--new-tokens`` tokens per iteration sampled at temperature 1, reward 1 for the exact answer,
one optimizer step per iteration (TRL: ``steps_per_generation=1``, ``num_iterations=1``;
jaxgrpo: ``update_epochs=1``, ``num_minibatches=1``), ``loss_type="grpo"``, ``beta=0``
(neither side runs a reference model), float32. TRL runs in benchmarks/.venv-trl (made here
on first use), with torch on all cores.

Per width, alternating ``--repeats`` times (jaxgrpo in this process, TRL in a fresh one), the
median of

- seconds per iteration (generation, verification, update) and completion tokens per second,
  counting ``prompts x group size x new tokens`` generated positions (both sides decode that
  many; a sequence past its EOS still occupies its slot);
- jaxgrpo only: the same with 8 seeds vmapped (tokens of all seeds), its compile time, and its
  two phases timed on their own: generation (``text.grpo.sample_completions``: prefill and
  KV-cache decode) and learn (``text.grpo.score`` then ``update.learn``: one forward and backward over
  the whole sequences); the learn phase's model FLOPs utilization is
  ``6 x non-embedding parameters x sequence tokens (prompt + completion) per second`` over
  the dense-matmul rate measured here (float32 ``[2048, 2048] @ [2048, 2048]`` in XLA);
- peak resident memory of each system's process (VmHWM).

Also: jaxgrpo's generation time against ``max_new_tokens`` in {16, 64, 256} (the KV cache
makes it linear), at the middle width.

``--pretrained``: both sides load one Hugging Face checkpoint folder, a random
``LlamaForCausalLM`` built here with transformers and ``save_pretrained`` (``--vocab`` 32000,
``--hidden`` 256, ``--layers`` 4, ``--heads`` 8, ``--kv-heads`` 4, ``--intermediate`` 768,
tied embeddings unless ``--untied``; ``peers/llama_checkpoint.py``, run in TRL's venv) with a
character-level ``tokenizers`` tokenizer padded to the vocabulary; the dataset is addition
prompts with answers and the reward a Python function (``exact_answer``) on both sides
(jaxgrpo: ``env="text:dataset"``, ``init_from=DIR``, ``reward_funcs``; TRL: the folder via
``AutoModelForCausalLM``, gradient checkpointing off). Full fine-tuning and LoRA (rank
``--lora-rank`` 16, alpha ``--lora-alpha`` 32 on q, k, v, o, gate, up, down; TRL: peft's
``LoraConfig`` with the same), each configuration in a fresh process so that its peak
resident memory (VmHWM) is its own, alternating jaxgrpo and TRL ``--repeats`` times; medians
of completion tokens per second of whole iterations.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
TRL_PINS_FIRST = ["torch==2.13.0"]         # the CPU wheel first, so pip never pulls a CUDA one
TRL_PINS = ["trl==1.16.0", "transformers==5.24.0", "peft==0.21.2", "datasets", "torch==2.13.0"]


def trl_python() -> Path:
    from benchmarks.run import ensure_venv
    return ensure_venv(HERE / ".venv-trl", [TRL_PINS_FIRST, TRL_PINS])


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trl_cells(j, t) -> tuple:
    """A table row's TRL cells beside jaxgrpo's result ``j``: (jaxgrpo / TRL ratio, TRL
    tokens/s, TRL s/step, TRL peak RSS), dashes where TRL did not run (``t`` None)."""
    if not t:
        return "-", "not run", "-", "-"
    return (f"{j['tokens_per_s'] / t['tokens_per_s']:.2f}", f"{t['tokens_per_s']:,.0f}",
            f"{t['step_s']:.3f}", f"{t['peak_rss_mib']:.0f}")

def _median_time(fn, args, reps):
    import jax
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    """Float32 dense-matmul rate of this device, GFLOP/s (XLA, ``[n, n] @ [n, n]``)."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    return 2 * n ** 3 / _median_time(f, (a, a), reps) / 1e9


def config(a, width, iterations, new_tokens=None, max_len=64):
    from jaxgrpo import GRPOConfig
    # prompts without leading zeros (``123+45=``), as the measured tables were made
    return GRPOConfig(env="text:addition", env_kwargs={"leading_zeros": False},
                      num_layers=a.layers, width=width, num_heads=a.heads,
                      max_len=max_len, max_new_tokens=new_tokens or a.new_tokens,
                      num_groups=a.prompts, group_size=a.group_size, update_epochs=1,
                      num_minibatches=1, loss_type="grpo", beta=0.0, temperature=1.0,
                      num_iterations=iterations, total_timesteps=10 ** 9)


def non_embedding_params(params) -> int:
    import jax
    return int(sum(x.size for k, v in params.items() if k not in ("wte", "wpe")
                   for x in jax.tree.leaves(v)))


def jax_point(a, width) -> dict:
    """jaxgrpo's numbers at one width (compiled once; every timing excludes compilation)."""
    import jax

    from jaxgrpo import make_train
    from jaxgrpo.text import grpo as tg
    from jaxgrpo.update import learn

    n_it = a.iterations
    cfg = config(a, width, n_it)
    train = make_train(cfg)
    keys = jax.random.split(jax.random.key(0), 8)
    t = time.perf_counter()
    one = jax.jit(train).lower(keys[0]).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(one(keys[0]))
    first = time.perf_counter() - t
    runs = []
    for r in range(a.inner):
        t = time.perf_counter()
        jax.block_until_ready(one(keys[r % 8]))
        runs.append(time.perf_counter() - t)
    it_s = statistics.median(runs) / n_it
    vm = jax.jit(jax.vmap(train)).lower(keys).compile()
    jax.block_until_ready(vm(keys))
    t = time.perf_counter()
    jax.block_until_ready(vm(keys))
    vm_it_s = (time.perf_counter() - t) / n_it

    # the two phases on their own, on the initial params
    hp = cfg.hparams()
    state = jax.jit(train.init)(keys[0], hp)
    policy, task = tg.make_policy(cfg), cfg.task
    C, P, M = cfg.num_groups * cfg.group_size, task.prompt_len, task.max_new_tokens
    gen = jax.jit(lambda p, k: tg.sample_completions(policy, task, p, k, cfg.num_groups,
                                                     cfg.group_size, hp["temperature"]))
    gen_s = _median_time(gen, (state.params, keys[1]), a.inner)
    rollout, _ = gen(state.params, keys[1])
    opt = train.optimizer(hp)

    def learn_phase(params, opt_state, rollout, key):
        batch, weight, mask, _ = tg.score(cfg, policy, params, rollout, hp)
        loss_fn = lambda p, c, w, m: tg.loss(cfg, policy, p, params, c, w, m, hp)
        return learn(loss_fn, params, opt_state, opt, batch, weight, mask, key, epochs=1,
                     num_minibatches=1, chunk=cfg.chunk_size)
    learn_s = _median_time(jax.jit(learn_phase), (state.params, state.opt_state, rollout,
                                                  keys[2]), a.inner)
    n_params = non_embedding_params(state.params)
    seq_tokens = C * (P + M)
    return {"width": width, "iteration_s": it_s, "first_run_s": first, "compile_s": compile_s,
            "tokens_per_s": C * M / it_s, "vmap8_iteration_s": vm_it_s,
            "vmap8_tokens_per_s": 8 * C * M / vm_it_s, "generation_s": gen_s,
            "learn_s": learn_s, "non_embedding_params": n_params, "sequence_tokens": seq_tokens,
            "learn_gflops": 6 * n_params * seq_tokens / learn_s / 1e9,
            "completion_tokens": C * M, "prompt_len": P, "peak_rss_mib": peak_rss_mib()}


def generation_scaling(a, width, lengths=(16, 64, 256)) -> list[dict]:
    import jax

    from jaxgrpo import make_train
    from jaxgrpo.text import grpo as tg
    rows = []
    for m in lengths:
        cfg = config(a, width, 1, new_tokens=m, max_len=16 + m)
        train = make_train(cfg)
        state = jax.jit(train.init)(jax.random.key(0), cfg.hparams())
        policy, task = tg.make_policy(cfg), cfg.task
        gen = jax.jit(lambda p, k, policy=policy, task=task, cfg=cfg: tg.sample_completions(
            policy, task, p, k, cfg.num_groups, cfg.group_size, 1.0))
        t = time.perf_counter()
        jax.block_until_ready(gen(state.params, jax.random.key(1)))
        compile_s = time.perf_counter() - t
        s = _median_time(gen, (state.params, jax.random.key(1)), a.inner)
        rows.append({"max_new_tokens": m, "generation_s": s, "per_token_ms": s / m * 1e3,
                     "first_call_s": compile_s})
    return rows


def prompts_for_trl(a, n=256):
    """``n`` prompts of jaxgrpo's addition task, decoded, with their answers."""
    import jax
    cfg = config(a, 64, 1)
    task = cfg.task
    ps = jax.vmap(task.sample)(jax.random.split(jax.random.key(7), n))
    tok = task.tokenizer
    prompts = [tok.decode(t) for t in ps.tokens]
    answers = [str(eval(p.rstrip("="))) for p in prompts]     # "123+456=" -> "579"
    return prompts, answers, tok.chars


def trl_point(a, py, width, prompts, answers, chars) -> dict:
    spec = {"prompts": prompts, "answers": answers, "chars": chars, "layers": a.layers,
            "width": width, "heads": a.heads, "max_len": 64, "num_prompts": a.prompts,
            "group_size": a.group_size, "max_new_tokens": a.new_tokens,
            "steps": a.trl_steps, "warmup": 3, "lr": 1e-4, "loss_type": "grpo"}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.json"
        path.write_text(json.dumps({**spec, "output_dir": d}))
        p = subprocess.run([str(py), str(HERE / "peers" / "trl_grpo.py"), str(path)],
                           capture_output=True, text=True, timeout=3600)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            r["tokens_per_s"] = r["completion_tokens_per_step"] / r["step_s"]
            return r
    raise RuntimeError(f"TRL failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")


def markdown(res) -> str:
    a = res["settings"]
    gf = res["matmul_gflops"]
    lines = ["# Language-model GRPO: jaxgrpo against TRL", "",
             f"`{res['command']}` on {res['machine']}; TRL {res.get('trl_versions', 'not run')}. "
             f"{a['layers']} layers x width x {a['heads']} heads, {a['prompts']} prompts x "
             f"{a['group_size']} completions of {a['new_tokens']} tokens per iteration, one "
             "optimizer step per iteration, loss_type grpo, beta 0, float32, 3-digit addition "
             f"prompts; medians of {a['repeats']} alternating repeats. Dense-matmul rate of this "
             f"CPU (XLA, float32): {gf:.0f} GFLOP/s.", "",
             "| width | jaxgrpo tokens/s | TRL tokens/s | jaxgrpo / TRL (target >= 3) "
             "| s / iteration: jaxgrpo, TRL | jaxgrpo 8 seeds vmapped tokens/s "
             "| learn phase GFLOP/s (share of matmul rate; target >= 50%) "
             "| generation, learn s | compile s | peak RSS MiB: jaxgrpo, TRL |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w in res["widths"]:
        j, t = w["jax"], w.get("trl")
        ratio, t_tps, t_step, t_rss = trl_cells(j, t)
        lines.append(
            f"| {w['width']} | {j['tokens_per_s']:,.0f} | {t_tps} | {ratio} "
            f"| {j['iteration_s']:.3f}, {t_step} | {j['vmap8_tokens_per_s']:,.0f} "
            f"| {j['learn_gflops']:.0f} ({100 * j['learn_gflops'] / gf:.0f}%) "
            f"| {j['generation_s']:.3f}, {j['learn_s']:.3f} | {j['compile_s']:.1f} "
            f"| {j['peak_rss_mib']:.0f}, {t_rss} |")
    lines += ["", f"Generation alone (jaxgrpo, width {res['gen_width']}, "
              f"{a['prompts'] * a['group_size']} sequences):", "",
              "| max_new_tokens | seconds | ms per token | first call (compile) s |",
              "|---:|---:|---:|---:|"]
    for g in res["generation"]:
        lines.append(f"| {g['max_new_tokens']} | {g['generation_s']:.3f} "
                     f"| {g['per_token_ms']:.2f} | {g['first_call_s']:.1f} |")
    lines += ["", "Tokens are generated positions (prompts x completions x new tokens), the same "
              "count on both sides. The learn phase is `text.grpo.score` + `update.learn` timed "
              "on its own; its FLOPs are 6 x non-embedding parameters (output head included) x "
              "sequence tokens, prompt included. jaxgrpo's peak RSS is that of the whole "
              "benchmark process.", "", "Targets (computed from the table above): " + reading(res)]
    return "\n".join(lines) + "\n"


def reading(res) -> str:
    """The targets, met or not, in words (from the measured numbers only)."""
    gf, out = res["matmul_gflops"], []
    ratios = [(w["width"], w["jax"]["tokens_per_s"] / w["trl"]["tokens_per_s"])
              for w in res["widths"] if w.get("trl")]
    if ratios:
        met = [str(w) for w, r in ratios if r >= 3]
        out.append("jaxgrpo / TRL tokens per second is "
                   + ", ".join(f"{r:.1f}x at width {w}" for w, r in ratios)
                   + f"; the 3x target is met at {'width ' + ', '.join(met) if met else 'no width'}.")
    shares = [(w["width"], w["jax"]["learn_gflops"] / gf) for w in res["widths"]]
    met = [str(w) for w, s in shares if s >= 0.5]
    out.append("The learn phase runs at " + ", ".join(f"{100 * s:.0f}%" for _, s in shares)
               + " of the matmul rate; the 50% target is met at "
               + (f"width {', '.join(met)}." if met else "no width."))
    g = res["generation"]
    if len(g) > 1:
        first, last = g[0], g[-1]
        out.append(f"Generation costs {first['per_token_ms']:.2f} ms per token at "
                   f"max_new_tokens {first['max_new_tokens']} and {last['per_token_ms']:.2f} at "
                   f"{last['max_new_tokens']} ({last['per_token_ms'] / first['per_token_ms']:.1f}x): "
                   "O(max_new_tokens) decode steps, each of which attends to (reads) every slot "
                   "of the preallocated cache, so the per-token cost grows with the cache.")
    return " ".join(out)


def median_row(rows: list[dict]) -> dict:
    """Per key, the median over ``rows`` of a number (bools and others: the first row's)."""
    return {k: (statistics.median([r[k] for r in rows])
                if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)
                else rows[0][k]) for k in rows[0]}


# ----------------------------------------------------------------------------- --pretrained

LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")      # jaxgrpo's names ...
PEFT_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
                "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}   # ... and peft's
TRL_WARMUP_PRETRAINED = 2


def exact_answer(prompts, completions, answer, **_):
    """The reward function of both sides (TRL's signature): 1.0 where the completion, stripped
    of surrounding white space, is the answer, else 0.0 (lists of len(completions))."""
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def vm_hwm_mib() -> float:
    """This process's peak resident memory, MiB (VmHWM from /proc/self/status; ru_maxrss where
    there is no /proc)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def checkpoint_spec(a, out_dir) -> dict:
    return {"dir": str(out_dir), "vocab": a.vocab, "hidden": a.hidden,
            "intermediate": a.intermediate, "layers": a.layers, "heads": a.heads,
            "kv_heads": a.kv_heads, "max_len": 256, "tied": not a.untied, "seed": 0}


def _result(cmd, what, timeout=3600, cwd=None) -> dict:
    """Run ``cmd`` and return the JSON of its last ``RESULT {...}`` line (RuntimeError with
    the output's tail when there is none)."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                       cwd=cwd)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{what} failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n"
                       f"{p.stderr[-3000:]}")


def build_checkpoint(a, py, out_dir) -> dict:
    """Write the random Llama checkpoint and its tokenizer to ``out_dir`` with transformers
    (``peers/llama_checkpoint.py`` run by ``py``, a Python with torch and transformers)."""
    spec = checkpoint_spec(a, out_dir)
    path = Path(out_dir).with_suffix(".spec.json")
    path.write_text(json.dumps(spec))
    return _result([py, HERE / "peers" / "llama_checkpoint.py", path], "the checkpoint builder",
                   timeout=600)


def builder_python(py):
    """The Python that builds the checkpoint: TRL's venv when TRL runs, else this one if it
    has transformers and torch (ValueError otherwise, naming what is missing)."""
    if py is not None:
        return py
    import importlib.util
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"--pretrained --no-trl builds its checkpoint with transformers in this "
                         f"Python, which lacks {', '.join(missing)}; install them or drop "
                         "--no-trl (TRL's venv builds it)")
    return sys.executable


def pretrained_rows(n=256, seed=7) -> list[dict]:
    """The dataset of both sides: ``n`` addition prompts of two numbers below 1000 without
    leading zeros (``"123+45="``, as ``text:addition``'s) with their answers (``"168"``)."""
    import random
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x, y = rng.randrange(1000), rng.randrange(1000)
        rows.append({"prompt": f"{x}+{y}=", "answer": str(x + y)})
    return rows


def pretrained_config(spec):
    """jaxgrpo's ``GRPOConfig`` for a ``jax_pretrained_spec``: ``text:dataset`` over
    ``spec["rows"]`` with the Python reward ``exact_answer``, the checkpoint ``init_from``,
    ``lora_rank`` 0 (full fine-tuning) or the adapters' rank, one optimizer step per
    generation, beta 0, temperature 1."""
    from jaxgrpo import GRPOConfig
    lora = {"lora_rank": int(spec["lora_rank"]), "lora_alpha": float(spec["lora_alpha"]),
            "lora_targets": tuple(spec["lora_targets"])} if spec["lora_rank"] else {}
    return GRPOConfig(env="text:dataset", env_kwargs={"data": spec["rows"],
                                                      "prompt_column": "prompt"},
                      init_from=spec["model_dir"], reward_funcs=(exact_answer,),
                      num_groups=int(spec["num_prompts"]), group_size=int(spec["group_size"]),
                      max_new_tokens=int(spec["max_new_tokens"]), update_epochs=1,
                      num_minibatches=1, loss_type="grpo", beta=0.0, temperature=1.0,
                      lr=float(spec["lr"]), max_grad_norm=1.0,
                      num_iterations=int(spec["iterations"]), total_timesteps=10 ** 9, **lora)


def jax_pretrained_point(spec) -> dict:
    """jaxgrpo's whole GRPO iterations on the checkpoint ``spec["model_dir"]`` (run in a fresh
    process, so that its VmHWM is this configuration's), ``pretrained_config(spec)``, compiled
    as ``jaxgrpo train`` runs it: the initial state from the checkpoint's params
    (``runs.init_params``, an argument of the compiled init), then ``train.run(state, None,
    iterations)`` over the state. The median of ``inner`` timed calls, each continuing from
    the state the one before left (the first call after compilation is not timed)."""
    import jax

    from jaxgrpo import make_train
    from jaxgrpo.runs import init_params
    n_it = int(spec["iterations"])
    t = time.perf_counter()
    cfg = pretrained_config(spec)
    params = init_params(cfg)
    train = make_train(cfg, params=params)
    state = jax.jit(lambda k, p: train.init(k, None, p))(jax.random.key(0), params)
    jax.block_until_ready(state)
    del params
    setup_s = time.perf_counter() - t
    t = time.perf_counter()
    run = jax.jit(lambda s: train.run(s, None, n_it)).lower(state).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    state, metrics = jax.block_until_ready(run(state))
    first = time.perf_counter() - t
    runs = []
    for _ in range(int(spec["inner"])):
        t = time.perf_counter()
        state, metrics = jax.block_until_ready(run(state))
        runs.append(time.perf_counter() - t)
    it_s = statistics.median(runs) / n_it
    n_all = sum(x.size for x in jax.tree.leaves(state.params))
    n_lora = sum(x.size for x in jax.tree.leaves(state.params.get("lora", [])))
    C = cfg.num_groups * cfg.group_size
    M = cfg.task.max_new_tokens
    lengths = metrics.get("completions/mean_length")
    return {"iteration_s": it_s, "iteration_s_all": [x / n_it for x in runs],
            "tokens_per_s": C * M / it_s, "completion_tokens": C * M,
            "mean_completion_length": None if lengths is None else float(lengths.mean()),
            "prompt_len": int(cfg.task.prompt_len), "first_run_s": first,
            "compile_s": compile_s, "setup_s": setup_s, "params": int(n_all - n_lora),
            "trainable_params": int(n_lora if spec["lora_rank"] else n_all),
            "opt_state_floats": int(sum(x.size for x in jax.tree.leaves(state.opt_state))),
            "peak_rss_mib": vm_hwm_mib(), "jax": jax.__version__}


def jax_pretrained_spec(a, model_dir, rows, lora: bool) -> dict:
    """What ``jax_pretrained_point`` runs (JSON)."""
    return {"model_dir": str(model_dir), "rows": rows, "num_prompts": a.prompts,
            "group_size": a.group_size, "max_new_tokens": a.new_tokens, "lr": 1e-4,
            "iterations": a.iterations, "inner": a.inner,
            "lora_rank": a.lora_rank if lora else 0, "lora_alpha": a.lora_alpha,
            "lora_targets": list(LORA_TARGETS)}


def trl_pretrained_spec(a, model_dir, rows, lora: bool) -> dict:
    """What ``peers/trl_grpo.py`` runs (JSON): the same checkpoint, rows, batch and adapters
    (peft's module names)."""
    return {"model_dir": str(model_dir), "prompts": [r["prompt"] for r in rows],
            "answers": [r["answer"] for r in rows], "num_prompts": a.prompts,
            "group_size": a.group_size, "max_new_tokens": a.new_tokens,
            "steps": a.trl_steps, "warmup": TRL_WARMUP_PRETRAINED, "lr": 1e-4,
            "loss_type": "grpo", "gradient_checkpointing": False,
            "lora": {"rank": a.lora_rank, "alpha": a.lora_alpha,
                     "targets": [PEFT_TARGETS[t] for t in LORA_TARGETS]} if lora else None}


def jax_pretrained_run(a, model_dir, rows, lora: bool) -> dict:
    """``jax_pretrained_point`` in a fresh process (this module's ``--jax-side``)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.json"
        path.write_text(json.dumps(jax_pretrained_spec(a, model_dir, rows, lora)))
        return _result([sys.executable, "-m", "benchmarks.text_vs_trl", "--jax-side", path],
                       "jaxgrpo" + " (LoRA)" * lora, cwd=HERE.parent)


def trl_pretrained_run(a, py, model_dir, rows, lora: bool) -> dict:
    """TRL's GRPOTrainer on the checkpoint, in TRL's venv (``py``)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.json"
        path.write_text(json.dumps({**trl_pretrained_spec(a, model_dir, rows, lora),
                                    "output_dir": d}))
        r = _result([py, HERE / "peers" / "trl_grpo.py", path], "TRL" + " (LoRA)" * lora)
    r["tokens_per_s"] = r["completion_tokens_per_step"] / r["step_s"]
    r["iteration_s"] = r["step_s"]
    return r


VARIANTS = (("full", False), ("lora", True))


def pretrained_main(a) -> int:
    if a.tiny:
        a.vocab, a.hidden, a.intermediate, a.layers, a.heads, a.kv_heads = 512, 32, 64, 1, 2, 1
        a.prompts, a.group_size, a.new_tokens, a.lora_rank = 4, 2, 4, 4
        a.iterations, a.inner, a.repeats, a.no_trl = 2, 1, 1, True
    for name in ("vocab", "hidden", "intermediate", "layers", "heads", "kv_heads", "lora_rank"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.heads % a.kv_heads or a.hidden % a.heads:
        raise ValueError(f"--kv-heads ({a.kv_heads}) must divide --heads ({a.heads}), which "
                         f"must divide --hidden ({a.hidden})")
    from jaxgrpo.provenance import machine
    py = None if a.no_trl else trl_python()
    rows = pretrained_rows()
    res = {"command": "python -m benchmarks.text_vs_trl --pretrained" + " --tiny" * a.tiny,
           "machine": machine(), "settings": vars(a), "variants": [],
           "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = a.model_dir
        if model_dir is None:
            model_dir = Path(tmp) / "llama"
            res["checkpoint"] = build_checkpoint(a, builder_python(py), model_dir)
        res["config"] = json.loads((Path(model_dir) / "config.json").read_text())
        runs = {v: {"jax": [], "trl": []} for v, _ in VARIANTS}
        for r in range(a.repeats):
            for v, lora in VARIANTS:
                runs[v]["jax"].append(jax_pretrained_run(a, model_dir, rows, lora))
                print(f"repeat {r + 1}, {v}: jaxgrpo "
                      f"{runs[v]['jax'][-1]['tokens_per_s']:,.0f} tokens/s", flush=True)
                if py:
                    runs[v]["trl"].append(trl_pretrained_run(a, py, model_dir, rows, lora))
                    print(f"repeat {r + 1}, {v}: TRL "
                          f"{runs[v]['trl'][-1]['tokens_per_s']:,.0f} tokens/s", flush=True)
    for v, _ in VARIANTS:
        row = {"variant": v, "jax": median_row(runs[v]["jax"]), "jax_all": runs[v]["jax"]}
        if runs[v]["trl"]:
            row.update(trl=median_row(runs[v]["trl"]), trl_all=runs[v]["trl"])
            res["trl_versions"] = ", ".join(f"{k} {x}" for k, x in
                                            runs[v]["trl"][0]["versions"].items())
        res["variants"].append(row)
    res["loadavg_end"] = os.getloadavg()
    from benchmarks.measure import write_report
    write_report(pretrained_markdown(res), res,
                 a.out or (None if a.tiny else str(HERE / "text_vs_trl_pretrained.md")))
    return 0


def pretrained_markdown(res) -> str:
    a, c = res["settings"], res["config"]
    n = res["variants"][0]["jax"]["params"]
    emb = c["vocab_size"] * c["hidden_size"]
    tied = c.get("tie_word_embeddings", False)
    load = (f" Load average (1 min) at the start and the end: {res['loadavg_start'][0]:.1f}, "
            f"{res['loadavg_end'][0]:.1f}." if "loadavg_end" in res else "")
    lines = ["# Language-model GRPO on a pretrained-shaped checkpoint: jaxgrpo against TRL", "",
             f"`{res['command']}` on {res['machine']}; TRL {res.get('trl_versions', 'not run')}."
             + load, "",
             f"The checkpoint: a random `LlamaForCausalLM` built here with transformers and "
             f"written with `save_pretrained` (nothing downloaded), vocabulary "
             f"{c['vocab_size']:,}, hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, "
             f"{c['num_attention_heads']} query heads and {c['num_key_value_heads']} key/value "
             f"heads (grouped-query attention), SwiGLU MLP of {c['intermediate_size']}, RMSNorm, "
             f"RoPE, {'tied' if tied else 'untied'} embeddings: {n:,} parameters, {emb:,} of "
             "them in the embedding"
             + ("" if tied else " and as many in the output head") + "; a character-level "
             "`tokenizers` WordLevel tokenizer padded to the vocabulary. Both sides load that "
             "folder (jaxgrpo: `GRPOConfig(init_from=DIR, env=\"text:dataset\", ...)`; TRL: "
             "`AutoModelForCausalLM.from_pretrained(DIR)` and its tokenizer).", "",
             f"The same work on both sides: {a['prompts']} prompts x {a['group_size']} "
             f"completions of {a['new_tokens']} tokens per iteration, 3-digit addition prompts "
             "(`123+45=`) with a Python reward function (exact match of the answer), sampling "
             "at temperature 1, loss_type grpo, beta 0, one optimizer step per generation, "
             "float32; LoRA: rank "
             f"{a['lora_rank']}, alpha {a['lora_alpha']:g} on q, k, v, o, gate, up and down "
             "projections (TRL: peft's LoraConfig with the same targets, no dropout). TRL runs "
             "with gradient checkpointing off (its default is on; off is faster, and jaxgrpo "
             "does not recompute either), torch on all cores. Each configuration runs in a "
             "fresh process, alternating jaxgrpo and TRL "
             f"{a['repeats']} times; medians. jaxgrpo: {a['iterations']} iterations per "
             f"compiled call, {a['inner']} timed calls after the first; TRL: the steps after "
             f"{TRL_WARMUP_PRETRAINED} warm-up steps, {a['trl_steps']} timed.", "",
             "| | jaxgrpo tokens/s | TRL tokens/s | jaxgrpo / TRL (target >= 2) "
             "| s / iteration: jaxgrpo, TRL | trainable parameters | jaxgrpo compile s "
             "| peak RSS MiB: jaxgrpo, TRL |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"full": "full fine-tuning", "lora": f"LoRA (rank {a['lora_rank']})"}
    for row in res["variants"]:
        j, t = row["jax"], row.get("trl")
        ratio, t_tps, t_step, t_rss = trl_cells(j, t)
        lines.append(
            f"| {names[row['variant']]} | {j['tokens_per_s']:,.0f} | {t_tps} | {ratio} "
            f"| {j['iteration_s']:.3f}, {t_step} | {j['trainable_params']:,} "
            f"| {j['compile_s']:.1f} | {j['peak_rss_mib']:.0f}, {t_rss} |")
    lines += ["", "Tokens are generated positions (prompts x completions x new tokens), the same "
              "count on both sides (a random model with a 32k vocabulary almost never draws its "
              "EOS, so every completion runs to the limit on both). Peak RSS is each "
              "configuration's own process (VmHWM), import and compilation included.", "",
              "Target (computed from the table above): " + pretrained_reading(res)]
    return "\n".join(lines) + "\n"


def pretrained_reading(res) -> str:
    """The 2x target per variant, on the medians, with the ratio of each repeat's pair."""
    out = []
    for row in res["variants"]:
        if row.get("trl"):
            r = row["jax"]["tokens_per_s"] / row["trl"]["tokens_per_s"]
            pairs = ", ".join(f"{j['tokens_per_s'] / t['tokens_per_s']:.2f}x"
                              for j, t in zip(row["jax_all"], row["trl_all"]))
            out.append(f"{row['variant']}: jaxgrpo / TRL is {r:.2f}x (repeat by repeat: "
                       f"{pairs}), the 2x target " + ("met." if r >= 2 else "not met."))
    return " ".join(out) or "TRL not run."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="width 32, 2 iterations, no TRL")
    p.add_argument("--pretrained", action="store_true",
                   help="a random Llama-architecture Hugging Face checkpoint with a 32k vocabulary "
                   "(full fine-tuning and LoRA) -> benchmarks/text_vs_trl_pretrained.md")
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--layers", type=int, help="default 2 (--pretrained: 4)")
    p.add_argument("--heads", type=int, help="default 4 (--pretrained: 8)")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument("--iterations", type=int, help="jaxgrpo iterations per run (default 10; "
                   "--pretrained: 4)")
    p.add_argument("--trl-steps", type=int, help="TRL steps timed, after 3 (--pretrained: 2) "
                   "warmup steps (default 10; --pretrained: 4)")
    p.add_argument("--repeats", type=int, help="alternating repeats (default 2; --pretrained: 3)")
    p.add_argument("--inner", type=int, help="timed calls per jaxgrpo measurement (default 5; "
                   "--pretrained: 2)")
    p.add_argument("--no-trl", action="store_true")
    p.add_argument("--out", help="markdown to write (default benchmarks/text_vs_trl.md, "
                   "--pretrained: benchmarks/text_vs_trl_pretrained.md; --tiny: only when given)")
    g = p.add_argument_group("--pretrained: the checkpoint and the adapters")
    g.add_argument("--vocab", type=int, default=32000)
    g.add_argument("--hidden", type=int, default=256)
    g.add_argument("--intermediate", type=int, default=768)
    g.add_argument("--kv-heads", type=int, default=4)
    g.add_argument("--untied", action="store_true", help="an output head of its own "
                   "(default: tied to the embedding, as Llama-3.2 and SmolLM2)")
    g.add_argument("--lora-rank", type=int, default=16)
    g.add_argument("--lora-alpha", type=float, default=32.0)
    g.add_argument("--model-dir", help="use this checkpoint folder (as llama_checkpoint.py "
                   "writes it) instead of building one in a temporary folder")
    p.add_argument("--jax-side", metavar="SPEC.json", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.jax_side:
        out = jax_pretrained_point(json.loads(Path(a.jax_side).read_text()))
        print("RESULT " + json.dumps(out), flush=True)
        return 0
    defaults = ({"layers": 4, "heads": 8, "iterations": 4, "trl_steps": 4, "repeats": 3,
                 "inner": 2} if a.pretrained else
                {"layers": 2, "heads": 4, "iterations": 10, "trl_steps": 10, "repeats": 2,
                 "inner": 5})
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.pretrained:
        return pretrained_main(a)
    if a.tiny:
        a.widths, a.iterations, a.inner, a.repeats, a.no_trl = [32], 2, 1, 1, True
        a.prompts, a.group_size = 4, 2
    from jaxgrpo.provenance import machine
    res = {"command": "python -m benchmarks.text_vs_trl" + (" --tiny" if a.tiny else ""),
           "machine": machine(), "settings": vars(a), "matmul_gflops": matmul_gflops(
               512 if a.tiny else 2048), "widths": []}
    py = None if a.no_trl else trl_python()
    data = prompts_for_trl(a)
    for width in a.widths:
        js, ts = [], []
        for _ in range(a.repeats):
            js.append(jax_point(a, width))
            print(f"width {width}: jaxgrpo {js[-1]['tokens_per_s']:,.0f} tokens/s", flush=True)
            if py:
                ts.append(trl_point(a, py, width, *data))
                print(f"width {width}: TRL {ts[-1]['tokens_per_s']:,.0f} tokens/s", flush=True)
        row = {"width": width, "jax": median_row(js), "jax_all": js}
        if ts:
            row.update(trl=median_row(ts), trl_all=ts)
            res["trl_versions"] = ", ".join(f"{k} {v}" for k, v in ts[0]["versions"].items())
        res["widths"].append(row)
    res["gen_width"] = a.widths[len(a.widths) // 2]
    res["generation"] = generation_scaling(a, res["gen_width"],
                                           (4, 8) if a.tiny else (16, 64, 256))
    from benchmarks.measure import write_report
    write_report(markdown(res), res, a.out or (None if a.tiny else str(HERE / "text_vs_trl.md")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
