"""The argparse parsers of ``jaxgrpo`` and its five commands.

Every default a help text quotes is read from the config classes (``GRPOConfig``,
``PPOConfig``, ``SFTConfig`` and ``config.KIND_DEFAULTS``, the text defaults GRPOConfig
fills in when built), from ``configio.RUN_DEFAULTS`` (algo, seeds, base seed) or is the
parser's own ``%(default)s``, so ``--help`` cannot drift from the code. Importing this module does not import JAX.
"""
from __future__ import annotations

import argparse
import dataclasses

from ..config import KIND_DEFAULTS, GRPOConfig, PPOConfig, SFTConfig
from ..configio import RUN_DEFAULTS
from .usage import UsageError

DESCRIPTION = ("GRPO and PPO on gymnax environments, GRPO and SFT (supervised warm start) on "
               "text tasks, compiled end to end with JAX: train into run folders, evaluate, "
               "plot, sweep.")


SIGNALS_EPILOG = (
    "Exit status: 0 done (or nothing left to do), 2 bad input (one line), 143 stopped by "
    "SIGTERM, SIGINT or SIGUSR1: the compiled chunk in flight finishes (the grace period a "
    "scheduler must allow: the chunk time the progress line shows; --log-every K bounds a "
    "chunk to K iterations), its checkpoint is written and one line names the command that "
    "continues (--resume DIR); a second signal stops at once, without a checkpoint. See "
    "docs/command-line.md#preemption.")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), raised as ``UsageError``."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def count(low: int):
    """An argparse ``type``: an integer >= ``low`` (``1e6`` and ``1_000`` accepted)."""
    def parse(text: str) -> int:
        try:
            v = float(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not v.is_integer() or v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return int(v)
    parse.__name__ = "integer"
    return parse


def field_default(cls, name: str):
    """The class default of config field ``name`` (``None`` for GRPOConfig's env-kind fields,
    whose defaults are ``KIND_DEFAULTS``)."""
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def budget_default() -> str:
    """The ``--total-timesteps`` default as ``jaxgrpo train --help`` states it."""
    grpo = KIND_DEFAULTS["env"]["total_timesteps"]
    ppo = field_default(PPOConfig, "total_timesteps")
    env = f"{grpo}" if grpo == ppo else f"GRPO {grpo}, PPO {ppo}"
    return f"the preset's, else {env}; text: {KIND_DEFAULTS['text']['total_timesteps']}"


def _sft_head() -> Parser:
    p = Parser(prog="jaxgrpo sft", epilog=SIGNALS_EPILOG, description=(
        "Supervised warm start on a text task (next-token prediction on task samples, "
        "compiled) into a run folder like jaxgrpo train's; prints the held-out greedy "
        "accuracy. Start GRPO from it with jaxgrpo train --set init_from=RUN_DIR (its task "
        "and model come along; seed i starts from SFT seed i). Precedence: defaults < "
        "--config < --env/--steps/--seeds/--seed < --set."))
    p.add_argument("--env", help=f"text task, text:NAME (default: "
                                 f"{field_default(SFTConfig, 'env')})")
    p.add_argument("--steps", type=count(1), metavar="N", dest="num_steps",
                   help=f"optimizer steps (default: {field_default(SFTConfig, 'num_steps')})")
    return p


def _train_head() -> Parser:
    p = Parser(prog="jaxgrpo train", epilog=SIGNALS_EPILOG, description=(
        "Train GRPO or PPO on a gymnax environment or a text task, seeds vmapped in one "
        "compiled loop, into a run folder (config.yaml, metrics.csv, summary.json, "
        "curves.png, checkpoints/), and print the result per seed. Precedence: defaults < "
        "--preset < --config < --algo/--env/--seeds/--total-timesteps/--seed < --set."))
    p.add_argument("--algo", choices=["grpo", "ppo"], help=f"algorithm (default: {RUN_DEFAULTS['algo']})")
    p.add_argument("--env", help=f"gymnax environment id or text:NAME (default: "
                                 f"{field_default(GRPOConfig, 'env')})")
    p.add_argument("--preset", nargs="?", const=True, metavar="ENV",
                   help="start from the tuned settings and budget of --algo on ENV (or on "
                        "--env when ENV is left out); see docs/presets.md")
    p.add_argument("--total-timesteps", type=count(1), metavar="N",
                   help="env-step budget per seed, completion tokens for text tasks "
                        f"(default: {budget_default()})")
    return p


def train_parser(sft: bool = False) -> Parser:
    """``jaxgrpo train`` (``sft=True``: ``jaxgrpo sft``); options left out are None, so that
    ``build.build_config`` knows which were given."""
    p = _sft_head() if sft else _train_head()
    p.add_argument("--seeds", type=count(1), metavar="N",
                   help=f"number of seeds, vmapped, spread over the devices (on a CPU one "
                   f"per core) (default: {RUN_DEFAULTS['seeds']})")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML of config fields (e.g. a run's config.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="set any config field; VALUE is YAML (3e-4, true, [32, 32], {size: 10}); "
                        "KEY.SUB=VALUE sets one entry of a dict field, e.g. "
                        "env_params.max_steps_in_episode=200; repeatable")
    p.add_argument("--out", metavar="DIR",
                   help="run folder to create (default: runs/<env>-<algo>-<time>); must not "
                        "hold results")
    p.add_argument("--seed", type=count(0), metavar="N",
                   help="base seed: seed s uses split(key(N), seeds)[s] "
                        f"(default: {RUN_DEFAULTS['base_seed']})")
    p.add_argument("--checkpoint-every", type=count(1), metavar="N",
                   help="checkpoint every N iterations (default: only at the end, and when "
                        "a signal stops the run)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its latest checkpoint, with the options "
                        "it was started with (--checkpoint-every, --log-every, --tensorboard, "
                        "--wandb) unless given again")
    p.add_argument("--step", type=count(1), metavar="N",
                   help="with --resume: continue from checkpoint N instead of the latest (the "
                        "later ones are moved to DIR/superseded/, not deleted)")
    p.add_argument("--stop-after", type=count(1), metavar="N",
                   help="stop (with a checkpoint) after N iterations; continue with --resume")
    p.add_argument("--log-every", type=count(1), metavar="K",
                   help="update the progress bar and loggers every K iterations, at each "
                        "checkpoint and at the last iteration; the compiled loop runs K "
                        "iterations per call, so a signal is acted on within K iterations "
                        "(default: about 200 updates per run)")
    logging_options(p, "RUN/tensorboard", "the run")
    return p


def logging_options(p, tensorboard_dir: str, what: str) -> None:
    """``--quiet``, ``--tensorboard``, ``--wandb`` and ``--wandb-project`` (train, sft, sweep)."""
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the result")
    p.add_argument("--tensorboard", action="store_true",
                   help=f"log {what} to {tensorboard_dir} against env steps "
                        "(pip install 'jaxgrpo[tensorboard]')")
    p.add_argument("--wandb", action="store_true",
                   help=f"log {what} to Weights & Biases against env steps "
                        "(pip install 'jaxgrpo[wandb]')")
    p.add_argument("--wandb-project", metavar="NAME", help="W&B project (default: jaxgrpo)")


def eval_parser() -> Parser:
    p = Parser(prog="jaxgrpo eval", description=(
        "Evaluate a run's latest checkpoint and add the evaluation to RUN/eval.json: on a "
        "gymnax environment the mean/std return of greedy and sampled actions, per seed and "
        "overall; on a text task the held-out greedy accuracy and pass@k per seed."))
    p.add_argument("run", metavar="RUN_DIR", help="a run folder (of jaxgrpo train or sft)")
    p.add_argument("--episodes", type=count(1), default=100, metavar="N",
                   help="episodes per seed and mode (default: %(default)s)")
    p.add_argument("--prompts", type=count(1), default=512, metavar="N",
                   help="text runs: held-out prompts (default: %(default)s)")
    p.add_argument("--samples", type=count(1), default=64, metavar="N",
                   help="text runs: sampled completions per prompt for pass@k "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=count(0), default=0, metavar="N",
                   help="evaluation seed (default: %(default)s)")
    p.add_argument("--step", type=count(1), metavar="N",
                   help="evaluate checkpoint N (default: the latest)")
    p.add_argument("--gif", metavar="OUT.gif",
                   help="render one episode of the first seed's policy with gymnax's visualizer")
    p.add_argument("--gif-sampled", action="store_true",
                   help="sample actions in the GIF (default: greedy)")
    p.add_argument("--gif-max-steps", type=count(1), metavar="N",
                   help="truncate the GIF after N steps (default: the whole episode)")
    p.add_argument("--gif-stride", type=count(1), default=1, metavar="K",
                   help="draw every K-th step, for smaller files (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --gif file")
    return p


def plot_parser() -> Parser:
    p = Parser(prog="jaxgrpo plot", description=(
        "Overlay run folders in one figure: mean over seeds and 95% bootstrap CI band against "
        "env steps; a sweep folder gives one curve per combination, labelled by its grid "
        "values."))
    p.add_argument("runs", nargs="+", metavar="DIR", help="run or sweep folders")
    p.add_argument("--out", required=True, metavar="FILE.png",
                   help="image to write (.png, .pdf, .svg, .jpg); its folder must exist")
    p.add_argument("--metric", default="episode_return", metavar="NAME",
                   help="column of metrics.csv to plot (default: %(default)s)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one legend label per curve")
    p.add_argument("--title", metavar="TEXT", help="figure title (default: the env, when all share one)")
    p.add_argument("--smooth", type=count(1), default=1, metavar="K",
                   help="running mean over K iterations per seed before averaging "
                        "(default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def sweep_parser() -> Parser:
    p = Parser(prog="jaxgrpo sweep", epilog=SIGNALS_EPILOG, description=(
        "Run the hyperparameter sweep a YAML file describes (config fields, grid, seeds) and "
        "write metrics.csv, summary.csv, curves.png and sweep.yaml to a new folder. On several "
        "processes (one per host), start the same command on each with --coordinator, "
        "--num-processes and --process-id (or --distributed on a cluster launcher): process "
        "0 writes the folder."))
    p.add_argument("config", metavar="SWEEP.yaml", nargs="?",
                   help="YAML with algo, [preset], config fields, grid, seeds, [out]")
    p.add_argument("--out", metavar="DIR",
                   help="folder to write (default: the YAML's out, else runs/<YAML name>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier sweep in --out (only once the new "
                        "sweep has finished; a training run's folder is never replaced)")
    p.add_argument("--checkpoint-every", type=count(1), metavar="N",
                   help="save every run's state and the metrics so far to "
                        "OUT/sweep-checkpoints/ every N iterations (a multiple of log_every); "
                        "a killed sweep continues with --resume OUT")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the sweep in DIR (checkpointed, or stopped by a signal) "
                        "from its newest checkpoint (instead of SWEEP.yaml); a finished one is "
                        "left as it is")
    logging_options(p, "OUT/tensorboard/<combination>/", "each combination (seed means)")
    g = p.add_argument_group("several processes (jax.distributed)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="address of process 0's coordinator (the same on every process)")
    g.add_argument("--num-processes", type=count(1), metavar="N", help="processes in the job")
    g.add_argument("--process-id", type=count(0), metavar="I", help="this process, 0..N-1")
    g.add_argument("--distributed", action="store_true",
                   help="join the job the cluster launcher describes "
                        "(jax.distributed.initialize() with no arguments: SLURM, TPU pods, ...)")
    return p


def export_parser() -> Parser:
    p = Parser(prog="jaxgrpo export", description=(
        "Write one seed of a text run's policy as a Hugging Face checkpoint folder "
        "(config.json, model.safetensors, the tokenizer's files, generation_config.json; "
        "LoRA adapters merged into the weights), which transformers loads with "
        "AutoModelForCausalLM.from_pretrained and jaxgrpo with init_from."))
    p.add_argument("run", metavar="RUN_DIR", help="a text run folder (jaxgrpo train or sft)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--seed", type=count(0), default=0, metavar="I",
                   help="which seed's policy (default: %(default)s)")
    p.add_argument("--step", type=count(1), metavar="N",
                   help="export checkpoint N (default: the latest)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    return p


def sample_parser() -> Parser:
    p = Parser(prog="jaxgrpo sample", description=(
        "Print completions of a prompt by one seed of a text run's policy (a pretrained "
        "model's prompt goes through its chat template as a user message)."))
    p.add_argument("run", metavar="RUN_DIR", help="a text run folder (jaxgrpo train or sft)")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="the prompt")
    p.add_argument("--raw", action="store_true",
                   help="tokenize the prompt as it is, without the chat template")
    p.add_argument("--num", type=count(1), default=1, metavar="N",
                   help="completions to sample (default: %(default)s)")
    p.add_argument("--greedy", action="store_true", help="argmax decoding")
    p.add_argument("--temperature", type=float, metavar="T",
                   help="sampling temperature (default: the run's)")
    p.add_argument("--max-new-tokens", type=count(1), metavar="N",
                   help="completion length bound (default: the run's)")
    p.add_argument("--seed", type=count(0), default=0, metavar="I",
                   help="which seed's policy (default: %(default)s)")
    p.add_argument("--sample-seed", type=count(0), default=0, metavar="N",
                   help="random seed of the sampling (default: %(default)s)")
    p.add_argument("--step", type=count(1), metavar="N",
                   help="use checkpoint N (default: the latest)")
    return p


PARSERS = {"train": train_parser, "sft": lambda: train_parser(sft=True), "eval": eval_parser,
           "plot": plot_parser, "sweep": sweep_parser, "export": export_parser,
           "sample": sample_parser}

SUMMARIES = {
    "train": "train into a run folder: GRPO or PPO on a gymnax env, GRPO on text",
    "sft": "supervised warm start on a text task (jaxgrpo sft --help)",
    "eval": "evaluate a run folder (returns, or text accuracy and pass@k); optionally a GIF",
    "plot": "plot run and sweep folders together",
    "sweep": "hyperparameter sweep from a YAML file",
    "export": "write a text run's policy as a Hugging Face checkpoint",
    "sample": "print a text run's completions of a prompt",
}


def main_parser() -> Parser:
    """``jaxgrpo --help``: what jaxgrpo does and its commands."""
    p = Parser(prog="jaxgrpo", description=DESCRIPTION,
               epilog="Each command has its own --help. Docs: docs/command-line.md.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in SUMMARIES.items():
        sub.add_parser(name, help=text, add_help=False)
    return p
