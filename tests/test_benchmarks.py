"""benchmarks/: the report writers, on the committed results (``benchmarks.run --render``) and
on fake measurements (the scaling part's tables and targets, ``benchmarks.accelerator``), the
scaling part's points, and the command's argument errors. Nothing
here measures: the benchmarks' smoke runs are ``python -m benchmarks.run --tiny --no-peers``
and ``python -m benchmarks.accelerator --tiny`` (benchmarks are not tests)."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np


ROOT = Path(__file__).resolve().parent.parent


def test_render_rewrites_the_report_from_results_json(tmp_path):
    """--render writes the README from results.json alone (the committed full run), measuring
    nothing; again from the same file, the same README."""
    from benchmarks import run
    shutil.copy(ROOT / "benchmarks" / "results.json", tmp_path / "results.json")
    assert run.main(["--render", "--out-dir", str(tmp_path)]) == 0
    md = (tmp_path / "README.md").read_text()
    assert "Machine:" in md and "| GRPO | CartPole-v1 |" in md
    res = json.loads((tmp_path / "results.json").read_text())
    for row in res["throughput"]:
        assert row["sps"]["median"] > 0 and 0 < row["valid_frac"] <= 1
    # links to the hand-written companions resolve from wherever the README was written
    link = re.search(r"\[FINDINGS\.md\]\(([^)]+)\)", md).group(1)
    assert (tmp_path / link).resolve() == ROOT / "benchmarks" / "FINDINGS.md"
    (tmp_path / "README.md").unlink()
    assert run.main(["--render", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == md


def test_render_without_results_is_rejected(tmp_path):
    p = subprocess.run([sys.executable, "-m", "benchmarks.run", "--render", "--out-dir",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--render: no results.json in" in p.stderr


def test_unknown_part_is_rejected():
    p = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", "--parts", "nope"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--parts: unknown 'nope'" in p.stderr


def test_scaling_points_are_the_issue_s_widths_and_seeds():
    """The full scaling part: every width 64..4,096 on CartPole, Acrobot and Breakout-MinAtar
    for GRPO (num_envs L, L / 8 groups of 8, the stream collector) and on CartPole for PPO
    (num_envs L x 128 steps), each config valid, GRPO and PPO with the same whole-iteration
    budget; seeds 1, 16, 64 of both algorithms' defaults, vmapped and lax.map'ed."""
    from benchmarks import run
    from benchmarks.measure import make_config
    pts = run.width_points()
    by = {}
    for p in pts:
        cfg = make_config(p)                      # the config's own checks
        L = p["x"]
        assert cfg.num_envs == L and cfg.num_steps == 128
        steps = p["overrides"]["total_timesteps"]
        assert steps % (L * 128) == 0 and steps // (L * 128) == cfg.iterations
        if p["algo"] == "grpo":
            assert not cfg.on_policy and cfg.group_size == 8 and cfg.num_groups == L // 8
        by.setdefault((p["env"], L), {}).setdefault(p["algo"], set()).add(steps)
    assert sorted({w for _, w in by}) == [64, 256, 1024, 4096]
    for env in ("CartPole-v1", "Acrobot-v1", "Breakout-MinAtar"):
        for w in (64, 256, 1024, 4096):
            assert "grpo" in by[(env, w)]
    for w in (64, 256, 1024, 4096):
        d = by[("CartPole-v1", w)]
        assert d["grpo"] == d["ppo"] and len(d["grpo"]) == 1 and min(d["grpo"]) >= 1_000_000
    assert len([p for p in pts if p["env"] == "CartPole-v1" and p["x"] == 64]) == 6   # 3 repeats
    seeds = run.seed_points()
    assert sorted({(p["algo"], p["x"], p["mode"]) for p in seeds}) == sorted(
        [(a, 1, "single") for a in ("grpo", "ppo")]
        + [(a, n, m) for a in ("grpo", "ppo") for n in (16, 64) for m in ("map", "vmap", "shard")])
    for p in seeds:
        cfg = make_config(p)
        assert p["seeds"] == p["x"] and p["overrides"]["total_timesteps"] == 100_000
        assert (cfg.num_envs, cfg.num_steps) == ((32, 128) if p["algo"] == "grpo" else (4, 128))


def _raw(sps, valid_frac=1.0, staleness=2.0, steps=1000.0):
    return {"sps": sps, "sim_sps": sps / valid_frac, "valid_frac": valid_frac,
            "valid_steps": steps, "sim_steps": steps / valid_frac, "compile_s": 3.0,
            "run_s": steps / sps, "staleness_mean": staleness, "staleness_max": 5.0,
            "dropped": 0.0, "final_return": 100.0, "peak_rss_mib": 900.0}


def test_scaling_report_reads_ratios_and_verdicts_from_the_rows():
    """The tables and targets computed from measurements (numbers made up here): GRPO / PPO
    per width from the medians, met where >= 1 and NOT met below; the valid fraction over the
    whole run (sum valid / sum simulated) against 0.95; vmapped / sequential seeds."""
    from benchmarks import run
    pts = run.width_points(widths=(64, 256), tiny=True)
    pts = [p for p in pts if p["env"] == "CartPole-v1"]          # 2 repeats x (grpo, ppo)
    speed = {(64, "grpo"): [300.0, 500.0], (64, "ppo"): [200.0, 250.0],
             (256, "grpo"): [90.0, 110.0], (256, "ppo"): [100.0, 200.0]}
    raw = [_raw(speed[(p["x"], p["algo"])][p["key"]],
                valid_frac=0.9 if (p["x"], p["algo"]) == (256, "grpo") else 1.0) for p in pts]
    spts = run.seed_points(counts=(1, 16), steps=4096, tiny=True, algos=("grpo",))
    assert [p["mode"] for p in spts] == ["single", "vmap", "map", "shard"]
    raw_s = [_raw(s) for s in (100.0, 110.0, 100.0, 190.0)]      # single, vmap, map, shard
    raw_s[3]["devices"] = 2
    sc = run.scaling_tables(pts + spts, raw + raw_s)
    md = "\n".join(run.scaling_markdown(sc))
    rows = {int(line.split("|")[2].replace(",", "")): [c.strip() for c in line.split("|")]
            for line in md.splitlines() if line.startswith("| CartPole-v1 |")}
    assert rows[64][7:9] == ["1.78x (1.50, 2.00)", "met"]           # 400 / 225
    assert rows[256][7:9] == ["0.67x (0.90, 0.55)", "NOT met"]      # 100 / 150
    assert rows[64][9] == "1.000 met" and rows[256][9] == "0.900 NOT met"
    assert rows[64][5] == "400 [300, 500]"
    seeds = [line for line in md.splitlines() if line.startswith("| GRPO | 16 |")]
    # sequential, vmapped on one device, / sequential, over the 2 devices, / sequential, verdict
    assert len(seeds) == 1 and "| 16 | 100 | 110 | 1.10x | 190 | 1.90x | met |" in seeds[0]
    targets = {t: (s, n) for t, s, n in run.scaling_targets(sc)}
    assert targets["GRPO CartPole-v1: valid fraction >= 0.95 at 64, 256 lanes"][0] == "NOT met"
    assert targets["GRPO >= PPO valid env steps/s on CartPole-v1 at 64, 256 lanes"] == (
        "NOT met", "64: 1.78x; 256: 0.67x (medians of the repeats)")
    assert targets["16 vmapped GRPO seeds >= 1.3x the same seeds sequential (lax.map)"] == (
        "met", "1.90x vmapped over 2 devices, as jaxgrpo.sweep runs them (190 vs 100 steps/s); "
               "vmapped on one device 1.10x (110 vs 100 steps/s)")
    # without the sharded point, the verdict is the one device's
    sc1 = run.scaling_tables(pts + spts[:3], raw + raw_s[:3])
    assert run.scaling_targets(sc1)[-1][1:] == ("NOT met",
                                                "1.10x (110 vs 100 steps/s) on one device")
    # a point whose process failed is reported, and fails its targets
    raw[2] = {"error": "Killed"}                                   # GRPO 64, repeat 1
    sc = run.scaling_tables(pts + spts, raw + raw_s)
    g64 = next(r for r in sc["widths"] if (r["width"], r["algo"]) == (64, "grpo"))
    assert g64["repeats"] == 1 and g64["error"] == "Killed" and g64["sps"]["median"] == 300.0
    assert "Failed: GRPO CartPole-v1 at 64 lanes: `Killed`" in "\n".join(run.scaling_markdown(sc))


def test_accelerator_script_tiny(tmp_path, monkeypatch):
    """benchmarks/accelerator.py, the script to run when a GPU/TPU is lent, at CPU smoke size,
    its measurement replaced by a fake: the points, the skip past the time limit, the report."""
    from benchmarks import accelerator, measure
    specs = []

    def fake_measure(spec):
        specs.append(spec)
        return {**_raw(1234.0 if spec["algo"] == "grpo" else 1000.0), "compile_s": 1.5,
                "run_s": 0.25, "hit_steps_per_seed": None, "hit_time_s": None}

    monkeypatch.setattr(measure, "measure_train", fake_measure)
    out = tmp_path / "acc.md"
    assert accelerator.main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    assert [(s["algo"], s["axis"], s["x"]) for s in specs] == [
        ("grpo", "width", 8), ("ppo", "width", 8), ("grpo", "seeds", 1), ("grpo", "seeds", 2),
        ("grpo", "seeds", 2), ("grpo", "curve", 2), ("ppo", "curve", 2)]
    assert all(s["env"] == "CartPole-v1" and s["kind"] == "train" for s in specs)
    assert "| CartPole-v1 | 8 | 1,000 | 1 | 1.2k | 1.0k | 1.23x | met | 1.000 met |" in text
    assert "| GRPO | 2 | 1.2k | 1.2k | 1.00x | NOT met |" in text
    assert "not run (`--rejax-python`)" in text and "device: 1 x cpu" in text
    assert "Skipped (time limit): none." in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert len(saved["rows"]) == 7 and saved["rows"][0]["sps"] == 1234.0
    # past the time limit: no point starts, each is listed as skipped
    specs.clear()
    assert accelerator.main(["--tiny", "--minutes", "0", "--out", str(out)]) == 0
    assert specs == [] and ("Skipped (time limit): grpo CartPole-v1 L=8 key=0, ppo CartPole-v1 "
                            "L=8 key=0, grpo seeds=1 single,") in out.read_text()


def _text_vs_trl_fakes(monkeypatch, calls):
    """benchmarks.text_vs_trl --pretrained with its measurements replaced by fakes that record
    their order and specs: jaxgrpo 3,000 (full) / 4,000 (LoRA) tokens/s, TRL 1,000 / 2,500
    (repeat r adds r to each)."""
    from benchmarks import text_vs_trl as b
    tps = {("jax", False): 3000.0, ("jax", True): 4000.0, ("trl", False): 1000.0,
           ("trl", True): 2500.0}

    def fake_build(a, py, out_dir):
        Path(out_dir).mkdir(parents=True)
        cfg = {"vocab_size": a.vocab, "hidden_size": a.hidden, "num_hidden_layers": a.layers,
               "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
               "intermediate_size": a.intermediate, "tie_word_embeddings": not a.untied}
        (Path(out_dir) / "config.json").write_text(json.dumps(cfg))
        calls.append(("build", py))
        return {"params": 1}

    def fake_jax(a, model_dir, rows, lora):
        spec = b.jax_pretrained_spec(a, model_dir, rows, lora)
        calls.append(("jax", lora, spec))
        r = sum(c[0] == "jax" and c[1] == lora for c in calls) - 1
        t = tps["jax", lora] + r
        return {"tokens_per_s": t, "iteration_s": 1024 / t, "compile_s": 9.0,
                "trainable_params": 311296 if lora else 11340032, "params": 11340032,
                "peak_rss_mib": 900.0 + 100 * lora}

    def fake_trl(a, py, model_dir, rows, lora):
        spec = b.trl_pretrained_spec(a, model_dir, rows, lora)
        calls.append(("trl", lora, spec))
        r = sum(c[0] == "trl" and c[1] == lora for c in calls) - 1
        t = tps["trl", lora] + r
        return {"tokens_per_s": t, "step_s": 1024 / t, "iteration_s": 1024 / t,
                "peak_rss_mib": 2800.0, "versions": {"trl": "1.16.0", "peft": "0.21.2"}}

    monkeypatch.setattr(b, "build_checkpoint", fake_build)
    monkeypatch.setattr(b, "jax_pretrained_run", fake_jax)
    monkeypatch.setattr(b, "trl_pretrained_run", fake_trl)
    monkeypatch.setattr(b, "trl_python", lambda: "trl-python")
    return b


def test_text_vs_trl_pretrained_alternates_and_reports(tmp_path, monkeypatch):
    """--pretrained: one checkpoint built with TRL's Python, then per repeat jaxgrpo and TRL
    alternate on full fine-tuning and LoRA; the table has the medians, their ratio, and the 2x
    target read from them."""
    calls = []
    b = _text_vs_trl_fakes(monkeypatch, calls)
    out = tmp_path / "pre.md"
    assert b.main(["--pretrained", "--repeats", "3", "--out", str(out)]) == 0
    assert calls[0] == ("build", "trl-python")
    assert [c[:2] for c in calls[1:]] == [("jax", False), ("trl", False), ("jax", True),
                                          ("trl", True)] * 3
    text = out.read_text()
    # medians of 3000, 3001, 3002 and 1000, 1001, 1002: 3.00x; LoRA 4001 / 2501 = 1.60x
    assert "| full fine-tuning | 3,001 | 1,001 | 3.00 |" in text
    assert "| LoRA (rank 16) | 4,001 | 2,501 | 1.60 |" in text
    assert "| 11,340,032 | 9.0 | 900, 2800 |" in text and "| 311,296 | 9.0 | 1000, 2800 |" in text
    assert ("full: jaxgrpo / TRL is 3.00x (repeat by repeat: 3.00x, 3.00x, 3.00x), the 2x "
            "target met.") in text
    assert ("lora: jaxgrpo / TRL is 1.60x (repeat by repeat: 1.60x, 1.60x, 1.60x), the 2x "
            "target not met.") in text
    assert "Load average (1 min) at the start and the end:" in text
    assert "vocabulary 32,000, hidden 256, 4 layers, 8 query heads and 4 key/value" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [v["variant"] for v in saved["variants"]] == ["full", "lora"]
    assert len(saved["variants"][1]["trl_all"]) == 3


def test_text_vs_trl_pretrained_sides_get_the_same_work(tmp_path, monkeypatch):
    """Both sides get the same checkpoint, prompts with answers, batch, completion length,
    learning rate and adapters (jaxgrpo's target names mapped to peft's), TRL with gradient
    checkpointing off; full fine-tuning has no adapters on either side."""
    calls = []
    b = _text_vs_trl_fakes(monkeypatch, calls)
    assert b.main(["--pretrained", "--repeats", "1", "--prompts", "4", "--group-size", "3",
                   "--new-tokens", "5", "--lora-rank", "8", "--lora-alpha", "16",
                   "--out", str(tmp_path / "p.md")]) == 0
    (_, _, jf), (_, _, tf), (_, _, jl), (_, _, tl) = calls[1:]
    for j, t in ((jf, tf), (jl, tl)):
        assert j["model_dir"] == t["model_dir"] and j["lr"] == t["lr"]
        assert [r["prompt"] for r in j["rows"]] == t["prompts"]
        assert [r["answer"] for r in j["rows"]] == t["answers"]
        assert (j["num_prompts"], j["group_size"], j["max_new_tokens"]) == (4, 3, 5)
        assert (t["num_prompts"], t["group_size"], t["max_new_tokens"]) == (4, 3, 5)
        assert t["gradient_checkpointing"] is False and t["loss_type"] == "grpo"
    assert jf["lora_rank"] == 0 and tf["lora"] is None
    assert (jl["lora_rank"], jl["lora_alpha"]) == (8, 16.0)
    assert tl["lora"] == {"rank": 8, "alpha": 16.0, "targets": [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    assert jl["lora_targets"] == ["q", "k", "v", "o", "gate", "up", "down"]
    # the prompts are 3-digit additions with their sums as answers
    assert all(str(eval(r["prompt"].rstrip("="))) == r["answer"] for r in jf["rows"])
    assert b.exact_answer(["1+2="] * 3, [" 3", "3\n", "33"], answer=["3"] * 3) == [1.0, 1.0, 0.0]


def test_text_vs_trl_pretrained_bad_shape_is_rejected():
    from benchmarks import text_vs_trl as b
    import pytest
    with pytest.raises(ValueError, match=r"--kv-heads \(3\) must divide --heads \(8\)"):
        b.main(["--pretrained", "--kv-heads", "3", "--no-trl"])


def _fake_pretrained() -> dict:
    """A text_vs_trl_pretrained.json of made-up numbers (the script's layout): an untied
    50,000-token checkpoint, full fine-tuning with TRL, LoRA without."""
    real = json.loads((ROOT / "benchmarks" / "text_vs_trl_pretrained.json").read_text())
    res = json.loads(json.dumps(real))
    res["command"] = "python -m benchmarks.text_vs_trl --pretrained --vocab 50000 --untied"
    res["machine"] = "Fake CPU, 64 cores, jax 9.9, device cpu"
    res["config"].update(vocab_size=50_000, hidden_size=128, tie_word_embeddings=False,
                         num_hidden_layers=3, num_key_value_heads=2, intermediate_size=384)
    res["settings"].update(prompts=5, group_size=6, new_tokens=7, repeats=2, lora_rank=4,
                           lora_alpha=8.0)
    res["loadavg_start"], res["loadavg_end"] = [1.25, 1, 1], [2.5, 2, 2]
    full, lora = res["variants"]
    full["jax"].update(tokens_per_s=3000.0, peak_rss_mib=1000.4, params=12_800_000)
    full["trl"].update(tokens_per_s=1200.0, peak_rss_mib=2000.6)
    for k in ("trl", "trl_all"):
        lora.pop(k)
    lora["jax"].update(tokens_per_s=250.0, peak_rss_mib=900.0)
    return res


def test_render_includes_the_pretrained_section_from_its_json(tmp_path):
    """--render with a text_vs_trl_pretrained.json beside results.json: the README's
    subsection under the TRL comparison is that JSON's command, machine, checkpoint, work,
    and per variant jaxgrpo's and TRL's tokens/s, their ratio and peak RSS; TRL not run shows
    as such. Without the file, no subsection."""
    from benchmarks import run
    shutil.copy(ROOT / "benchmarks" / "results.json", tmp_path / "results.json")
    assert run.main(["--render", "--out-dir", str(tmp_path)]) == 0
    md0 = (tmp_path / "README.md").read_text()
    assert "pretrained" not in md0
    (tmp_path / run.PRETRAINED_JSON).write_text(json.dumps(_fake_pretrained()))
    assert run.main(["--render", "--out-dir", str(tmp_path)]) == 0
    md = (tmp_path / "README.md").read_text()
    sec = md[md.index("### On a pretrained-shaped checkpoint (50k vocabulary)"):]
    assert md.index("## Language-model GRPO against TRL") < md.index(sec[:30])
    assert sec.startswith("### On a pretrained-shaped checkpoint (50k vocabulary), full "
                          "fine-tuning and LoRA\n\n`python -m benchmarks.text_vs_trl "
                          "--pretrained --vocab 50000 --untied` (the `text-pretrained` part) "
                          "on Fake CPU, 64 cores, jax 9.9, device cpu: ")
    assert ("(vocabulary 50,000, hidden 128, 3 layers, 8 query / 2 key-value heads, SwiGLU "
            "384, untied embeddings: 12.8M parameters, 6.4M of them in the embedding and as "
            "many in the output head)") in sec
    assert "; 5 prompts x 6 completions of 7 tokens per iteration" in sec
    assert "LoRA rank 4, alpha 8 on q, k, v, o" in sec and "medians of 2 repeats" in sec
    assert "load average (1 min) 1.2 at the start and 2.5 at the end" in sec
    assert "[text_vs_trl_pretrained.md](text_vs_trl_pretrained.md)" in sec
    assert "| full fine-tuning | 3.0k | 1.2k | 2.50x | 1000, 2001 |" in sec
    assert "| LoRA (rank 4) | 250 | not run | - | 900, - |" in sec
    assert [ln[:1] for ln in sec.splitlines()[-4:]] == ["|"] * 4   # header, rule, two rows
    assert md.endswith(sec) and len(sec.splitlines()) == 8
    # the targets and every other section as without the file
    assert md[:-len(sec)].rstrip("\n") == md0.rstrip("\n")


def test_committed_readme_is_its_render():
    """benchmarks/README.md is exactly what --render writes from the committed results.json
    and text_vs_trl_pretrained.json (nothing hand-written in it that a re-render would drop);
    its pretrained rows carry the JSON's medians."""
    from benchmarks import run
    here = ROOT / "benchmarks"
    res = run.with_pretrained(json.loads((here / "results.json").read_text()), here)
    res["targets"] = run.check_targets(res)
    md = run.markdown(res, here)
    assert md == (here / "README.md").read_text()
    tp = json.loads((here / run.PRETRAINED_JSON).read_text())
    for v in tp["variants"]:
        j, t = v["jax"], v["trl"]
        assert (f"| {run.fmt_k(j['tokens_per_s'])} | {run.fmt_k(t['tokens_per_s'])} | "
                f"{j['tokens_per_s'] / t['tokens_per_s']:.2f}x | {j['peak_rss_mib']:.0f}, "
                f"{t['peak_rss_mib']:.0f} |") in md
    assert f"`{tp['command']}` (the `text-pretrained` part) on {tp['machine']}: " in md


def test_text_pretrained_part_runs_the_script(tmp_path, monkeypatch):
    """--parts text-pretrained runs `python -m benchmarks.text_vs_trl --pretrained` (with
    --tiny / --no-trl as asked) writing into the out-dir, and keeps its JSON in the results."""
    from types import SimpleNamespace
    from benchmarks import run
    assert "text-pretrained" in run.PARTS
    assert all(callable(getattr(run, "part_" + p.replace("-", "_"))) for p in run.PARTS)
    cmds = []

    def fake_run(cmd, cwd, check):
        cmds.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        out.with_suffix(".json").write_text(json.dumps({"command": " ".join(cmd[1:4])}))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    for tiny, no_peers, flags in ((False, False, []), (True, True, ["--tiny", "--no-trl"])):
        res = {}
        run.part_text_pretrained(SimpleNamespace(tiny=tiny, no_peers=no_peers, outdir=tmp_path),
                                 res)
        assert cmds[-1] == [sys.executable, "-m", "benchmarks.text_vs_trl", "--pretrained",
                            *flags, "--out", str(tmp_path / "text_vs_trl_pretrained.md")]
        assert res["text_pretrained"] == {"command": "-m benchmarks.text_vs_trl --pretrained"}


def test_vmap_ceiling_sizes_flops_and_report():
    """benchmarks.vmap_ceiling: the minibatch sizes are the default configs' (PPO 4 x 128 / 4,
    GRPO 32 x 128 / 4), its flop count is 6 per weight per sample of the CartPole policy
    (4 -> 64 -> 64 -> 2), and the report reads each row's times (nothing measured here)."""
    from benchmarks import vmap_ceiling as vc
    from jaxgrpo import GRPOConfig, PPOConfig
    assert vc.minibatch(PPOConfig()) == 128 and vc.minibatch(GRPOConfig()) == 1024
    _, flops = vc.make_run(batch=16, steps=3)
    assert flops == 6 * (4 * 64 + 64 * 64 + 64 * 2) * 16 * 3
    rows = [{"n": 16, "batch": 1024, "vmapped": {"s": 0.5, "gflops": 40.0},
             "sequential": {"s": 0.6, "gflops": 33.3}, "speedup": 1.2}]
    info = {"cpu": "X", "isa": ["avx2"], "cores": 2, "device": "1 x cpu (cpu)", "jax": "0",
            "flax": "0", "optax": "0"}
    md = vc.markdown(rows, info, "python -m benchmarks.vmap_ceiling", "GRPO default 1,024")
    assert "| 16 | 1,024 | 500.0 | 600.0 | 40.0 | 33.3 | 1.20x |" in md
    assert "X (avx2), 2 cores" in md


def test_seeds_mode_shard_trains_the_seeds_sharded_over_the_devices():
    """benchmarks.measure's "shard" mode (the seeds vmapped within each device and sharded over
    ``jax.devices()``, as jaxgrpo.sweep runs them) trains every seed; here over the one device
    of the test process."""
    from benchmarks import measure, run
    spec = {"kind": "train", "algo": "grpo", "env": "CartPole-v1", "seeds": 2,
            "seeds_mode": "shard", "overrides": {"total_timesteps": 1024,
                                                 **run.tiny_overrides("grpo")},
            "compiler_options": {"xla_backend_optimization_level": 0}}
    r = measure.measure_train(spec)
    assert r["devices"] == 1 and r["valid_steps"] >= 2 * 1024 and r["sps"] > 0
    assert np.isfinite(r["final_return"])
