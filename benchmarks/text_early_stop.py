"""Early stop of language-model decoding: generation and whole GRPO runs with and without it.

    python -m benchmarks.text_early_stop          # -> benchmarks/text_early_stop.md and .json
    python -m benchmarks.text_early_stop --tiny   # smoke size (writes only with --out)

``Transformer.generate`` decodes in a ``lax.while_loop`` that stops once every completion of
the batch has drawn EOS (``early_stop=True``, the default); ``early_stop=False`` runs all
``max_new_tokens - 1`` decode steps, as the decoder did before, with the same bits out. This
measures both on ``text:addition`` (3 digits: answers of 4 digits, then EOS) with
``max_new_tokens=64`` (max_len 80) and the text defaults (64 prompts x 8 completions, the
2 x 128 model, temperature 1):

- the policy: a short SFT run (``--sft-steps`` steps of ``SFTConfig`` on the same task and
  model), which ends its answers with EOS after 4 digits, so the completions (EOS included)
  are about 5 tokens long; and, as a control, the model at init, whose completions almost
  never end (the early stop cannot save anything there: it shows the loop's overhead);
- generation: ``text.grpo.sample_completions`` (prompts, prefill, decode, verifier) jitted
  and compiled ahead (compile excluded), ``--repeats`` calls of each mode alternating, each
  call its own key (the same keys in both modes), median seconds; every call's outputs
  (completions, log-probs, masks, rewards, stats) compared bit for bit between the modes;
  also vmapped over ``--seeds`` keys (a seed sweep's shape: the loop then runs until every
  seed's batch has ended);
- a whole GRPO run (``make_train`` from the SFT params, ``--iterations`` iterations, one
  seed), compiled ahead, ``--run-repeats`` runs of each mode: median seconds, and every
  metric and the final params compared bit for bit. The run without the early stop is the
  same ``make_train`` with ``text.grpo.sample_completions`` bound to ``early_stop=False``
  while it is traced (``full_length_decode``).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import time
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).parent


@contextlib.contextmanager
def full_length_decode():
    """While active, GRPO's collect samples without the early stop (for tracing make_train)."""
    from jaxgrpo.text import grpo as tg
    orig = tg.sample_completions
    tg.sample_completions = functools.partial(orig, early_stop=False)
    try:
        yield
    finally:
        tg.sample_completions = orig


def bits(tree) -> list:
    """(dtype, shape, bytes) of every leaf: equal lists are bitwise-equal trees."""
    return [(np.asarray(x).dtype.str, np.asarray(x).shape, np.asarray(x).tobytes())
            for x in jax.tree.leaves(tree)]


def timed(fn, *args):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t, out


def sft_policy(a):
    from jaxgrpo.config import SFTConfig
    from jaxgrpo.train import make_train
    c = SFTConfig(env="text:addition", max_len=a.max_len, num_steps=a.sft_steps, lr=3e-3,
                  **a.model)
    t = time.perf_counter()
    state, m = jax.block_until_ready(jax.jit(make_train(c))(jax.random.key(0)))
    last = lambda k: float(np.mean(np.asarray(m[k])[-10:]))
    info = {"steps": a.sft_steps, "batch_size": c.batch_size, "lr": c.lr,
            "seconds_with_compile": time.perf_counter() - t, "loss_last10": last("loss"),
            "accuracy_last10": last("accuracy")}
    return state.params, info


def grpo_config(a, iterations=None):
    from jaxgrpo.config import GRPOConfig
    return GRPOConfig(env="text:addition", max_len=a.max_len, max_new_tokens=a.new_tokens,
                      num_groups=a.prompts, group_size=a.group_size,
                      num_iterations=iterations or 1, **a.model)


def generation(a, params, seeds=1) -> dict:
    """Median seconds of one iteration's sampling, early stop on and off (alternating)."""
    from jaxgrpo.text import grpo as tg
    g = grpo_config(a)
    model, task, M = tg.make_policy(g), g.task, g.task.max_new_tokens

    def sample(early):
        f = lambda p, k: tg.sample_completions(model, task, p, k, g.num_groups, g.group_size,
                                               g.temperature, early_stop=early)
        return jax.vmap(f, (None, 0)) if seeds > 1 else f

    def key(i):
        k = jax.random.fold_in(jax.random.key(1), i)
        return jax.random.split(k, seeds) if seeds > 1 else k
    fns, compile_s = {}, {}
    for early in (True, False):
        t = time.perf_counter()
        fns[early] = jax.jit(sample(early)).lower(params, key(0)).compile()
        compile_s[early] = time.perf_counter() - t
    for early in (True, False):                 # one untimed call each (first-call costs)
        jax.block_until_ready(fns[early](params, key(a.repeats)))
    times = {True: [], False: []}
    lengths, batch_max, equal = [], [], True
    for i in range(a.repeats):
        outs = {}
        for early in ((True, False) if i % 2 == 0 else (False, True)):
            s, outs[early] = timed(fns[early], params, key(i))
            times[early].append(s)
        equal &= bits(outs[True]) == bits(outs[False])
        roll = outs[True][0]
        lengths.append(float(np.asarray(roll.mask).sum(-1).mean()))        # EOS included
        batch_max.append(int(np.asarray(roll.length).max()))
    med = {k: statistics.median(v) for k, v in times.items()}
    mean = {k: statistics.mean(v) for k, v in times.items()}
    return {"seeds": seeds, "mean_s": mean, "speedup_of_means": mean[False] / mean[True], "completions": seeds * g.num_groups * g.group_size,
            "max_new_tokens": M, "compile_s": compile_s, "times_s": times,
            "median_s": med, "speedup": med[False] / med[True],
            "mean_completion_tokens": statistics.mean(lengths),
            "mean_batch_max_length": statistics.mean(batch_max),
            "max_batch_max_length": max(batch_max),
            "decode_steps_early": statistics.mean(min(b, M - 1) for b in batch_max),
            "decode_steps_full": M - 1,
            "calls_with_every_step": sum(min(b, M - 1) == M - 1 for b in batch_max),
            "calls": a.repeats, "bitwise_equal": bool(equal)}


