"""``jaxgrpo plot``: run and sweep folders overlaid in one figure."""
from __future__ import annotations

from .. import rundir
from ..fileio import atomic_path
from ..rundir import plot_runs
from .parsers import plot_parser
from .usage import UsageError, user_errors


def cmd_plot(argv) -> int:
    args = plot_parser().parse_args(argv)
    try:
        out = rundir.check_new_file(args.out, "--out", overwrite=args.overwrite,
                                    suffixes=rundir.IMAGE_SUFFIXES)
        with atomic_path(out) as tmp:
            plot_runs(args.runs, tmp, metric=args.metric, labels=args.labels,
                      title=args.title, smooth=args.smooth)
    except user_errors() as e:
        raise UsageError(str(e)) from None
    print(f"wrote {args.out}")
    return 0
