"""``jaxgrpo train`` and ``jaxgrpo sft``: a run folder from the arguments, its result table."""
from __future__ import annotations

import shlex
import sys

from .build import build_config, default_out, preset_name, resume_config
from .parsers import train_parser
from .tables import result_table, sft_accuracy_line
from .. import preemption
from .usage import EXIT_INTERRUPTED, EXIT_PREEMPTED, UsageError, preempted_line, user_errors

SFT_EVAL_PROMPTS = 1000     # held-out prompts of the accuracy jaxgrpo sft prints


def _configure(args):
    """``(config, seeds, base_seed, out)`` of the parsed arguments (``UsageError`` when bad)."""
    if args.step is not None and not args.resume:
        raise UsageError("--step N: only with --resume DIR (which checkpoint to continue from)")
    try:
        if args.resume:
            return (*resume_config(args), args.resume)
        config, seeds, base_seed = build_config(args)
        return config, seeds, base_seed, args.out or default_out(config)
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_train(argv, sft: bool = False) -> int:
    args = train_parser(sft).parse_args(argv)
    name = "sft" if sft else "train"
    from ..cores import cpu_cores_by_default
    cpu_cores_by_default()      # one CPU device per core (the seeds spread over them), first:
                                # building the config starts JAX
    config, seeds, base_seed, out = _configure(args)
    from .. import runs          # here: it imports JAX, which --help never needs
    # --quiet: no status lines (None would turn run_training's notes into warnings)
    echo = (lambda *a: None) if args.quiet else (
        lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        with preemption.handling():
            summary = runs.run_training(
                config, out, seeds=seeds, base_seed=base_seed,
                checkpoint_every=args.checkpoint_every, stop_after=args.stop_after,
                resume=bool(args.resume), resume_step=args.step, progress=not args.quiet,
                log_every=args.log_every, tensorboard=args.tensorboard, wandb=args.wandb,
                wandb_project=args.wandb_project, preset=preset_name(args, config), echo=echo)
    except user_errors(config_errors=False) as e:
        raise UsageError(str(e)) from None
    except preemption.Preempted as p:
        done = (f"checkpoint {p.iteration}/{config.iterations} in {out}/checkpoints"
                if p.iteration else "nothing trained yet")
        print(preempted_line(name, p.signum, done, f"jaxgrpo {name} --resume {out}"),
              file=sys.stderr, flush=True)
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        print(f"jaxgrpo {name}: interrupted; continue from the last checkpoint with "
              f"jaxgrpo {name} --resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result_table(summary, out))
    if sft and summary["complete"]:
        _sft_accuracy(config, out, seeds, base_seed)
    return 0


def cmd_sft(argv) -> int:
    return cmd_train(argv, sft=True)


def _sft_accuracy(config, out, seeds, base_seed) -> None:
    """Print the held-out greedy accuracy of a finished SFT run and how to start GRPO from it
    (``init_from`` takes the run's task and model; GRPO seed i starts from SFT seed i)."""
    from .. import runs
    from ..text.evaluation import evaluate_text
    run = runs.load_run(out)
    res = evaluate_text(config, run.state.params, num_prompts=SFT_EVAL_PROMPTS, num_samples=0,
                        seed=base_seed)
    print(sft_accuracy_line(res, SFT_EVAL_PROMPTS))
    print("start GRPO from it: jaxgrpo train --set " + shlex.quote(f"init_from={out}")
          + (f" --seeds {seeds}" if seeds > 1 else ""))
