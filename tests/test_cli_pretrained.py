"""Pretrained models through the command line: ``jaxgrpo train`` from a Hugging Face
checkpoint folder (``init_from``) on a dataset task with a Python reward function and LoRA,
then ``jaxgrpo export`` (adapters merged; transformers and jaxgrpo load it with the trained
policy's logits) and ``jaxgrpo sample``. The checkpoint is a tiny random Llama with a BPE
tokenizer built here (``experiments.pretrained_e2e.build_checkpoint``)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.pretrained_e2e import build_checkpoint, task_rows
from jaxgrpo.cli import main

REWARD = "experiments.pretrained_e2e:sorted_correctly"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("pretrained-cli")
    rows = task_rows(60, 3)
    data = work / "sort.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_checkpoint(work / "base", rows, width=16, layers=1)
    kwargs = json.dumps({"data": str(data), "prompt_column": "prompt"})
    argv = ["train", "--env", "text:dataset", "--set", f"env_kwargs={kwargs}",
            "--set", f"init_from={work / 'base'}", "--set", f"reward_funcs=[{REWARD}]",
            "--set", "lora_rank=2", "--set", "num_groups=2", "--set", "group_size=2",
            "--set", "num_iterations=2", "--set", "lr=0.05", "--set", "ent_coef=0.5",
            "--seeds", "2", "--out", str(work / "run"), "--quiet"]
    assert main(argv) == 0
    return work


def test_export_merges_lora_and_transformers_loads_it(trained, capsys):
    import torch
    import transformers

    from jaxgrpo import load_run
    from jaxgrpo.text import load_pretrained
    from jaxgrpo.text.grpo import make_policy
    work = trained
    assert main(["export", str(work / "run"), "--out", str(work / "hf"), "--seed", "1"]) == 0
    assert "LoRA merged" in capsys.readouterr().out
    run = load_run(work / "run")
    params = jax.tree.map(lambda x: x[1], run.state.params)
    assert "lora" in params and np.any(np.asarray(params["lora"][0]["q"]["b"]))  # it trained
    model = make_policy(run.config)
    tokens = jnp.asarray(run.config.task.tokenizer.apply_chat_template(
        [{"role": "user", "content": "sort 312"}]))[None]
    want = np.asarray(model.forward(params, tokens))
    m2, p2, tok2 = load_pretrained(work / "hf")
    assert "lora" not in p2
    np.testing.assert_allclose(np.asarray(m2.forward(p2, tokens)), want, atol=1e-5)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(work / "hf"))
    with torch.no_grad():
        got = hf(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_refuses_a_non_empty_folder_and_bad_seed(trained, capsys):
    work = trained
    (work / "taken").mkdir()
    (work / "taken" / "x").write_text("mine")
    assert main(["export", str(work / "run"), "--out", str(work / "taken")]) == 2
    assert (work / "taken" / "x").read_text() == "mine"
    assert main(["export", str(work / "run"), "--out", str(work / "new"), "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "not an empty folder" in err and "--seed" in err


def test_sample_prints_completions(trained, capsys):
    work = trained
    assert main(["sample", str(work / "run"), "--prompt", "sort 312", "--num", "3"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert len(lines) == 3
    assert main(["sample", str(work / "run"), "--prompt", "sort 312", "--greedy",
                 "--num", "2"]) == 0
    a, b = capsys.readouterr().out.rstrip("\n").split("\n")
    assert a == b                                   # greedy: the same completion twice


def test_eval_scores_with_the_runs_reward_functions(trained, capsys):
    work = trained
    assert main(["eval", str(work / "run"), "--prompts", "4", "--samples", "2"]) == 0
    res = json.loads((work / "run" / "eval.json").read_text())
    res = res[-1] if isinstance(res, list) else res
    assert "greedy_accuracy" in json.dumps(res)