def whole_run(a, params) -> dict:
    """A GRPO run of a.iterations iterations from params, early stop on and off."""
    from jaxgrpo.train import make_train
    g = grpo_config(a, a.iterations)
    key = jax.random.key(7)
    fns, compile_s = {}, {}
    for early in (True, False):
        ctx = contextlib.nullcontext() if early else full_length_decode()
        with ctx:
            t = time.perf_counter()
            fns[early] = jax.jit(make_train(g, params=params)).lower(key).compile()
            compile_s[early] = time.perf_counter() - t
    for early in (True, False):                 # one untimed run each
        jax.block_until_ready(fns[early](key))
    times, outs = {True: [], False: []}, {}
    for i in range(a.run_repeats):
        for early in ((True, False) if i % 2 == 0 else (False, True)):
            s, outs[early] = timed(fns[early], key)
            times[early].append(s)
    (state, m), (state_full, m_full) = outs[True], outs[False]
    med = {k: statistics.median(v) for k, v in times.items()}
    show = ("reward", "accuracy", "completions/mean_length", "loss", "kl", "entropy")
    return {"iterations": g.iterations, "compile_s": compile_s, "times_s": times,
            "median_s": med, "speedup": med[False] / med[True],
            "metrics_bitwise_equal": bits(m) == bits(m_full),
            "params_bitwise_equal": bits(state.params) == bits(state_full.params),
            "metric_names": len(m),
            "metrics": {k: np.asarray(m[k]).tolist() for k in show if k in m}}


