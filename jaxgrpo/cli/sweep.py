"""``jaxgrpo sweep``: the sweep a YAML file describes, on one or several processes, written
to a sweep folder (or continued from its checkpoints with ``--resume``)."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import configio, grids, preemption, rundir, sweepdir
from ..errors import CheckpointError, RunError
from ..loggers import require
from .distributed import agree_or_stop, join
from .parsers import sweep_parser
from .usage import EXIT_INTERRUPTED, EXIT_PREEMPTED, UsageError, preempted_line, user_errors


def sweep_args(args):
    """``(spec, out)`` from the parsed arguments (nothing compiled, nothing written)."""
    if (args.config is None) == (args.resume is None):
        raise UsageError("give SWEEP.yaml or --resume DIR (one of them)")
    if args.resume is not None:
        for flag, v in (("--out", args.out), ("--overwrite", args.overwrite),
                        ("--checkpoint-every", args.checkpoint_every)):
            if v:
                raise UsageError(f"{flag}: not with --resume (the sweep continues in its own "
                                 "folder, with its own sweep.yaml)")
        out = sweepdir.check_resume_sweep(args.resume)
        return grids.load_sweep_spec(out / "sweep.yaml"), out
    spec = grids.load_sweep_spec(args.config)
    for config in grids.grid_configs(spec["config"], spec["grid"])[1]:
        if getattr(config, "init_from", None) is not None:
            configio.check_init_from(config, per_seed=False)   # before the folder is written
    if args.checkpoint_every is not None:
        spec["checkpoint_every"] = grids.check_checkpoint_every(args.checkpoint_every,
                                                                spec["log_every"])
    out = Path(args.out or spec["out"] or Path("runs") / Path(args.config).stem)
    sweepdir.check_sweep_out(out, overwrite=args.overwrite)
    if args.tensorboard and (out / "tensorboard").exists():
        raise RunError(f"--tensorboard: {out}/tensorboard/ holds an earlier sweep's logs; "
                       "move it away or choose another --out")
    if spec["checkpoint_every"] is not None and rundir.folder_kind(out) is not None:
        raise RunError(f"--out {out}: already holds results; a checkpointed sweep starts "
                              "in a new folder (continue one with jaxgrpo sweep --resume DIR)")
    return spec, out


def _spec_or_error(args):
    """``(spec, out, None)``, or ``(None, None, UsageError)`` on bad input."""
    try:
        if args.tensorboard:
            require("tensorboardX", "--tensorboard", "tensorboard")
        if args.wandb:
            require("wandb", "--wandb", "wandb")
        return (*sweep_args(args), None)
    except user_errors() as e:
        return None, None, UsageError(str(e))
    except UsageError as e:
        return None, None, e


def cmd_sweep(argv) -> int:
    args = sweep_parser().parse_args(argv)
    if args.resume is not None and sweepdir.sweep_complete(args.resume):
        print(f"jaxgrpo sweep: {args.resume}: the sweep is complete (summary.csv is there); "
              "nothing to do")
        return 0
    multi = join(args)          # first: building a config starts JAX's backend
    if not multi:               # one CPU device per core, unless the user chose (use_cpu_cores)
        from ..cores import cpu_cores_by_default
        cpu_cores_by_default()
    spec, out, error = _spec_or_error(args)
    if error is not None and not multi:
        raise error
    import jax               # here: --help and bad input never need it
    me, n_proc = jax.process_index(), jax.process_count()
    if n_proc > 1:
        agree_or_stop(spec, error)
    if error is not None:
        raise error
    # the checkpoints of a sweep that --overwrite's older results could not be continued
    ckpt_dir = None if args.overwrite and rundir.folder_kind(out) is not None else \
        out / sweepdir.SWEEP_CHECKPOINTS
    if spec["checkpoint_every"] is not None and args.resume is None and me == 0:
        sweepdir.start_sweep(out, spec)
    try:
        with preemption.handling():
            result = _run(spec, out, ckpt_dir,
                          f" (process {me} of {n_proc})" if n_proc > 1 else "",
                          sweep_reporter(args, spec, out) if n_proc == 1 else None)
    except preemption.Preempted as p:
        return _preempted(p, args, spec, out, ckpt_dir, me)
    if isinstance(result, int):
        return result
    if me != 0:
        mine = {d.id for d in jax.local_devices()}
        rows = sum(r for p in result.placement for d, r in p["rows_per_device"].items()
                   if d in mine)
        print(f"jaxgrpo sweep (process {me} of {n_proc}): computed {rows} run rows on devices "
              f"{sorted(mine)}; process 0 writes {out}")
        return 0
    return _write(result, spec, out, args.overwrite,
                  in_progress=args.resume is not None or spec["checkpoint_every"] is not None)


def _run(spec, out, ckpt_dir, who: str, reporter=None):
    """The sweep's result, or the exit code when it was interrupted. ``reporter``: the
    progress line and loggers (``sweep_reporter``), closed here."""
    from ..sweeps import sweep      # here: it imports JAX
    n = len(grids.expand_grid(spec["grid"]))
    print(f"jaxgrpo sweep{who}: {n} combinations x {spec['seeds']} seeds -> {out}"
          + (f", checkpoints every {spec['checkpoint_every']} iterations in {ckpt_dir}"
             if spec["checkpoint_every"] else ""), flush=True)
    try:
        return sweep(spec["config"], spec["grid"], spec["seeds"], base_seed=spec["base_seed"],
                     log_every=spec["log_every"], compiler_options=spec["compiler_options"],
                     vmap_size=spec["vmap_size"], checkpoint_dir=ckpt_dir,
                     checkpoint_every=spec["checkpoint_every"], segment="auto",
                     reporter=reporter)
    except CheckpointError as e:
        raise UsageError(f"{e}; it was left as it is") from None
    except KeyboardInterrupt:
        kept = (f"; continue with jaxgrpo sweep --resume {out}"
                if (out / "sweep.yaml").exists() and ckpt_dir else
                f"; nothing was written to {out}")
        print(f"jaxgrpo sweep: interrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if reporter is not None:
            reporter.close()


def _preempted(p, args, spec, out, ckpt_dir, me) -> int:
    """The one line of a sweep stopped by a signal (process 0), and its exit status. A sweep
    that reached an iteration has its checkpoint in ``ckpt_dir``; its folder then holds
    ``sweep.yaml`` too (written now if it did not yet), so ``--resume`` continues it."""
    resume = f"jaxgrpo sweep --resume {out}"
    if p.iteration and ckpt_dir is not None:
        if me == 0 and not (out / "sweep.yaml").exists():
            sweepdir.start_sweep(out, spec)
        kept, then = f"checkpoint at {p.iteration} iterations in {ckpt_dir}", resume
    else:
        kept = ("nothing trained yet" if not p.iteration else
                f"nothing kept: {out} keeps its earlier results until a sweep finishes")
        then = resume if (out / "sweep.yaml").exists() and ckpt_dir is not None else \
            " ".join(["jaxgrpo sweep", str(args.config), "--out", str(out)]
                     + (["--overwrite"] if args.overwrite else [])
                     + ([f"--checkpoint-every {args.checkpoint_every}"]
                        if args.checkpoint_every else []))
    if me == 0:
        print(preempted_line("sweep", p.signum, kept, then), file=sys.stderr, flush=True)
    return EXIT_PREEMPTED


def _write(result, spec, out, overwrite: bool, in_progress: bool) -> int:
    """Process 0 writes the sweep folder and prints the summary table."""
    import jax
    try:
        table = sweepdir.write_sweep(out, result, spec, overwrite=overwrite,
                                   in_progress=in_progress)
    except RunError as e:
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


def sweep_reporter(args, spec, out):
    """The progress line (unless ``--quiet``) and the ``--tensorboard`` / ``--wandb`` loggers
    of a single-process sweep (``loggers.SweepReporter``), or None when it has none. Each
    combination logs the seed means of its rows to ``OUT/tensorboard/<c>_<grid values>/`` and
    to a W&B run of that name in the group ``OUT``'s name (its id kept in
    ``OUT/wandb-ids/``, so that ``--resume`` continues it)."""
    if args.quiet and not (args.tensorboard or args.wandb):
        return None
    from ..configio import config_to_dict
    from ..loggers import SweepReporter, TensorBoardLogger, WandbLogger
    from ..plots import grid_label
    combos, configs = grids.grid_configs(spec["config"], spec["grid"])
    width = len(str(len(combos) - 1))
    name = lambda c: (f"{c:0{width}d}_" + grid_label(combos[c]).replace(", ", "_")
                      ).replace("/", "-").replace(" ", "-")

    def loggers_for(c):
        lg = [TensorBoardLogger(out / "tensorboard" / name(c))] if args.tensorboard else []
        if args.wandb:
            lg.append(WandbLogger(
                out, config_to_dict(configs[c], spec["seeds"], spec["base_seed"]),
                args.wandb_project or "jaxgrpo", name=f"{out.name}/{name(c)}", group=out.name,
                id_file=out / "wandb-ids" / f"{name(c)}.txt", several=True))
        return lg

    return SweepReporter(spec["seeds"], [cfg.total_timesteps for cfg in configs],
                         bar=not args.quiet, loggers_for=loggers_for,
                         description=f"sweep {len(combos)} x {spec['seeds']} seeds")
