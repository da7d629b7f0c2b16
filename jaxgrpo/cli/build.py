"""Configs from the parsed ``jaxgrpo train`` / ``jaxgrpo sft`` arguments (nothing compiled)."""
from __future__ import annotations

import datetime
from pathlib import Path

from .. import configio
from .usage import UsageError

# the flags that set a config field or run key, and the key each sets
_FLAG_KEYS = (("algo", "algo"), ("env", "env"), ("seeds", "seeds"),
              ("total_timesteps", "total_timesteps"), ("num_steps", "num_steps"),
              ("seed", "base_seed"), ("preset", "preset"))


def build_config(args):
    """``(config, seeds, base_seed)`` from the parsed train arguments; ``ValueError`` naming
    the field or file on bad input. Nothing is compiled. Precedence: defaults < preset <
    ``--config`` file < flags < ``--set``."""
    d = configio.load_yaml(args.config) if args.config else {}
    origin = {k: "file" for k in d}
    if getattr(args, "num_steps", False) is not False:        # jaxgrpo sft
        d["algo"] = "sft"
    for flag, key in _FLAG_KEYS:
        v = getattr(args, flag, None)
        if v is not None:
            d[key] = v
            origin[key] = "flag"
    for text in args.overrides:
        d = configio.apply_override(d, text)
        origin[text.partition("=")[0].split(".")[0].strip()] = "set"
    try:
        config, seeds, base_seed = configio.config_from_dict(d)
        if getattr(config, "init_from", None) is not None:
            configio.check_init_from(config, seeds)   # before anything is compiled or written
        return config, seeds, base_seed
    except ValueError as e:
        field = str(e).split(":", 1)[0]
        if origin.get(field) == "file":      # blame the file when the value came from it
            raise ValueError(f"{args.config}: {e}") from None
        raise


def preset_name(args, config) -> str | None:
    """``"grpo/CartPole-v1"`` when ``--preset`` was given (recorded in config.yaml)."""
    return None if not getattr(args, "preset", None) else f"{config.algo}/{config.env}"


def default_out(config) -> str:
    """``runs/<env>-<algo>-<time>``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{config.env}-{config.algo}-{stamp}")


def resume_config(args):
    """``(config, seeds, base_seed)`` of ``--resume DIR``: the run's own config.yaml, changed
    by any other flags given (which must then leave it the same)."""
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
    given = any(getattr(args, flag, None) is not None for flag, _ in _FLAG_KEYS) or \
        args.config is not None
    if not (given or args.overrides):
        return saved
    args.config = args.config or str(run / "config.yaml")
    return build_config(args)
