"""benchmarks/: the report writers, on the committed results (``benchmarks.run --render``) and
on fake measurements (``benchmarks.accelerator``), and the command's argument errors. Nothing
here measures: the benchmarks' smoke runs are ``python -m benchmarks.run --tiny --no-peers``
and ``python -m benchmarks.accelerator --tiny`` (benchmarks are not tests)."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path


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


def test_accelerator_script_tiny(tmp_path, monkeypatch):
    """benchmarks/accelerator.py, the script to run when a GPU/TPU is lent, at CPU smoke size,
    its measurement replaced by a fake: the points and the report."""
    from benchmarks import accelerator, measure
    specs = []

    def fake_measure(spec):
        specs.append(spec)
        return {"sps": 1234.0, "compile_s": 1.5, "run_s": 0.25, "valid_frac": 0.5}

    monkeypatch.setattr(measure, "measure_train", fake_measure)
    out = tmp_path / "acc.md"
    assert accelerator.main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line.split("|") for line in text.splitlines() if line.startswith(("| ppo", "| grpo"))]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [("ppo", "4"), ("grpo", "2")]
    for r in rows:
        assert float(r[3].replace(",", "")) > 0 and 0 < float(r[6]) <= 1    # steps/s, valid
    assert "not run" in text and "device: 1 x cpu" in text
    assert all(s["env"] == "CartPole-v1" and s["kind"] == "train" for s in specs)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert len(saved["rows"]) == 2 and saved["rows"][0]["sps"] == 1234.0
