"""Several processes for ``jaxgrpo sweep``: joining a ``jax.distributed`` job, and stopping
every process with one message when any of them has bad input."""
from __future__ import annotations

from .usage import UsageError


def check_join_args(args) -> bool:
    """Whether the flags ask to join a job; ``UsageError`` when they do not fit together."""
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
    return args.distributed or args.coordinator is not None


def join(args) -> bool:
    """``jax.distributed.initialize`` as the flags ask (nothing when none is given); whether
    this process joined a job."""
    if not check_join_args(args):
        return False
    import jax      # here: only a multi-process sweep needs it this early
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices; else unused
    if args.distributed:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    return True


def agree_or_stop(spec: dict | None, error: Exception | None) -> None:
    """Every process of the job stops, with one message, if any process must (bad input on
    one of them, or sweeps that differ between them)."""
    from ..sweeps import agree, describe     # here: they import JAX
    desc = {} if spec is None else describe(
        spec["config"], spec["grid"], spec["seeds"], spec["base_seed"], spec["log_every"],
        None, spec["compiler_options"], spec["vmap_size"], spec["checkpoint_every"])
    try:
        agree(desc, None if error is None else ValueError(str(error)))
    except ValueError as e:
        raise UsageError(str(e)) from None
