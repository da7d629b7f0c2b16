"""The ``jaxgrpo`` command (also ``python -m jaxgrpo``).

    jaxgrpo train [--algo grpo|ppo] [--env ID] [--preset [ENV]] [--seeds N]
                  [--total-timesteps N] [--config FILE.yaml] [--set key=value ...] [--out DIR]
                  [--seed N] [--checkpoint-every N] [--resume DIR [--step N]] [--quiet] ...
    jaxgrpo sft [--env text:NAME] [--steps N] [--seeds N] [--set key=value ...] [--out DIR]
    jaxgrpo eval RUN_DIR [--episodes N] [--gif OUT.gif]   (text runs: [--prompts N] [--samples N])
    jaxgrpo plot DIR [DIR ...] --out FILE.png
    jaxgrpo sweep SWEEP.yaml [--out DIR] [--overwrite]

Bad input (an unknown env or field, a value of the wrong type, an unreadable file, a path that
is a file or a folder that already holds results) prints one line ``jaxgrpo CMD: error: ...``
on stderr and exits with code 2, before anything is compiled. No command replaces an existing
result unless told to with ``--overwrite`` (or continues a run, with ``--resume``). JAX is
imported only after the arguments are checked, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


def _user_errors(config_errors: bool = True):
    """The exceptions that mean bad input (their message is the one line to print): ours, and
    ``ValueError`` from validating configs and files (not around compiling or training, where
    a ``ValueError`` would be a bug to show in full)."""
    from .rundir import CheckpointError, RunError
    return (RunError, CheckpointError) + ((ValueError,) if config_errors else ())


# ----------------------------------------------------------------------------- parsers

def _train_parser(sft: bool = False) -> argparse.ArgumentParser:
    if sft:
        p = _Parser(prog="jaxgrpo sft", description=(
            "Supervised warm start on a text task (next-token prediction on task samples, "
            "compiled) into a run folder like jaxgrpo train's; prints the held-out greedy "
            "accuracy. Start GRPO from it with jaxgrpo train --env text:NAME --set "
            "init_from=RUN_DIR. Precedence: defaults < --config < --env/--steps/--seeds/--seed "
            "< --set."))
        p.add_argument("--env", help="text task, text:NAME (default: text:addition)")
        p.add_argument("--steps", type=_count(1), metavar="N", dest="num_steps",
                       help="optimizer steps (default: 400)")
    else:
        p = _Parser(prog="jaxgrpo train", description=(
            "Train GRPO or PPO on a gymnax environment or a text task, seeds vmapped in one "
            "compiled loop, into a run folder (config.yaml, metrics.csv, summary.json, "
            "curves.png, checkpoints/), and print the result per seed. Precedence: defaults < "
            "--preset < --config < --algo/--env/--seeds/--total-timesteps/--seed < --set."))
        p.add_argument("--algo", choices=["grpo", "ppo"], help="algorithm (default: grpo)")
        p.add_argument("--env", help="gymnax environment id or text:NAME (default: "
                                     "CartPole-v1)")
        p.add_argument("--preset", nargs="?", const=True, metavar="ENV",
                       help="start from the tuned settings and budget of --algo on ENV (or on "
                            "--env when ENV is left out); see docs/presets.md")
        p.add_argument("--total-timesteps", type=_count(1), metavar="N",
                       help="env-step budget per seed, completion tokens for text tasks "
                            "(default: the preset's, else 500000; text: 400000)")
    p.add_argument("--seeds", type=_count(1), help="number of seeds, vmapped (default: 1)")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML of config fields (e.g. a run's config.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="set any config field; VALUE is YAML (3e-4, true, [32, 32], {size: 10}); "
                        "KEY.SUB=VALUE sets one entry of a dict field, e.g. "
                        "env_params.max_steps_in_episode=200; repeatable")
    p.add_argument("--out", metavar="DIR",
                   help="run folder to create (default: runs/<env>-<algo>-<time>); must not "
                        "hold results")
    p.add_argument("--seed", type=_count(0), metavar="N",
                   help="base seed: seed s uses split(key(N), seeds)[s] (default: 0)")
    p.add_argument("--checkpoint-every", type=_count(1), metavar="N",
                   help="checkpoint every N iterations (default: only at the end)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its latest checkpoint")
    p.add_argument("--step", type=_count(1), metavar="N",
                   help="with --resume: continue from checkpoint N instead of the latest (the "
                        "later ones are moved to DIR/superseded/, not deleted)")
    p.add_argument("--stop-after", type=_count(1), metavar="N",
                   help="stop (with a checkpoint) after N iterations; continue with --resume")
    p.add_argument("--log-every", type=_count(1), metavar="K",
                   help="update the progress bar and loggers every K iterations "
                        "(default: about 200 updates per run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the result")
    p.add_argument("--tensorboard", action="store_true",
                   help="log to RUN/tensorboard (pip install 'jaxgrpo[tensorboard]')")
    p.add_argument("--wandb", action="store_true",
                   help="log to Weights & Biases (pip install 'jaxgrpo[wandb]')")
    p.add_argument("--wandb-project", default="jaxgrpo", metavar="NAME",
                   help="W&B project (default: jaxgrpo)")
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgrpo eval", description=(
        "Evaluate a run's latest checkpoint: mean/std return of greedy and sampled actions, "
        "per seed and overall; the evaluation is added to RUN/eval.json."))
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--episodes", type=_count(1), default=100,
                   help="episodes per seed and mode (default: 100)")
    p.add_argument("--prompts", type=_count(1), default=512,
                   help="text runs: held-out prompts (default: 512)")
    p.add_argument("--samples", type=_count(1), default=64,
                   help="text runs: sampled completions per prompt for pass@k (default: 64)")
    p.add_argument("--seed", type=_count(0), default=0, help="evaluation seed (default: 0)")
    p.add_argument("--step", type=_count(1), metavar="N",
                   help="evaluate checkpoint N (default: the latest)")
    p.add_argument("--gif", metavar="OUT.gif",
                   help="render one episode of the first seed's policy with gymnax's visualizer")
    p.add_argument("--gif-sampled", action="store_true",
                   help="sample actions in the GIF (default: greedy)")
    p.add_argument("--gif-max-steps", type=_count(1), metavar="N",
                   help="truncate the GIF after N steps (default: the whole episode)")
    p.add_argument("--gif-stride", type=_count(1), default=1, metavar="K",
                   help="draw every K-th step, for smaller files (default: 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --gif file")
    return p


def _plot_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgrpo plot", description=(
        "Overlay run folders in one figure: mean over seeds and 95% bootstrap CI band against "
        "env steps; a sweep folder gives one curve per combination, labelled by its grid "
        "values."))
    p.add_argument("runs", nargs="+", metavar="DIR", help="run or sweep folders")
    p.add_argument("--out", required=True, metavar="FILE.png",
                   help="image to write (.png, .pdf, .svg, .jpg); its folder must exist")
    p.add_argument("--metric", default="episode_return",
                   help="column of metrics.csv to plot (default: episode_return)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one legend label per curve")
    p.add_argument("--title", help="figure title (default: the env, when all share one)")
    p.add_argument("--smooth", type=_count(1), default=1, metavar="K",
                   help="running mean over K iterations per seed before averaging (default: 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def _sweep_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgrpo sweep", description=(
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
    p.add_argument("--checkpoint-every", type=_count(1), metavar="N",
                   help="save every run's state and the metrics so far to "
                        "OUT/sweep-checkpoints/ every N iterations (a multiple of log_every); "
                        "a killed sweep continues with --resume OUT")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the checkpointed sweep in DIR from its newest checkpoint "
                        "(instead of SWEEP.yaml)")
    g = p.add_argument_group("several processes (jax.distributed)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="address of process 0's coordinator (the same on every process)")
    g.add_argument("--num-processes", type=_count(1), metavar="N", help="processes in the job")
    g.add_argument("--process-id", type=_count(0), metavar="I", help="this process, 0..N-1")
    g.add_argument("--distributed", action="store_true",
                   help="join the job the cluster launcher describes "
                        "(jax.distributed.initialize() with no arguments: SLURM, TPU pods, ...)")
    return p


def _main_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgrpo", description="GRPO and PPO on gymnax environments.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train into a run folder (jaxgrpo train --help)", add_help=False)
    sub.add_parser("sft", help="supervised warm start on a text task (jaxgrpo sft --help)",
                   add_help=False)
    sub.add_parser("eval", help="evaluate a run folder, optionally render a GIF", add_help=False)
    sub.add_parser("plot", help="plot run and sweep folders together", add_help=False)
    sub.add_parser("sweep", help="hyperparameter sweep from a YAML file", add_help=False)
    return p


# ----------------------------------------------------------------------------- train

def build_config(args):
    """``(config, seeds, base_seed)`` from the parsed train arguments; ``ValueError`` naming
    the field or file on bad input. Nothing is compiled."""
    from . import configio
    d = configio.load_yaml(args.config) if args.config else {}
    origin = {k: "file" for k in d}
    sft = getattr(args, "num_steps", False) is not False
    if sft:
        d["algo"] = "sft"
    for key, v in (("algo", getattr(args, "algo", None)), ("env", args.env),
                   ("seeds", args.seeds),
                   ("total_timesteps", getattr(args, "total_timesteps", None)),
                   ("num_steps", getattr(args, "num_steps", None)), ("base_seed", args.seed),
                   ("preset", getattr(args, "preset", None))):
        if v is not None:
            d[key] = v
            origin[key] = "flag"
    for text in args.overrides:
        d = configio.apply_override(d, text)
        origin[text.partition("=")[0].split(".")[0].strip()] = "set"
    try:
        return configio.config_from_dict(d)
    except ValueError as e:
        field = str(e).split(":", 1)[0]
        if origin.get(field) == "file":      # blame the file when the value came from it
            raise ValueError(f"{args.config}: {e}") from None
        raise


def _preset_name(args, config) -> str | None:
    return None if not getattr(args, "preset", None) else f"{config.algo}/{config.env}"


def _default_out(config) -> str:
    import datetime
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{config.env}-{config.algo}-{stamp}")


def _resume_config(args):
    """``(config, seeds, base_seed)`` of ``--resume DIR``: the run's own config.yaml, changed
    by any other flags given (which must then leave it the same)."""
    from . import configio
    run = Path(args.resume)
    if args.out and Path(args.out).resolve() != run.resolve():
        raise UsageError("--resume DIR continues DIR; do not give a different --out")
    if run.exists() and not run.is_dir():
        raise UsageError(f"--resume {run}: is a file, not a run folder")
    if not run.is_dir():
        raise UsageError(f"--resume {run}: no such run folder")
    if not (run / "config.yaml").is_file():
        raise UsageError(f"--resume {run}: no config.yaml there; not a run folder")
    saved = configio.load_config(run / "config.yaml")
    given = any(getattr(args, k, None) is not None for k in (
        "algo", "env", "seeds", "total_timesteps", "num_steps", "seed", "config", "preset"))
    if not (given or args.overrides):
        return saved
    args.config = args.config or str(run / "config.yaml")
    return build_config(args)


def cmd_sft(argv) -> int:
    return cmd_train(argv, sft=True)


def cmd_train(argv, sft: bool = False) -> int:
    args = _train_parser(sft).parse_args(argv)
    name = "sft" if sft else "train"
    if args.step is not None and not args.resume:
        raise UsageError("--step N: only with --resume DIR (which checkpoint to continue from)")
    try:
        if args.resume:
            config, seeds, base_seed = _resume_config(args)
            out = args.resume
        else:
            config, seeds, base_seed = build_config(args)
            out = args.out or _default_out(config)
    except ValueError as e:
        raise UsageError(str(e)) from None
    from . import runs
    echo = None if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        summary = runs.run_training(
            config, out, seeds=seeds, base_seed=base_seed, checkpoint_every=args.checkpoint_every,
            stop_after=args.stop_after, resume=bool(args.resume), resume_step=args.step,
            progress=not args.quiet, log_every=args.log_every, tensorboard=args.tensorboard,
            wandb=args.wandb, wandb_project=args.wandb_project,
            preset=_preset_name(args, config), echo=echo)
    except _user_errors(config_errors=False) as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        print(f"jaxgrpo {name}: interrupted; continue from the last checkpoint with "
              f"jaxgrpo {name} --resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result_table(summary, out))
    if sft and summary["complete"]:
        from .text.evaluation import evaluate_text
        run = runs.load_run(out)
        res = evaluate_text(config, run.state.params, num_prompts=1000, num_samples=0,
                            seed=base_seed)
        acc = res["greedy_accuracy"]
        print("held-out greedy accuracy (1000 prompts): "
              + ", ".join(f"{100 * a:.1f}%" for a in acc["per_seed"])
              + (f"; mean {100 * acc['mean']:.1f}%" if run.seeds > 1 else ""))
        print(f"start GRPO from it: jaxgrpo train --env {config.env} --set init_from={out}")
    return 0


def result_table(summary: dict, out) -> str:
    """What ``jaxgrpo train`` prints: a header line, each seed's final return and env steps,
    the mean with its 95% CI, a note when the run used far less than its budget, the times."""
    fmt = lambda x: "nan" if x is None else f"{x:.2f}"
    fr = summary["final_return"]
    text = str(summary["env"]).startswith("text:")
    what = ("final acc." if summary["algo"] == "sft" else "final reward") if text else \
        "final return"
    steps = ("prompts" if summary["algo"] == "sft" else "tokens") if text else "env steps"
    budget = summary["total_timesteps"]
    if summary["complete"]:
        state = "done"
    else:
        state = (f"stopped at iteration {summary['iterations_done']}/{summary['iterations']}; "
                 f"continue with jaxgrpo train --resume {out}")
    lines = [f"{summary['algo'].upper()} {summary['env']}, {summary['seeds']} seed(s), "
             f"{budget:,}-step budget: {state}",
             f"  {'seed':>4}  {what:>12}  {steps:>10}"]
    for s, (r, n) in enumerate(zip(fr["per_seed"], summary["env_steps_by_seed"])):
        lines.append(f"  {s:>4}  {fmt(r):>12}  {n:>10,.0f}")
    ci = fr["ci95"]
    lines.append(f"  {'mean':>4}  {fmt(fr['mean']):>12}  {summary['env_steps_per_seed']:>10,.0f}"
                 f"   95% CI of the mean over seeds: [{fmt(ci[0])}, {fmt(ci[1])}]")
    used = summary["env_steps_per_seed"]
    if summary["complete"] and used < 0.9 * budget:
        if summary["algo"] == "ppo":
            lines.append(f"  note: used {used:,.0f} of the {budget:,}-step budget per seed: PPO "
                         f"runs whole iterations of num_envs x num_steps steps, and "
                         f"{summary['iterations']} fit in the budget")
        else:
            why = (f"num_iterations={summary['num_iterations']}"
                   if summary.get("num_iterations") is not None else
                   "the default count for this budget; episodes stayed shorter than it assumes")
            lines.append(f"  note: used {used:,.0f} of the {budget:,}-step budget per seed: the "
                         f"run ended after its {summary['iterations']} iterations ({why}); raise "
                         "num_iterations (--set num_iterations=N) to use the rest")
    lines.append({"final return": "  (final return: each seed's training return in its last "
                                  "iteration)",
                  "final reward": "  (final reward: each seed's mean verifier reward of its "
                                  "last iteration's completions)",
                  "final acc.": "  (final accuracy: each seed's last training batch, greedy "
                                "by teacher forcing)"}[what])
    lines.append(f"compile {summary['compile_seconds']:.1f} s, run {summary['run_seconds']:.1f} s "
                 f"({(summary['steps_per_second'] or 0):,.0f} env steps/s, all seeds); "
                 f"wrote {out}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- eval

def cmd_eval(argv) -> int:
    args = _eval_parser().parse_args(argv)
    from . import configio, rundir
    from .fileio import atomic_path
    try:
        run_dir = Path(args.run)
        kind = rundir.folder_kind(run_dir)
        if not run_dir.is_dir():
            raise rundir.RunError(f"{run_dir}: no such run folder")
        if kind == "sweep":
            raise rundir.RunError(
                f"{run_dir}: is a sweep folder, which keeps metrics, not policies; evaluate a "
                "combination from Python (jaxgrpo.evaluate(res.configs[c], res.states[c], key)) "
                "or train it as a run with jaxgrpo train")
        if args.gif:
            rundir.check_new_file(args.gif, "--gif", overwrite=args.overwrite,
                                  suffixes=(".gif",))
            if (run_dir / "config.yaml").is_file():
                from .render import check_gif
                check_gif(configio.load_config(run_dir / "config.yaml")[0])
        rundir.read_evaluations(run_dir)          # a bad eval.json fails before the work
        from . import runs
        run = runs.load_run(run_dir, step=args.step)
    except _user_errors() as e:
        raise UsageError(str(e)) from None
    cfg = run.config
    partial = "" if run.step == cfg.iterations else (
        f" (checkpoint at iteration {run.step} of {cfg.iterations}: the run is not finished)")
    print(f"{run.path}: {cfg.algo.upper()} on {cfg.env}, {run.seeds} seed(s){partial}")
    if cfg.env.startswith("text:"):
        if args.gif:
            raise UsageError("--gif: only for gymnax environments, not text tasks")
        return _eval_text(run, args)
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
    try:
        rundir.add_evaluation(run.path, res)
    except rundir.RunError as e:
        raise UsageError(str(e)) from None
    if args.gif:
        import jax

        from .render import render_gif
        params0 = jax.tree.map(lambda x: x[0], run.state.params)
        with atomic_path(args.gif) as tmp:
            info = render_gif(cfg, params0, tmp, jax.random.key(args.seed),
                              greedy=not args.gif_sampled, max_steps=args.gif_max_steps,
                              stride=args.gif_stride)
        print(f"wrote {args.gif}: seed 0, {'sampled' if args.gif_sampled else 'greedy'} "
              f"actions, {info['steps']} steps, return {info['return']:.2f}, "
              f"{info['frames']} frames")
    return 0


def _eval_text(run, args) -> int:
    """``jaxgrpo eval`` of a text run: held-out greedy accuracy and pass@k per seed, a few
    decoded prompts with seed 0's greedy completions; added to RUN/eval.json."""
    from . import rundir
    from .text.evaluation import evaluate_text
    res = evaluate_text(run.config, run.state.params, num_prompts=args.prompts,
                        num_samples=args.samples, seed=args.seed)
    res["checkpoint"] = run.step
    pct = lambda x: f"{100 * x:6.1f}%"
    ks = list(res["pass_at_k"])
    print(f"{args.prompts} held-out prompts; pass@k from {args.samples} completions per prompt "
          f"at temperature {res['temperature']:g} (unbiased estimator)")
    print(f"{'seed':>6}  {'greedy':>7}  " + "  ".join(f"{'pass@' + str(k):>8}" for k in ks))
    for s in range(run.seeds):
        print(f"{s:>6}  {pct(res['greedy_accuracy']['per_seed'][s])}  " + "  ".join(
            f"{pct(res['pass_at_k'][k]['per_seed'][s]):>8}" for k in ks))
    print(f"{'mean':>6}  {pct(res['greedy_accuracy']['mean'])}  " + "  ".join(
        f"{pct(res['pass_at_k'][k]['mean']):>8}" for k in ks))
    lo, hi = res["greedy_accuracy"]["ci95"]
    print(f"95% bootstrap CI of the mean greedy accuracy over seeds: [{100 * lo:.1f}%, "
          f"{100 * hi:.1f}%]")
    print("seed 0, greedy:")
    for ex in res["examples"]:
        mark = "ok" if ex["reward"] >= 1.0 else "wrong"
        print(f"  {ex['prompt']}{ex['completion']}   ({mark})")
    res["pass_at_k"] = {str(k): v for k, v in res["pass_at_k"].items()}
    try:
        rundir.add_evaluation(run.path, res)
    except rundir.RunError as e:
        raise UsageError(str(e)) from None
    return 0


