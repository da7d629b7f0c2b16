"""Bad input, as a user gives it: every case is refused with exactly one line on stderr naming
the problem (``jaxgrpo CMD: error: ...``), exit code 2, no traceback, no file or folder
written, and nothing compiled (the compile cache that every training program and sweep goes
through fails the test if it is reached). From Python, the config constructors and
``jaxgrpo.preset`` raise ``ValueError`` naming the field. All in-process; no compilation.

Pretrained models (``PRETRAINED``): one tiny Hugging Face checkpoint (a random Llama, width 16,
one layer, with its BPE tokenizer; ``experiments.pretrained_e2e.build_checkpoint``) built once
for the module, copies of it with config.json edited (another model_type, a shape its tensors do
not have, a short context), and the reward functions of ``tests/bad_rewards.py``."""
import json
import os
import shutil

import pytest

import jaxgrpo
from jaxgrpo import cli, compiled
from jaxgrpo.config import GRPOConfig, PPOConfig, SFTConfig

# files the cases read, written into the test's folder (the "{d}" of a case)
FILES = {
    "ppo_text.yaml": "algo: ppo\nenv: text:addition\n",
    "list_params.yaml": "env_params:\n  max_steps_in_episode: [100, 200]\n",
    "text_hidden.yaml": "env: text:addition\nhidden_sizes: [32]\n",
    "sweep_ppo_text.yaml": "algo: ppo\nenv: text:addition\ngrid: {lr: [0.001]}\n",
    "sweep_grid_algo.yaml": "env: text:addition\ngrid: {algo: [grpo, ppo]}\n",
    "sweep_text_only.yaml": "env: CartPole-v1\ngrid: {temperature: [0.5, 1.0]}\n",
    "sweep_preset.yaml": "preset: Acrobat-v1\ngrid: {lr: [0.001]}\n",
    "sweep_list_params.yaml": "grid: {env_params: [{max_steps_in_episode: [1, 2]}]}\n",
    "sweep_typo.yaml": "num_groups: 2\ngrid: {lerning_rate: [0.001]}\n",
    "sweep_bad_every.yaml": "grid: {lr: [0.001]}\nlog_every: 3\ncheckpoint_every: 4\n",
}

