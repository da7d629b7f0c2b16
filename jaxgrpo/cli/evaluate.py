"""``jaxgrpo eval``: a run's checkpoint evaluated (returns, or a text run's accuracy and
pass@k), added to RUN/eval.json; optionally a GIF of one episode."""
from __future__ import annotations

from pathlib import Path

from .. import configio, rundir
from ..errors import RunError
from ..fileio import atomic_path
from .parsers import eval_parser
from .tables import eval_table, text_eval_table
from .usage import UsageError, user_errors


def _check(args) -> Path:
    """The run folder, after every check that needs no JAX (``RunError``/``ValueError``)."""
    run_dir = Path(args.run)
    kind = rundir.folder_kind(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if kind == "sweep":
        raise RunError(
            f"{run_dir}: is a sweep folder, which keeps metrics, not policies; evaluate a "
            "combination from Python (jaxgrpo.evaluate(res.configs[c], res.states[c], key)) "
            "or train it as a run with jaxgrpo train")
    if args.gif:
        rundir.check_new_file(args.gif, "--gif", overwrite=args.overwrite, suffixes=(".gif",))
        if (run_dir / "config.yaml").is_file():
            from ..render import check_gif     # here: render is only for --gif
            check_gif(configio.load_config(run_dir / "config.yaml")[0])
    rundir.read_evaluations(run_dir)          # a bad eval.json fails before the work
    return run_dir


def _add_evaluation(path, res) -> None:
    try:
        rundir.add_evaluation(path, res)
    except RunError as e:
        raise UsageError(str(e)) from None


def cmd_eval(argv) -> int:
    args = eval_parser().parse_args(argv)
    try:
        run_dir = _check(args)
        from .. import runs      # here: it imports JAX, which --help and bad input never need
        run = runs.load_run(run_dir, step=args.step)
    except user_errors() as e:
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
    print(eval_table(res, run.seeds, args.episodes))
    _add_evaluation(run.path, res)
    if args.gif:
        _gif(run, args)
    return 0


def _eval_text(run, args) -> int:
    """``jaxgrpo eval`` of a text run: held-out greedy accuracy and pass@k per seed, a few
    decoded prompts with seed 0's greedy completions; added to RUN/eval.json."""
    from ..text.evaluation import evaluate_text
    res = evaluate_text(run.config, run.state.params, num_prompts=args.prompts,
                        num_samples=args.samples, seed=args.seed)
    res["checkpoint"] = run.step
    print(text_eval_table(res, run.seeds, args.prompts, args.samples))
    res["pass_at_k"] = {str(k): v for k, v in res["pass_at_k"].items()}
    _add_evaluation(run.path, res)
    return 0


def _gif(run, args) -> None:
    """Render one episode of seed 0's policy to ``args.gif``."""
    import jax

    from ..render import render_gif
    params0 = jax.tree.map(lambda x: x[0], run.state.params)
    with atomic_path(args.gif) as tmp:
        info = render_gif(run.config, params0, tmp, jax.random.key(args.seed),
                          greedy=not args.gif_sampled, max_steps=args.gif_max_steps,
                          stride=args.gif_stride)
    print(f"wrote {args.gif}: seed 0, {'sampled' if args.gif_sampled else 'greedy'} "
          f"actions, {info['steps']} steps, return {info['return']:.2f}, "
          f"{info['frames']} frames")