# ----------------------------------------------------------------------------- plot

def cmd_plot(argv) -> int:
    args = _plot_parser().parse_args(argv)
    from . import rundir
    from .fileio import atomic_path
    try:
        out = rundir.check_new_file(args.out, "--out", overwrite=args.overwrite,
                                    suffixes=rundir.IMAGE_SUFFIXES)
        from .plots import plot_runs
        with atomic_path(out) as tmp:
            plot_runs(args.runs, tmp, metric=args.metric, labels=args.labels,
                      title=args.title, smooth=args.smooth)
    except _user_errors() as e:
        raise UsageError(str(e)) from None
    print(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- sweep

def _sweep_args(args, rundir, configio):
    """``(spec, out)`` from the parsed arguments (nothing compiled, nothing written)."""
    if (args.config is None) == (args.resume is None):
        raise UsageError("give SWEEP.yaml or --resume DIR (one of them)")
    if args.resume is not None:
        for flag, v in (("--out", args.out), ("--overwrite", args.overwrite),
                        ("--checkpoint-every", args.checkpoint_every)):
            if v:
                raise UsageError(f"{flag}: not with --resume (the sweep continues in its own "
                                 "folder, with its own sweep.yaml)")
        out = rundir.check_resume_sweep(args.resume)
        spec = configio.load_sweep_spec(out / "sweep.yaml")
        if spec["checkpoint_every"] is None:
            raise rundir.RunError(f"--resume {out}: its sweep.yaml has no checkpoint_every")
        return spec, out
    spec = configio.load_sweep_spec(args.config)
    if args.checkpoint_every is not None:
        spec["checkpoint_every"] = args.checkpoint_every
        if args.checkpoint_every % spec["log_every"]:
            raise ValueError(f"--checkpoint-every: must be a multiple of log_every "
                             f"({spec['log_every']}), got {args.checkpoint_every}")
    out = Path(args.out or spec["out"] or Path("runs") / Path(args.config).stem)
    rundir.check_sweep_out(out, overwrite=args.overwrite)
    if spec["checkpoint_every"] is not None and rundir.folder_kind(out) is not None:
        raise rundir.RunError(f"--out {out}: already holds results; a checkpointed sweep starts "
                              "in a new folder (continue one with jaxgrpo sweep --resume DIR)")
    return spec, out


def _join(args) -> None:
    """``jax.distributed.initialize`` as the flags ask (nothing when none is given)."""
    addr = [args.coordinator, args.num_processes, args.process_id]
    if args.distributed and any(v is not None for v in addr):
        raise UsageError("--distributed: not with --coordinator/--num-processes/--process-id "
                         "(it reads them from the cluster launcher)")
    if any(v is not None for v in addr) and any(v is None for v in addr):
        raise UsageError("--coordinator, --num-processes and --process-id go together")
    if args.coordinator is not None:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--coordinator {args.coordinator!r}: must be HOST:PORT")
        if args.process_id >= args.num_processes:
            raise UsageError(f"--process-id {args.process_id}: must be < --num-processes "
                             f"{args.num_processes}")
    if not args.distributed and args.coordinator is None:
        return
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices; else unused
    if args.distributed:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)


