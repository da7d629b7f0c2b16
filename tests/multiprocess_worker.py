"""One process of the two-process sweep tests (tests/test_multiprocess.py), not a test module.

    python tests/multiprocess_worker.py PORT PROCESS_ID OUT_DIR

On every process (the caller sets ``JAX_NUM_CPU_DEVICES``):

0. runs ``jaxgrpo sweep YAML --out OUT_DIR/cli --coordinator 127.0.0.1:PORT --num-processes 2
   --process-id ID`` (``multiprocess_worker_spec.YAML``), which joins the 2-process
   ``jax.distributed`` job (CPU collectives over gloo) that the steps below then use;
1. runs the same sweep from Python (compiled already) and saves its metrics and placement to
   OUT_DIR/p<ID>.npz / .json;
2. makes a call that differs between the processes (``seeds``) and records the error;
3. passes ``devices`` of process 0 only and records the error;
4. runs it with checkpoints in OUT_DIR/ck every 2 of its 3 iterations, then removes the last
   checkpoint (as if the job had been killed before writing it) and calls the sweep again:
   it continues from iteration 2, and its metrics are compared with the first call's.
"""
import contextlib
import io
import json
import sys

import jax
import numpy as np
from multiprocess_worker_spec import YAML

from jaxgrpo import cli

port, pid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(f"{out}/s{pid}.yaml", "w") as f:
    f.write(YAML)
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    rc = cli.main(["sweep", f"{out}/s{pid}.yaml", "--out", f"{out}/cli", "--coordinator",
                   f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(pid)])
assert jax.process_count() == 2
from multiprocess_worker_spec import sweep_args  # noqa: E402

CFG, GRID, SEEDS, KW = sweep_args()

from jaxgrpo.sweeps import sweep  # noqa: E402

info = {"cli_rc": rc, "cli_out": printed.getvalue(), "devices": [d.id for d in jax.devices()],
        "local": [d.id for d in jax.local_devices()]}
r = sweep(CFG, GRID, SEEDS, **KW)
info["placement"] = r.placement
info["states_none"] = r.states is None
np.savez(f"{out}/p{pid}.npz", **r.metrics)

for name, call in (("mismatch", lambda: sweep(CFG, GRID, SEEDS + pid, **KW)),
                   ("subset", lambda: sweep(CFG, GRID, SEEDS, devices=jax.devices()[:2], **KW))):
    try:
        call()
        info[name] = None
    except ValueError as e:
        info[name] = str(e)

ck = sweep(CFG, GRID, SEEDS, checkpoint_dir=f"{out}/ck", checkpoint_every=2, **KW)
if pid == 0:
    import shutil
    shutil.rmtree(f"{out}/ck/3")          # steps: iterations done, 2 then 3
from jax.experimental import multihost_utils  # noqa: E402
multihost_utils.sync_global_devices("removed")
again = sweep(CFG, GRID, SEEDS, checkpoint_dir=f"{out}/ck", checkpoint_every=2, **KW)
np.savez(f"{out}/p{pid}_ck.npz", **ck.metrics)
info["resumed_equal"] = all(np.array_equal(ck.metrics[k], again.metrics[k], equal_nan=True)
                            for k in ck.metrics)
json.dump(info, open(f"{out}/p{pid}.json", "w"))
print(f"process {pid} done", flush=True)
