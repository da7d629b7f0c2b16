"""Smoke test of the benchmark script: it runs end to end in --tiny mode without the peer
venvs (--no-peers) and writes its report. No timing is asserted (benchmarks are not tests)."""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_tiny_runs(tmp_path):
    # Only the throughput part: every part shares its measuring code (benchmarks.measure), and
    # the whole --tiny run would cost the suite two minutes of compilation.
    p = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", "--no-peers",
                        "--parts", "throughput", "--out-dir", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert "throughput" in res and res["throughput"]
    for row in res["throughput"]:
        assert row["sps"]["median"] > 0 and 0 < row["valid_frac"] <= 1
    md = (tmp_path / "README.md").read_text()
    assert "Machine:" in md and "| GRPO | CartPole-v1 |" in md
    # links to the hand-written companions resolve from wherever the README was written
    link = re.search(r"\[FINDINGS\.md\]\(([^)]+)\)", md).group(1)
    assert (tmp_path / link).resolve() == ROOT / "benchmarks" / "FINDINGS.md"
    # --render rewrites the same README from results.json alone, measuring nothing
    (tmp_path / "README.md").unlink()
    p = subprocess.run([sys.executable, "-m", "benchmarks.run", "--render", "--out-dir",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "README.md").read_text() == md


def test_render_without_results_is_rejected(tmp_path):
    p = subprocess.run([sys.executable, "-m", "benchmarks.run", "--render", "--out-dir",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--render: no results.json in" in p.stderr


def test_unknown_part_is_rejected():
    p = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", "--parts", "nope"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--parts: unknown 'nope'" in p.stderr


def test_accelerator_script_tiny(tmp_path):
    """benchmarks/accelerator.py, the script to run when a GPU/TPU is lent, at CPU smoke size."""
    from benchmarks import accelerator
    out = tmp_path / "acc.md"
    assert accelerator.main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line.split("|") for line in text.splitlines() if line.startswith(("| ppo", "| grpo"))]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [("ppo", "4"), ("grpo", "2")]
    for r in rows:
        assert float(r[3].replace(",", "")) > 0 and 0 < float(r[6]) <= 1    # steps/s, valid
    assert "not run" in text and "device: 1 x cpu" in text