# (argv, what the one line must contain); "{d}" is the test's folder, OUT the --out to create
CASES = [
    # the wrong algorithm for the kind of env
    (["train", "--env", "text:addition", "--algo", "ppo"], ["env: PPO needs a gymnax env"]),
    (["train", "--config", "{d}/ppo_text.yaml"], ["ppo_text.yaml: env: PPO needs"]),
    (["train", "--algo", "ppo", "--preset", "text:addition"], ["preset: no ppo preset"]),
    (["sft", "--env", "CartPole-v1"], ["env: SFT needs a text task"]),
    (["sft", "--env", "Catch-bsuite", "--steps", "4"], ["env: SFT needs a text task"]),
    # text-only fields on an environment config, and environment-only fields on a text one
    (["train", "--set", "temperature=0.7"], ["temperature: only for text tasks"]),
    (["train", "--env", "Catch-bsuite", "--set", "num_layers=3"],
     ["num_layers: only for text tasks", "Catch-bsuite"]),
    (["train", "--set", "init_from={d}"], ["init_from:", "is not a run folder"]),
    (["train", "--env", "CartPole-v1", "--set", "init_from={d}"],
     ["init_from: only for text tasks"]),
    (["train", "--set", "mask_truncated_completions=true"],
     ["mask_truncated_completions: only for text tasks"]),
    (["train", "--set", "max_new_tokens=8"], ["max_new_tokens: only for text tasks"]),
    (["train", "--set", "delta=2.0"], ["delta: only for text tasks"]),
    (["train", "--set", "importance_sampling_level=sequence"],
     ["importance_sampling_level: only for text tasks"]),
    (["train", "--algo", "ppo", "--set", "temperature=0.7"],
     ["temperature: unknown field of PPOConfig"]),
    (["train", "--env", "text:addition", "--set", "hidden_sizes=[32]"],
     ["hidden_sizes: only for gymnax environments"]),
    (["train", "--config", "{d}/text_hidden.yaml"], ["hidden_sizes: only for gymnax"]),
    (["train", "--env", "text:addition", "--set", "activation=relu"],
     ["activation: only for gymnax environments"]),
    (["train", "--env", "text:addition", "--set", "num_steps=16"],
     ["num_steps: only for gymnax environments", "on-policy"]),
    (["train", "--env", "text:addition", "--set", "branch_horizon=4"],
     ["branch_horizon: only for gymnax environments"]),
    (["train", "--env", "text:addition", "--set", "group_mode=state"], ["group_mode:"]),
    (["train", "--env", "text:addition", "--set", "reward_transform=symlog"],
     ["reward_transform: not available for text tasks"]),
    (["train", "--env", "text:addition", "--set", "env_params.max_steps_in_episode=9"],
     ["env_params: text tasks take their options in env_kwargs"]),
    (["sft", "--set", "temperature=0.7"], ["temperature: unknown field of SFTConfig"]),
    # list-valued (or otherwise not single) env_params and env_kwargs
    (["train", "--set", "env_params.max_steps_in_episode=[100, 200]"],
     ["env_params: max_steps_in_episode must be one value", "[100, 200]"]),
    (["train", "--config", "{d}/list_params.yaml"], ["list_params.yaml: env_params:"]),
    (["train", "--set", "env_params.max_steps_in_episode={a: 1}"], ["env_params:", "one value"]),
    (["train", "--env", "DeepSea-bsuite", "--set", "env_kwargs.size=[10, 20]"],
     ["env_kwargs: size must be one value"]),
    (["sft", "--set", "env_kwargs.digits=[2, 3]"], ["env_kwargs: digits must be one value"]),
    (["train", "--set", "env_params=[1, 2]"], ["env_params: must be a dict"]),
    (["train", "--set", "env_params.max_steps_in_episode=true"],
     ["env_params: max_steps_in_episode must be a number, got True"]),
    (["train", "--env", "DeepSea-bsuite", "--set", "env_params.deterministic=1"],
     ["env_params: deterministic must be true or false, got 1"]),
    # unknown names, each with a did-you-mean
    (["train", "--preset", "Acrobat-v1"], ["preset: no grpo preset", "did you mean 'Acrobot-v1'?"]),
    (["train", "--algo", "ppo", "--preset", "pendulum-v1"], ["did you mean 'Pendulum-v1'?"]),
    (["train", "--set", "preset=grpo/CartPole-v2"], ["did you mean 'CartPole-v1'?"]),
    (["train", "--env", "CatPole-v1"], ["env: unknown gymnax environment", "'CartPole-v1'?"]),
    (["train", "--env", "Breakout-MinAtr"], ["did you mean 'Breakout-MinAtar'?"]),
    (["train", "--env", "text:additon"], ["env: unknown text task", "'addition'?"]),
    (["train", "--env", "text:addition", "--set", "env_kwargs.digts=2"],
     ["env_kwargs:", "did you mean 'digits'?"]),
    (["train", "--set", "num_group=2"], ["num_group: unknown field", "'num_groups'?"]),
    (["sft", "--set", "batchsize=8"], ["batchsize: unknown field of SFTConfig", "'batch_size'?"]),
    # presets that contradict the other options
    (["train", "--preset", "Acrobot-v1", "--env", "CartPole-v1"], ["preset:", "give one of them"]),
    (["train", "--algo", "ppo", "--set", "preset=grpo/CartPole-v1"], ["is a grpo preset"]),
    (["train", "--set", "preset=3"], ["preset: must be an env id or true"]),
    # values out of range or of the wrong kind
    (["train", "--total-timesteps", "0"], ["--total-timesteps"]),
    (["train", "--total-timesteps", "3e9"], ["total_timesteps: must be < 2**31"]),
    (["train", "--seeds", "0"], ["--seeds"]),
    (["train", "--set", "seeds=0"], ["seeds: must be >= 1"]),
    (["train", "--set", "env=3"], ["env: must be a gymnax id string"]),
    (["train", "--set", "group_mode=state", "--set", "on_policy=false"], ["on_policy:"]),
    (["train", "--env", "text:addition", "--set", "max_len=8"], ["max_len:", "need"]),
    (["train", "--set", "lr=0.1", "--set", "lr.low=1"], ["lr: is not a dict field"]),
    (["train", "--env", "DeepSea-bsuite", "--set", "env_kwargs.size.deep=1"],
     ["env_kwargs: size must be one value"]),
    (["train", "--algo", "sft"], ["--algo: invalid choice"]),
    (["sft", "--steps", "0"], ["--steps"]),
    # sweeps: the same rules, from the sweep file and its grid
    (["sweep", "{d}/sweep_ppo_text.yaml"], ["sweep_ppo_text.yaml: env: PPO needs"]),
    (["sweep", "{d}/sweep_grid_algo.yaml"], ["env: PPO needs a gymnax environment"]),
    (["sweep", "{d}/sweep_text_only.yaml"], ["temperature: only for text tasks"]),
    (["sweep", "{d}/sweep_preset.yaml"], ["did you mean 'Acrobot-v1'?"]),
    (["sweep", "{d}/sweep_list_params.yaml"], ["env_params: max_steps_in_episode must be one"]),
    (["sweep", "{d}/sweep_typo.yaml"], ["lerning_rate"]),
    (["sweep", "{d}/sweep_bad_every.yaml"], ["checkpoint_every", "multiple of log_every"]),
    (["sweep", "{d}/missing.yaml"], ["missing.yaml"]),
    (["sweep"], ["give SWEEP.yaml or --resume DIR"]),
    # other commands
    (["eval", "{d}/no_run"], ["no such run folder"]),
    (["frobnicate"], ["unknown command"]),
]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The test's folder with FILES in it, as the working directory; compiling fails the test."""
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)

    def no_compile(*a, **k):
        raise AssertionError("bad input reached the compile cache")
    monkeypatch.setattr(compiled.CACHE, "get", no_compile)
    return tmp_path


