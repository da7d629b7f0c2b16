"""Language-model GRPO speed: jaxgrpo against TRL's GRPOTrainer on the same CPU, alternating.

    python -m benchmarks.text_vs_trl            # widths 64, 128, 256 -> benchmarks/text_vs_trl.md
    python -m benchmarks.text_vs_trl --tiny     # smoke size, no TRL

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
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
TRL_PINS_FIRST = ["torch==2.13.0"]         # the CPU wheel first, so pip never pulls a CUDA one
TRL_PINS = ["trl==1.16.0", "transformers==5.24.0", "datasets", "torch==2.13.0"]


def trl_python() -> Path:
    from benchmarks.run import ensure_venv
    return ensure_venv(HERE / ".venv-trl", [TRL_PINS_FIRST, TRL_PINS])


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        ratio = f"{j['tokens_per_s'] / t['tokens_per_s']:.2f}" if t else "-"
        t_tps = f"{t['tokens_per_s']:,.0f}" if t else "not run"
        t_step = f"{t['step_s']:.3f}" if t else "-"
        t_rss = f"{t['peak_rss_mib']:.0f}" if t else "-"
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="width 32, 2 iterations, no TRL")
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument("--iterations", type=int, default=10, help="jaxgrpo iterations per run")
    p.add_argument("--trl-steps", type=int, default=10, help="TRL steps timed (after 3)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--inner", type=int, default=5, help="timed calls per jaxgrpo measurement")
    p.add_argument("--no-trl", action="store_true")
    p.add_argument("--out", help="markdown to write (default benchmarks/text_vs_trl.md; "
                   "--tiny: only when given)")
    a = p.parse_args(argv)
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
        med = lambda rows: {k: (statistics.median([r[k] for r in rows])
                                if isinstance(rows[0][k], (int, float)) else rows[0][k])
                            for k in rows[0]}
        row = {"width": width, "jax": med(js), "jax_all": js}
        if ts:
            row.update(trl=med(ts), trl_all=ts)
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
