"""The ``jaxgrpo`` command (also ``python -m jaxgrpo``).

    jaxgrpo train [--algo grpo|ppo] [--env ID] [--seeds N] [--total-timesteps N]
                  [--config FILE.yaml] [--set key=value ...] [--out DIR] [--seed N]
                  [--checkpoint-every N] [--resume DIR] [--quiet] [--tensorboard] [--wandb]
    jaxgrpo eval RUN_DIR [--episodes N] [--gif out.gif]
    jaxgrpo plot RUN_DIR [RUN_DIR ...] --out FILE.png
    jaxgrpo sweep SWEEP.yaml [--out DIR]

Bad input (unknown env or field, a value of the wrong type, an unreadable file, an existing
run folder) prints one line ``jaxgrpo CMD: error: ...`` on stderr and exits with code 2,
before anything is compiled.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), raised as ``UsageError``."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _count(low: int):
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


# ----------------------------------------------------------------------------- parsers

def _train_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgrpo train", description=(
        "Train GRPO or PPO on a gymnax environment, seeds vmapped in one compiled loop, into a "
        "run folder (config.yaml, metrics.csv, summary.json, curves.png, checkpoints/). "
        "Precedence: defaults < --config < --algo/--env/--seeds/--total-timesteps/--seed < --set."))
    p.add_argument("--algo", choices=["grpo", "ppo"], help="algorithm (default grpo)")
    p.add_argument("--env", help="gymnax environment id (default CartPole-v1)")
    p.add_argument("--seeds", type=_count(1), help="number of seeds, vmapped (default 1)")
    p.add_argument("--total-timesteps", type=_count(1), metavar="N",
                   help="env-step budget per seed")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML of config fields (e.g. a run's config.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="set any config field; VALUE is YAML (3e-4, true, [32, 32], {size: 10}); "
                        "KEY.SUB=VALUE sets one entry of a dict field, e.g. "
                        "env_params.max_steps_in_episode=200; repeatable")
    p.add_argument("--out", metavar="DIR",
                   help="run folder (default runs/<env>-<algo>-<time>); must not hold results")
    p.add_argument("--seed", type=_count(0), metavar="N",
                   help="base seed: seed s uses split(key(N), seeds)[s] (default 0)")
    p.add_argument("--checkpoint-every", type=_count(1), metavar="N",
                   help="checkpoint every N iterations (always at the end)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its latest checkpoint")
    p.add_argument("--stop-after", type=_count(1), metavar="N",
                   help="stop (with a checkpoint) after N iterations; continue with --resume")
    p.add_argument("--log-every", type=_count(1), metavar="K",
                   help="update the progress bar and loggers every K iterations "
                        "(default: about 200 updates per run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the result line")
    p.add_argument("--tensorboard", action="store_true",
                   help="log to RUN/tensorboard (pip install 'jaxgrpo[tensorboard]')")
    p.add_argument("--wandb", action="store_true",
                   help="log to Weights & Biases (pip install 'jaxgrpo[wandb]')")
    p.add_argument("--wandb-project", default="jaxgrpo", metavar="NAME")
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgrpo eval", description=(
        "Evaluate a run's latest checkpoint: mean/std return of greedy and sampled actions, "
        "per seed and overall (also written to RUN/eval.json)."))
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--episodes", type=_count(1), default=100, help="episodes per seed and mode")
    p.add_argument("--seed", type=_count(0), default=0, help="evaluation seed")
    p.add_argument("--gif", metavar="OUT.gif",
                   help="render one episode of the first seed's policy with gymnax's visualizer")
    p.add_argument("--gif-sampled", action="store_true",
                   help="sample actions in the GIF (default: greedy)")
    p.add_argument("--gif-max-steps", type=_count(1), metavar="N", help="truncate the GIF")
    p.add_argument("--gif-stride", type=_count(1), default=1, metavar="K",
                   help="draw every K-th step (smaller files)")
    return p


def _plot_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgrpo plot", description=(
        "Overlay runs in one figure: mean over seeds and 95%% bootstrap CI band against env "
        "steps."))
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.add_argument("--metric", default="episode_return")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one legend label per run")
    p.add_argument("--title")
    p.add_argument("--smooth", type=_count(1), default=1, metavar="K",
                   help="running mean over K iterations per seed before averaging")
    return p


def _main_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgrpo", description="GRPO and PPO on gymnax environments.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train into a run folder (jaxgrpo train --help)", add_help=False)
    sub.add_parser("eval", help="evaluate a run folder, optionally render a GIF", add_help=False)
    sub.add_parser("plot", help="plot run folders together", add_help=False)
    sub.add_parser("sweep", help="hyperparameter sweep from a YAML file", add_help=False)
    return p


# ----------------------------------------------------------------------------- train

def build_config(args):
    """``(config, seeds, base_seed)`` from the parsed train arguments; ``ValueError`` naming
    the field or file on bad input. Nothing is compiled."""
    from . import runs
    d = runs.load_yaml(args.config) if args.config else {}
    origin = {k: "file" for k in d}
    for key, v in (("algo", args.algo), ("env", args.env), ("seeds", args.seeds),
                   ("total_timesteps", args.total_timesteps), ("base_seed", args.seed)):
        if v is not None:
            d[key] = v
            origin[key] = "flag"
    for text in args.overrides:
        d = runs.apply_override(d, text)
        origin[text.partition("=")[0].split(".")[0].strip()] = "set"
    try:
        return runs.config_from_dict(d)
    except ValueError as e:
        field = str(e).split(":", 1)[0]
        if origin.get(field) == "file":      # blame the file when the value came from it
            raise ValueError(f"{args.config}: {e}") from None
        raise


def _default_out(config) -> str:
    import datetime
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{config.env}-{config.algo}-{stamp}")


def cmd_train(argv) -> int:
    args = _train_parser().parse_args(argv)
    from . import runs
    from .checkpoint import CheckpointError
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise UsageError("--resume DIR continues DIR; do not give a different --out")
        if not Path(args.resume).is_dir():
            raise UsageError(f"--resume {args.resume}: no such run folder")
        if not (Path(args.resume) / "config.yaml").is_file():
            raise UsageError(f"--resume {args.resume}: no config.yaml there; not a run folder")
        try:
            saved, seeds, base_seed = runs.load_config(Path(args.resume) / "config.yaml")
        except ValueError as e:
            raise UsageError(str(e)) from None
        given = any(v is not None for v in (args.algo, args.env, args.seeds,
                                             args.total_timesteps, args.seed, args.config))
        if given or args.overrides:
            # the run's own config, changed by the flags: must come out the same
            args.config = args.config or str(Path(args.resume) / "config.yaml")
            try:
                config, seeds, base_seed = build_config(args)
            except ValueError as e:
                raise UsageError(str(e)) from None
        else:
            config = saved
        out = args.resume
    else:
        try:
            config, seeds, base_seed = build_config(args)
        except ValueError as e:
            raise UsageError(str(e)) from None
        out = args.out or _default_out(config)
    echo = None if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        summary = runs.run_training(
            config, out, seeds=seeds, base_seed=base_seed, checkpoint_every=args.checkpoint_every,
            stop_after=args.stop_after, resume=bool(args.resume), progress=not args.quiet,
            log_every=args.log_every, tensorboard=args.tensorboard, wandb=args.wandb,
            wandb_project=args.wandb_project, echo=echo)
    except (runs.RunError, CheckpointError) as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        print(f"jaxgrpo train: interrupted; continue from the last checkpoint with "
              f"jaxgrpo train --resume {out}", file=sys.stderr)
        return 130
    fr = summary["final_return"]
    ci = fr["ci95"]
    state = "done" if summary["complete"] else (
        f"stopped at iteration {summary['iterations_done']}/{summary['iterations']}")
    fmt = lambda x: "nan" if x is None else f"{x:.2f}"
    print(f"{summary['algo'].upper()} {summary['env']}: {state}; final return {fmt(fr['mean'])} "
          f"[95% CI {fmt(ci[0])}, {fmt(ci[1])}] over {summary['seeds']} seed(s); "
          f"{summary['env_steps_per_seed']:,.0f} env steps per seed; compile "
          f"{summary['compile_seconds']:.1f} s, run {summary['run_seconds']:.1f} s "
          f"({(summary['steps_per_second'] or 0):,.0f} steps/s); wrote {out}")
    return 0


# ----------------------------------------------------------------------------- eval

def cmd_eval(argv) -> int:
    args = _eval_parser().parse_args(argv)
    from . import runs
    from .checkpoint import CheckpointError
    try:
        run_dir = Path(args.run)
        if not run_dir.is_dir():
            raise runs.RunError(f"{run_dir}: no such run folder")
        config, _, _ = runs.load_config(run_dir / "config.yaml") if (
            run_dir / "config.yaml").is_file() else (None, None, None)
        if args.gif and config is not None:
            runs.check_gif(config)
        run = runs.load_run(run_dir)
    except (runs.RunError, CheckpointError, ValueError) as e:
        raise UsageError(str(e)) from None
    import jax
    cfg = run.config
    partial = "" if run.step == cfg.iterations else (
        f" (checkpoint at iteration {run.step} of {cfg.iterations}: the run is not finished)")
    print(f"{run.path}: {cfg.algo.upper()} on {cfg.env}, {run.seeds} seed(s){partial}")
    res = runs.evaluate_run(run, args.episodes, args.seed)
    print(f"{args.episodes} episodes per seed and mode; return mean +- std over episodes")
    print(f"{'seed':>6}  {'greedy':>18}  {'sampled':>18}")
    for s in range(run.seeds):
        g, m = res["greedy"]["per_seed"][s], res["sampled"]["per_seed"][s]
        print(f"{s:>6}  {g['mean']:>9.2f} +- {g['std']:<6.2f}  {m['mean']:>9.2f} +- {m['std']:<6.2f}")
    g, m = res["greedy"], res["sampled"]
    print(f"{'all':>6}  {g['mean']:>9.2f} +- {g['std']:<6.2f}  {m['mean']:>9.2f} +- {m['std']:<6.2f}")
    print(f"95% bootstrap CI of the mean over seeds: greedy [{g['ci95'][0]:.2f}, "
          f"{g['ci95'][1]:.2f}], sampled [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]")
    with open(run.path / "eval.json", "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    if args.gif:
        params0 = jax.tree.map(lambda x: x[0], run.state.params)
        info = runs.render_gif(cfg, params0, args.gif, jax.random.key(args.seed),
                               greedy=not args.gif_sampled, max_steps=args.gif_max_steps,
                               stride=args.gif_stride)
        print(f"wrote {args.gif}: seed 0, {'sampled' if args.gif_sampled else 'greedy'} "
              f"actions, {info['steps']} steps, return {info['return']:.2f}, "
              f"{info['frames']} frames")
    return 0


# ----------------------------------------------------------------------------- plot, sweep

def cmd_plot(argv) -> int:
    args = _plot_parser().parse_args(argv)
    from . import runs
    try:
        for d in args.runs:
            if not Path(d).is_dir():
                raise runs.RunError(f"{d}: no such run folder")
        runs.plot_runs(args.runs, args.out, metric=args.metric, labels=args.labels,
                       title=args.title, smooth=args.smooth)
    except (runs.RunError, ValueError) as e:
        raise UsageError(str(e)) from None
    print(f"wrote {args.out}")
    return 0


def cmd_sweep(argv) -> int:
    try:
        from .sweep import sweep_main
    except ImportError as e:
        raise UsageError(f"sweeps are not available in this install ({e})") from None
    return sweep_main(list(argv))


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "plot": cmd_plot, "sweep": cmd_sweep}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0; 2 for bad input, with one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "jaxgrpo"
    try:
        if not argv or argv[0] in ("-h", "--help"):
            _main_parser().print_help()
            return 0 if argv else EXIT_USAGE
        cmd, rest = argv[0], argv[1:]
        if cmd not in COMMANDS:
            raise UsageError(f"unknown command {cmd!r}; commands: {', '.join(COMMANDS)} "
                             "(see jaxgrpo --help)")
        prog = f"jaxgrpo {cmd}"
        return COMMANDS[cmd](rest)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:              # --help
        return e.code if isinstance(e.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