def _files(d):
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, ds, fs in os.walk(d)
                  for f in fs + ds)


@pytest.mark.parametrize("argv, needles", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, needles, folder, capsys):
    _one_line(argv, needles, folder, capsys)


def _one_line(argv, needles, folder, capsys):
    """``argv`` ("{d}" the test's folder) exits 2 with one line on stderr holding every one
    of ``needles``, prints nothing on stdout and writes nothing into the test's folder; returns
    the line."""
    before = _files(folder)
    argv = [a.replace("{d}", str(folder)) for a in argv]
    out = ["--out", str(folder / "OUT")] if argv[0] in ("train", "sft", "sweep") else []
    rc = cli.main(argv + out)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, captured
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    prog = f"jaxgrpo {argv[0]}" if argv[0] in cli.COMMANDS else "jaxgrpo"
    assert lines[0].startswith(f"{prog}: error: "), lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert captured.out == ""
    assert _files(folder) == before          # no OUT, no runs/, nothing else
    return lines[0]


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30 and len({tuple(a) for a, _ in CASES}) == len(CASES)


PYTHON = [
    (PPOConfig, {"env": "text:addition"}, "env", "PPO needs a gymnax environment"),
    (SFTConfig, {"env": "CartPole-v1"}, "env", "SFT needs a text task"),
    (GRPOConfig, {"env": "Catch-bsuite", "temperature": 0.5}, "temperature", "only for text"),
    (GRPOConfig, {"num_layers": 3}, "num_layers", "only for text tasks"),
    (GRPOConfig, {"init_from": "runs/sft"}, "init_from", "only for text tasks"),
    (GRPOConfig, {"env": "text:addition", "hidden_sizes": (32,)}, "hidden_sizes",
     "only for gymnax"),
    (GRPOConfig, {"env": "text:addition", "activation": "relu"}, "activation", "only for gymnax"),
    (GRPOConfig, {"env_params": {"max_steps_in_episode": [100, 200]}}, "env_params",
     "must be one value"),
    (PPOConfig, {"env_params": {"max_steps_in_episode": (100,)}}, "env_params", "one value"),
    (GRPOConfig, {"env": "DeepSea-bsuite", "env_kwargs": {"size": [10]}}, "env_kwargs",
     "one value"),
    (SFTConfig, {"env_kwargs": {"digits": {"min": 2}}}, "env_kwargs", "one value"),
    (GRPOConfig, {"env_params": {3: 1}}, "env_params", "keys must be names"),
    (GRPOConfig, {"env": "CatPole-v1"}, "env", "did you mean 'CartPole-v1'?"),
]