def markdown(res) -> str:
    s = res["settings"]
    out = [
        "# Early stop of text decoding",
        "",
        f"Command: `{res['command']}`. Machine: {res['machine']}. Load average (1 min) "
        f"{res['load_before']:.2f} before, {res['load_after']:.2f} after (other work shared "
        "the 2 cores: the lead engineer's and other helpers' jobs).",
        "",
        f"Task `text:addition` (3 digits; prompts {res['prompt_len']} tokens, answers 4 digits "
        f"then EOS), `max_new_tokens={s['new_tokens']}`, max_len {s['max_len']}, "
        f"{s['prompts']} prompts x {s['group_size']} completions per iteration, model "
        f"{res['model']}, temperature 1. Policy: {res['sft']['steps']} SFT steps "
        f"(batch {res['sft']['batch_size']}, lr {res['sft']['lr']}; last-10-step loss "
        f"{res['sft']['loss_last10']:.3f}, exact-answer accuracy "
        f"{res['sft']['accuracy_last10']:.2f}). Compile excluded; times are medians of "
        f"{s['repeats']} calls per mode (generation) and {s['run_repeats']} runs per mode "
        "(whole run), the modes alternating.",
        "",
        "## Generation (one iteration's `sample_completions`)",
        "",
        "| policy | seeds | completions | mean completion tokens (EOS incl.) | decode steps "
        "run, early stop (mean) | of | calls that ran every step | early stop on (s) | "
        "off (s) | speedup (medians) | speedup (means) | outputs bitwise equal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in res["generation"]:
        out.append(f"| {name} | {r['seeds']} | {r['completions']} | "
                   f"{r['mean_completion_tokens']:.2f} | {r['decode_steps_early']:.1f} | "
                   f"{r['decode_steps_full']} | {r['calls_with_every_step']} of {r['calls']} | "
                   f"{r['median_s']['True']:.3f} | "
                   f"{r['median_s']['False']:.3f} | {r['speedup']:.2f}x | "
                   f"{r['speedup_of_means']:.2f}x | "
                   f"{'yes' if r['bitwise_equal'] else 'NO'} |")
    w = res["whole_run"]
    out += [
        "",
        "Decode steps run: the batch's longest completion decides (the loop stops when the "
        "last completion of the batch, or vmapped of every seed's batch, has drawn EOS); "
        "the prefill draws the first token, so a batch whose longest answer has EOS at "
        "index L runs L decode steps. Sampled at temperature 1, a batch of the SFT policy "
        "now and then holds a completion that misses its EOS and runs to max_new_tokens "
        "(the calls that ran every step): the median is the typical call, the mean pays for "
        "those too. The init policy almost never draws EOS, so "
        "both modes run every step there (the control: what the early stop's condition "
        "costs when it never fires).",
        "",
        "## Whole GRPO run",
        "",
        f"`make_train` from the SFT params, {w['iterations']} iterations, one seed: early stop "
        f"on {w['median_s']['True']:.2f} s, off {w['median_s']['False']:.2f} s "
        f"({w['speedup']:.2f}x); compile {w['compile_s']['True']:.1f} s and "
        f"{w['compile_s']['False']:.1f} s. All {w['metric_names']} metrics bitwise equal: "
        f"{'yes' if w['metrics_bitwise_equal'] else 'NO'}; final params bitwise equal: "
        f"{'yes' if w['params_bitwise_equal'] else 'NO'}. The learn phase still runs over "
        "all max_new_tokens positions of every completion (static shapes), so the run gains "
        "less than generation does.",
        "",
        "| iteration | " + " | ".join(w["metrics"]) + " |",
        "|---:|" + "---:|" * len(w["metrics"]),
    ]
    for i in range(w["iterations"]):
        out.append(f"| {i} | " + " | ".join(f"{v[i]:.4g}" for v in w["metrics"].values())
                   + " |")
    out += ["", f"All timings (s): `{json.dumps(res['all_times'])}`", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="smoke size")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--max-len", type=int, default=80)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--sft-steps", type=int, default=400)
    p.add_argument("--repeats", type=int, default=9, help="generation calls per mode")
    p.add_argument("--seeds", type=int, default=4, help="vmapped seeds (0: skip)")
    p.add_argument("--iterations", type=int, default=5, help="GRPO iterations per run")
    p.add_argument("--run-repeats", type=int, default=3, help="whole runs per mode")
    p.add_argument("--out", help="markdown to write (default benchmarks/text_early_stop.md; "
                   "--tiny: only when given)")
    a = p.parse_args(argv)
    a.model = {}
    if a.tiny:
        a.new_tokens, a.max_len, a.prompts, a.group_size = 16, 32, 4, 4
        a.sft_steps, a.repeats, a.seeds, a.iterations, a.run_repeats = 100, 2, 2, 2, 1
        a.model = {"width": 32, "num_heads": 2, "num_layers": 1}
    from jaxgrpo.provenance import machine
    from jaxgrpo.text import grpo as tg
    res = {"command": "python -m benchmarks.text_early_stop" + (" --tiny" if a.tiny else ""),
           "machine": machine(), "load_before": os.getloadavg()[0],
           "settings": {k: v for k, v in vars(a).items() if k != "model"}}
    g = grpo_config(a)
    res["prompt_len"] = g.task.prompt_len
    res["model"] = (f"{g.num_layers}-layer, width {g.width}, {g.num_heads} heads, "
                    f"{g.positions} positions")
    params, res["sft"] = sft_policy(a)
    print(f"SFT: {res['sft']}", flush=True)
    init = tg.make_policy(g).init(jax.random.key(0))
    res["generation"] = []
    for name, p_, seeds in [("SFT", params, 1), ("init (control)", init, 1)] + (
            [("SFT", params, a.seeds), ("init (control)", init, a.seeds)]
            if a.seeds > 1 else []):
        r = generation(a, p_, seeds)
        r["median_s"] = {str(k): v for k, v in r["median_s"].items()}
        r["mean_s"] = {str(k): v for k, v in r["mean_s"].items()}
        r["compile_s"] = {str(k): v for k, v in r["compile_s"].items()}
        r["times_s"] = {str(k): v for k, v in r["times_s"].items()}
        res["generation"].append((name, r))
        print(f"generation {name} x{seeds}: on {r['median_s']['True']:.3f} s, off "
              f"{r['median_s']['False']:.3f} s, {r['speedup']:.2f}x, mean tokens "
              f"{r['mean_completion_tokens']:.2f}, bitwise {r['bitwise_equal']}", flush=True)
    w = whole_run(a, params)
    for k in ("median_s", "compile_s", "times_s"):
        w[k] = {str(e): v for e, v in w[k].items()}
    res["whole_run"] = w
    print(f"whole run: on {w['median_s']['True']:.2f} s, off {w['median_s']['False']:.2f} s, "
          f"metrics bitwise {w['metrics_bitwise_equal']}, params bitwise "
          f"{w['params_bitwise_equal']}", flush=True)
    res["load_after"] = os.getloadavg()[0]
    res["all_times"] = {**{f"generation {n} x{r['seeds']}": r["times_s"]
                           for n, r in res["generation"]},
                        "whole run": w["times_s"]}
    from benchmarks.measure import write_report
    write_report(markdown(res), res, a.out or (None if a.tiny else str(HERE / "text_early_stop.md")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
