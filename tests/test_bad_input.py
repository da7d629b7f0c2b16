"""Bad input, as a user gives it: every case is refused with exactly one line on stderr naming
the problem (``jaxgrpo CMD: error: ...``), exit code 2, no traceback, no file or folder
written, and nothing compiled (the compile cache that every training program and sweep goes
through fails the test if it is reached). From Python, the config constructors and
``jaxgrpo.preset`` raise ``ValueError`` naming the field. All in-process; no compilation."""
import os

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
    from jaxgrpo import envs

    def offline(*a, **k):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")
    monkeypatch.setattr(envs.gymnax, "make", offline)
    with pytest.raises(ValueError, match=r"^env: MNISTBandit-bsuite could not be made: <urlopen"):
        envs._make.__wrapped__("MNISTBandit-bsuite", (), ())


def test_integral_float_time_limits_are_accepted():
    """gymnax's BernoulliBandit-misc has max_steps_in_episode 100.0; YAML reads 1e3 as a float."""
    assert GRPOConfig(env="BernoulliBandit-misc").max_episode_steps == 100
    assert GRPOConfig(env_params={"max_steps_in_episode": 1e3}).max_episode_steps == 1000
    with pytest.raises(ValueError, match="^env_params: max_steps_in_episode must be a positive"):
        GRPOConfig(env_params={"max_steps_in_episode": 10.5})