@pytest.mark.parametrize("cls, kwargs, field, needle", PYTHON,
                         ids=[f"{c.__name__}-{k}" for c, k, _, _ in PYTHON])
def test_python_configs_refuse_the_same(cls, kwargs, field, needle):
    with pytest.raises(ValueError, match=rf"^{field}: ") as e:
        cls(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_replace_is_checked_like_the_constructor():
    """A valid config changed into a bad combination by ``replace`` is refused the same way."""
    with pytest.raises(ValueError, match="^env: PPO needs"):
        PPOConfig().replace(env="text:addition")
    with pytest.raises(ValueError, match="^hidden_sizes: only for gymnax"):
        GRPOConfig(hidden_sizes=(32,)).replace(env="text:addition")
    with pytest.raises(ValueError, match="^temperature: only for text tasks"):
        GRPOConfig(env="text:addition", temperature=0.5).replace(env="CartPole-v1")


def test_unknown_preset_from_python_has_a_did_you_mean():
    with pytest.raises(ValueError, match=r"^preset: no grpo preset for 'Acrobat-v1' "
                                         r"\(did you mean 'Acrobot-v1'\?\)"):
        jaxgrpo.preset("grpo", "Acrobat-v1")
    with pytest.raises(ValueError, match=r"^preset: no ppo preset for 'text:addition'; "):
        jaxgrpo.preset("ppo", "text:addition")


def test_env_that_cannot_be_made_is_one_line(monkeypatch):
    """MNISTBandit-bsuite downloads MNIST when made: offline, its OSError is one line."""
    import gymnax

    from jaxgrpo import envs

    def offline(*a, **k):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")
    monkeypatch.setattr(gymnax, "make", offline)      # envs imports gymnax when it makes one
    with pytest.raises(ValueError, match=r"^env: MNISTBandit-bsuite could not be made: <urlopen"):
        envs._make.__wrapped__("MNISTBandit-bsuite", (), ())


def test_integral_float_time_limits_are_accepted():
    """gymnax's BernoulliBandit-misc has max_steps_in_episode 100.0; YAML reads 1e3 as a float."""
    assert GRPOConfig(env="BernoulliBandit-misc").max_episode_steps == 100
    assert GRPOConfig(env_params={"max_steps_in_episode": 1e3}).max_episode_steps == 1000
    with pytest.raises(ValueError, match="^env_params: max_steps_in_episode must be a positive"):
        GRPOConfig(env_params={"max_steps_in_episode": 10.5})


# ----------------------------------------------------------------------------- pretrained

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """{name: path}: "base", a tiny Hugging Face checkpoint (random Llama, width 16, 1 layer,
    context 64, BPE tokenizer with a chat template); copies with config.json edited: "mistral"
    (model_type), "shape" (intermediate_size 48, its MLP tensors have 32 rows), "hidden"
    (hidden_size 32), "short" (max_position_embeddings 8), "truncated" (its
    model.safetensors cut short); "data" (20 sort rows as JSONL),
    "long" (rows whose prompts are 100 digits long); "modules" (a folder of reward modules
    that raise NameError or SyntaxError when imported); run folders as written when a run starts
    (config.yaml; no checkpoint yet): "text_run" (GRPO on "data" from "base"), "gym_run"
    (CartPole-v1); "sweep" (a sweep folder)."""
    from experiments.pretrained_e2e import build_checkpoint, task_rows
    from jaxgrpo.configio import save_config
    w = tmp_path_factory.mktemp("bad-pretrained")
    rows = task_rows(20, 3)
    paths = {"data": w / "sort.jsonl", "long": w / "long.jsonl", "base": w / "base"}
    paths["data"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    long_rows = [{"prompt": [{"role": "user", "content": "sort " + "1234567890" * 10}],
                  "answer": "0" * 10 + "1" * 10}] * 4
    paths["long"].write_text("".join(json.dumps(r) + "\n" for r in long_rows))
    build_checkpoint(paths["base"], rows, width=16, layers=1)
    for name, edit in (("mistral", {"model_type": "mistral"}), ("shape", {"intermediate_size": 48}),
                       ("hidden", {"hidden_size": 32, "head_dim": 8}),
                       ("short", {"max_position_embeddings": 8})):
        shutil.copytree(paths["base"], w / name)
        cfg = json.loads((w / name / "config.json").read_text())
        (w / name / "config.json").write_text(json.dumps({**cfg, **edit}))
        paths[name] = w / name
    for name, config in (
            ("text_run", GRPOConfig(env="text:dataset", init_from=str(paths["base"]),
                                    env_kwargs={"data": str(paths["data"]),
                                                "prompt_column": "prompt"},
                                    reward_funcs=("tests.bad_rewards:fine",))),
            ("gym_run", GRPOConfig(env="CartPole-v1"))):
        paths[name] = w / name
        paths[name].mkdir()
        save_config(paths[name] / "config.yaml", config, seeds=1, base_seed=0)
    shutil.copytree(paths["base"], w / "truncated")       # a download cut short
    weights = (paths["base"] / "model.safetensors").read_bytes()
    (w / "truncated" / "model.safetensors").write_bytes(weights[:len(weights) - 100])
    paths["truncated"] = w / "truncated"
    paths["modules"] = w / "modules"          # reward modules that fail to import
    paths["modules"].mkdir()
    ok = "def f(prompts, completions, **c):\n    return [0.0] * len(completions)\n"
    (paths["modules"] / "badin_name_error.py").write_text("import os\nx = undefined\n" + ok)
    (paths["modules"] / "badin_syntax_error.py").write_text(ok + "def (:\n")
    paths["sweep"] = w / "sweep"
    paths["sweep"].mkdir()
    (paths["sweep"] / "sweep.yaml").write_text("grid: {lr: [0.001, 0.01]}\n")
    return {k: str(v) for k, v in paths.items()}


_KW = json.dumps({"data": "{data}", "prompt_column": "prompt"})
_LONG = json.dumps({"data": "{long}", "prompt_column": "prompt"})


def _ds(init="base", reward="fine", kwargs=_KW):
    """``jaxgrpo train`` on the dataset task from checkpoint ``init`` with a reward function of
    tests/bad_rewards.py."""
    return ["train", "--env", "text:dataset", "--set", f"env_kwargs={kwargs}",
            "--set", f"init_from={{{init}}}", "--set", f"reward_funcs=[tests.bad_rewards:{reward}]"]


PRETRAINED = [
    # the checkpoint: another architecture, tensors that do not match config.json, a short context
    (_ds("mistral"), ["init_from:", "model_type 'mistral' is not supported",
                      "gpt2, llama, qwen2, qwen3"]),
    (_ds("shape"), ["init_from:", "do not match config.json",
                    "tensor model.layers.0.mlp.gate_proj.weight has shape (32, 16)",
                    "config.json implies (48, 16)"]),
    (_ds("hidden"), ["init_from:", "tensor model.embed_tokens.weight has shape (273, 16)",
                     "(273, 32)"]),
    (_ds("truncated"), ["init_from:", "truncated/model.safetensors: not a readable "
                        "safetensors file"]),
    (_ds("short"), ["max_len: text:dataset's prompts (13 tokens)", "need 17 positions",
                    "max_position_embeddings of", "short/config.json) is 8"]),
    (_ds("base", kwargs=_LONG), ["max_len: text:dataset's prompts (", "context",
                                 "base/config.json) is 64"]),
    (_ds() + ["--set", "max_len=8"], ["max_len:", "need 17 positions", "(max_len) is 8"]),
    (["sft", "--env", "text:dataset", "--set", f"env_kwargs={_KW}", "--set",
      "init_from={shape}"], ["init_from:", "tensor model.layers.0.mlp.gate_proj.weight"]),
    # reward functions that raise, return the wrong length or type, or cannot be found
    (_ds(reward="raises"), ["reward_funcs: raises raised KeyError: 'solution'"]),
    (_ds(reward="wrong_length"), ["reward_funcs: wrong_length returned 1 rewards for 2"]),
    (_ds(reward="not_a_number"), ["reward_funcs: not_a_number returned '1.0' for completion 0",
                                  "floats or None"]),
    (_ds(reward="wrong_signature"), ["reward_funcs: wrong_signature raised TypeError",
                                     "unexpected keyword argument 'prompts'"]),
    (_ds()[:-2] + ["--set", "reward_funcs=[badin_name_error:f]"],
     ["reward_funcs: importing 'badin_name_error' for 'badin_name_error:f' raised NameError at",
      "badin_name_error.py:2: name 'undefined' is not defined"]),
    (_ds()[:-2] + ["--set", "reward_funcs=[badin_syntax_error:f]"],
     ["reward_funcs: importing 'badin_syntax_error'", "raised SyntaxError at",
      "badin_syntax_error.py:3: invalid syntax"]),
    (_ds(reward="missing"), ["reward_funcs: tests.bad_rewards has no 'missing'"]),
    (_ds(reward="fine")[:-2] + ["--set", "reward_funcs=[tests.no_such_module:f]"],
     ["reward_funcs: cannot import 'tests.no_such_module'"]),
    (_ds() + ["--set", "reward_weights=[1.0, 2.0]"], ["reward_weights: 2 weights for 1"]),
    # LoRA and sampling options out of range
    (_ds() + ["--set", "lora_rank=-1"], ["lora_rank: must be >= 0, got -1"]),
    (_ds() + ["--set", "lora_rank=2", "--set", "lora_targets=[q, qkv]"],
     ["lora_targets:", "got 'qkv'"]),
    (_ds() + ["--set", "lora_rank=2", "--set", "lora_alpha=-1"],
     ["lora_alpha: must be > 0, got -1.0"]),
    (_ds() + ["--set", "lora_rank=2.5"], ["lora_rank: must be an int, got float 2.5"]),
    (_ds() + ["--set", "top_p=0"], ["top_p: must be > 0.0, got 0"]),
    (_ds() + ["--set", "top_p=1.5"], ["top_p: must be <= 1.0, got 1.5"]),
    (_ds() + ["--set", "top_k=-1"], ["top_k: must be >= 0, got -1"]),
    (_ds() + ["--set", "dtype=float16"], ["dtype:", "'float32', 'bfloat16'", "got 'float16'"]),
    # the model's shape is the checkpoint's
    (_ds() + ["--set", "num_layers=3"], ["num_layers: the model's shape comes from the "
                                         "checkpoint at init_from", "leave num_layers unset"]),
    (_ds() + ["--set", "width=32"], ["width: the model's shape comes from the checkpoint"]),
    # export and sample of what is not a text run, or a prompt the model cannot take
    (["export", "{gym_run}", "--out", "{d}/hf"], ["is a run on CartPole-v1",
                                                  "only text runs have a language model"]),
    (["export", "{sweep}", "--out", "{d}/hf"], ["is a sweep folder"]),
    (["export", "{d}/missing", "--out", "{d}/hf"], ["missing: no such run folder"]),
    (["export", "{base}", "--out", "{d}/hf"], ["no config.yaml; not a run folder"]),
    (["export", "{text_run}", "--out", "{d}/hf", "--seed", "1"],
     ["--seed:", "has 1 seed(s) (0..0), got 1"]),
    (["sample", "{gym_run}", "--prompt", "sort 312"], ["is a run on CartPole-v1"]),
    (["sample", "{text_run}", "--prompt", "sort " + "1234567890" * 10],
     ["--prompt:", "tokens plus 4 new ones exceed the model's context (64)"]),
    (["sample", "{text_run}", "--prompt", "sort 312", "--max-new-tokens", "100"],
     ["--prompt:", "plus 100 new ones exceed the model's context (64)"]),
]


@pytest.mark.parametrize("argv, needles", PRETRAINED,
                         ids=[f"{a[0]}-{' '.join(n)[:60]}" for a, n in PRETRAINED])
def test_pretrained_bad_input_is_one_line(argv, needles, ckpt, folder, capsys, monkeypatch):
    monkeypatch.syspath_prepend(ckpt["modules"])
    for name, path in ckpt.items():
        argv = [a.replace("{%s}" % name, path) for a in argv]
    line = _one_line(argv, needles, folder, capsys)
    if argv[0] in ("train", "sft"):                     # the field comes first
        assert line.startswith(f"jaxgrpo {argv[0]}: error: {needles[0]}"), line
    for run in ("text_run", "gym_run"):                 # export and sample wrote nothing there
        assert os.listdir(ckpt[run]) == ["config.yaml"]


def test_python_config_refuses_bad_reward_functions_and_checkpoints(ckpt, monkeypatch):
    """From Python: each refusal a one-line ValueError naming the field and the function or
    tensor, before anything is compiled."""
    from tests import bad_rewards

    def no_compile(*a, **k):
        raise AssertionError("bad input reached the compile cache")
    monkeypatch.setattr(compiled.CACHE, "get", no_compile)
    kw = {"env": "text:dataset", "init_from": ckpt["base"],
          "env_kwargs": {"data": ckpt["data"], "prompt_column": "prompt"}}
    for f, match in ((bad_rewards.raises, r"^reward_funcs: raises raised KeyError: 'solution'$"),
                     (bad_rewards.wrong_length, r"^reward_funcs: wrong_length returned 1 "),
                     (bad_rewards.not_a_number, r"^reward_funcs: not_a_number returned '1.0'")):
        with pytest.raises(ValueError, match=match) as e:
            GRPOConfig(**kw, reward_funcs=(f,))
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^reward_funcs: <lambda> raised ZeroDivisionError: "
                                         r"division by zero$"):
        GRPOConfig(**kw, reward_funcs=(bad_rewards.fine, lambda prompts, completions, **c: 1 / 0))
    with pytest.raises(ValueError, match=r"^init_from: .*shape: the weights do not match "
                                         r"config.json: tensor model.layers.0.mlp.gate_proj"):
        GRPOConfig(**{**kw, "init_from": ckpt["shape"]}, reward_funcs=(bad_rewards.fine,))
    with pytest.raises(ValueError, match=r"^init_from: .*model_type 'mistral' is not supported"):
        SFTConfig(env="text:dataset", init_from=ckpt["mistral"], env_kwargs=kw["env_kwargs"])
    config = GRPOConfig(**kw, reward_funcs=(bad_rewards.fine,))      # the good one is accepted
    assert config.reward_funcs == (bad_rewards.fine,)
