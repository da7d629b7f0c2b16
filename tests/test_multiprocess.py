"""Sweeps over two processes joined by ``jax.distributed`` on 127.0.0.1 (CPU collectives over
gloo), each with 2 forced CPU devices: the results equal a single-process sweep's, placement is
the same global view on both, mismatched calls and a device subset that leaves a process out
are one-line errors on both, and a checkpointed sweep continues where it stopped.

The processes are tests/multiprocess_worker.py; each run has a hard timeout, and both are
killed as soon as one fails (a lone process would wait for its peer)."""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxgrpo.sweeps import sweep

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import multiprocess_worker_spec as spec  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-5)    # as tests/test_sweep.py: float rounding across layouts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two(argv_for, cwd, timeout=150):
    """Start ``argv_for(port, i)`` for i = 0, 1 with 2 CPU devices each; wait for both (killing
    both when one fails or the time is up). Returns their (returncode, output) pairs."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", JAX_NUM_CPU_DEVICES="2")
    port = free_port()
    logs = [open(os.path.join(cwd, f"log{i}"), "w+") for i in range(2)]
    procs = [subprocess.Popen(argv_for(port, i), cwd=cwd, env=env, stdout=logs[i],
                              stderr=subprocess.STDOUT) for i in range(2)]
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    out = []
    for p, f in zip(procs, logs):
        f.seek(0)
        out.append((p.returncode, f.read()))
        f.close()
    return out


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp")
    worker = os.path.join(HERE, "multiprocess_worker.py")
    res = run_two(lambda port, i: [sys.executable, worker, str(port), str(i), str(d)], d)
    for rc, log in res:
        assert rc == 0, log[-3000:]
    info = [json.load(open(d / f"p{i}.json")) for i in range(2)]
    return d, info


def test_both_processes_get_the_single_process_results(two):
    d, info = two
    cfg, grid, seeds, kw = spec.sweep_args()
    ref = sweep(cfg, grid, seeds, **kw)                   # 1 process, 1 device
    for i in range(2):
        got = np.load(d / f"p{i}.npz")
        assert set(got.files) == set(ref.metrics)
        for name in got.files:
            np.testing.assert_allclose(got[name], ref.metrics[name], **TOL, err_msg=name)
    p0, p1 = (np.load(d / f"p{i}.npz") for i in range(2))
    for name in p0.files:                                   # the same arrays on both, bitwise
        assert np.array_equal(p0[name], p1[name], equal_nan=True), name


def test_command_line_on_two_processes_writes_one_folder(two):
    d, info = two
    assert info[0]["cli_rc"] == 0 and info[1]["cli_rc"] == 0
    assert "wrote" in info[0]["cli_out"] and "runs on 4 devices, vmap_size all" in info[0]["cli_out"]
    assert info[1]["cli_out"].strip().splitlines()[-1] == (
        f"jaxgrpo sweep (process 1 of 2): computed 4 run rows on devices "
        f"{info[1]['local']}; process 0 writes {d}/cli")
    assert sorted(os.listdir(d / "cli")) == ["curves.png", "metrics.csv", "summary.csv",
                                             "sweep.yaml"]
    import pandas as pd
    df = pd.read_csv(d / "cli" / "metrics.csv")
    p0 = np.load(d / "p0.npz")
    got = df.sort_values(["combination", "seed", "iteration"])["episode_return"].to_numpy()
    # the same sweep twice on the same two processes: reproducible (up to the CSV's decimals)
    np.testing.assert_allclose(got, p0["episode_return"].ravel(), rtol=1e-6, atol=0)


def test_placement_is_the_same_global_view(two):
    _, info = two
    assert info[0]["local"] != info[1]["local"] and info[0]["devices"] == info[1]["devices"]
    assert info[0]["placement"] == info[1]["placement"]
    pl = info[0]["placement"][0]
    assert pl["runs"] == 6 and pl["padded_runs"] == 8
    assert pl["rows_per_device"] == {str(i): 2 for i in info[0]["devices"]}
    assert pl["vmap_size"] is None                          # "auto": every run vmapped
    assert info[0]["states_none"] and info[1]["states_none"]   # not addressable from one


def test_mismatch_and_device_subset_are_errors_on_both(two):
    _, info = two
    for i in range(2):
        assert info[i]["mismatch"] == ("sweep: the processes made different sweep calls: seeds "
                                       "(process 0: 2, process 1: 3); every process must call "
                                       "sweep with the same arguments")
        sub = info[i]["subset"]
        assert sub.startswith("devices: [0, 1] leave out every device of process 1"), sub


def test_checkpointed_two_process_sweep_continues(two):
    d, info = two
    assert info[0]["resumed_equal"] and info[1]["resumed_equal"]
    p0, plain = np.load(d / "p0_ck.npz"), np.load(d / "p0.npz")
    for name in p0.files:
        np.testing.assert_allclose(p0[name], plain[name], **TOL, err_msg=name)