def cmd_sweep(argv) -> int:
    args = _sweep_parser().parse_args(argv)
    from . import configio, rundir
    _join(args)          # first: building a config starts JAX's backend
    error = None
    try:
        spec, out = _sweep_args(args, rundir, configio)
    except _user_errors() as e:
        error, spec, out = UsageError(str(e)), None, None
    except UsageError as e:
        error, spec, out = e, None, None
    multi = args.distributed or args.coordinator is not None
    if error is not None and not multi:
        raise error
    import jax
    me, n_proc = jax.process_index(), jax.process_count()
    if n_proc > 1:   # every process stops, with one message, if any process must
        from .sweeps import _describe, agree
        desc = {} if spec is None else _describe(
            spec["config"], spec["grid"], spec["seeds"], spec["base_seed"], spec["log_every"],
            None, spec["compiler_options"], spec["vmap_size"], spec["checkpoint_every"])
        try:
            agree(desc, None if error is None else ValueError(str(error)))
        except ValueError as e:
            raise UsageError(str(e)) from None
    ckpt_dir = None
    if spec["checkpoint_every"] is not None:
        ckpt_dir = out / rundir.SWEEP_CHECKPOINTS
        if args.resume is None and me == 0:
            rundir.start_sweep(out, spec)
    from .sweeps import expand_grid, sweep
    n = len(expand_grid(spec["grid"]))
    who = f" (process {me} of {n_proc})" if n_proc > 1 else ""
    print(f"jaxgrpo sweep{who}: {n} combinations x {spec['seeds']} seeds -> {out}"
          + (f", checkpoints every {spec['checkpoint_every']} iterations in {ckpt_dir}"
             if ckpt_dir else ""), flush=True)
    try:
        result = sweep(spec["config"], spec["grid"], spec["seeds"], base_seed=spec["base_seed"],
                       log_every=spec["log_every"], compiler_options=spec["compiler_options"],
                       vmap_size=spec["vmap_size"], checkpoint_dir=ckpt_dir,
                       checkpoint_every=spec["checkpoint_every"])
    except rundir.CheckpointError as e:
        raise UsageError(f"{e}; it was left as it is") from None
    except KeyboardInterrupt:
        kept = (f"; continue with jaxgrpo sweep --resume {out}" if ckpt_dir else
                f"; nothing was written to {out}")
        print(f"jaxgrpo sweep: interrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if me != 0:
        mine = {d.id for d in jax.local_devices()}
        rows = sum(r for p in result.placement for d, r in p["rows_per_device"].items()
                   if d in mine)
        print(f"jaxgrpo sweep (process {me} of {n_proc}): computed {rows} run rows on devices "
              f"{sorted(mine)}; process 0 writes {out}")
        return 0
    try:
        table = rundir.write_sweep(out, result, spec, overwrite=args.overwrite,
                                   in_progress=ckpt_dir is not None)
    except rundir.RunError as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        print(f"jaxgrpo sweep: interrupted while writing; {out} is as it was",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    used = sorted({str(p["vmap_size"] or "all") for p in result.placement})
    n_dev = jax.device_count()
    print(f"jaxgrpo sweep: {sum(p['runs'] for p in result.placement)} runs on {n_dev} "
          f"device{'s' if n_dev > 1 else ''}, vmap_size {', '.join(used)}")
    print(f"{table.attrs['metric']} per combination: mean and 95% bootstrap CI over seeds")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {out}/: metrics.csv, summary.csv, curves.png, sweep.yaml")
    return 0


COMMANDS = {"train": cmd_train, "sft": cmd_sft, "eval": cmd_eval, "plot": cmd_plot,
            "sweep": cmd_sweep}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0; 2 for bad input, with one line on stderr; 130
    when interrupted)."""
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
