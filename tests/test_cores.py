"""jaxgrpo.cores: one CPU device per core (``use_cpu_cores``), what ``jaxgrpo sweep`` does by
default, and that importing the library leaves JAX unstarted so that it can still be called.

Each case needs a fresh JAX, so it runs in its own Python process (started together).
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

from conftest import env_without_cpu_count
from jaxgrpo import cli, cores

SCRIPT = r"""
import json, sys
case = sys.argv[1]
# the imports a notebook starts with: none of them may start JAX
from jaxgrpo import GRPOConfig, make_train, sweep, use_cpu_cores
from jaxgrpo.cores import cpu_cores_by_default, usable_cores
from jax._src import xla_bridge
out = {"started_by_imports": xla_bridge.backends_are_initialized(), "cores": usable_cores()}
if case == "explicit":
    out["returned"] = use_cpu_cores(3)
    out["again"] = use_cpu_cores(3)         # the same count once JAX has started: fine
else:
    out["returned"] = cpu_cores_by_default()
import jax
out["devices"] = [d.platform for d in jax.devices()]
if case == "explicit":
    try:
        use_cpu_cores(2)
    except RuntimeError as e:
        out["error"] = str(e)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def cases():
    envs = {"explicit": env_without_cpu_count(),
            "default": env_without_cpu_count(),
            "xla_flag": env_without_cpu_count(XLA_FLAGS="--xla_force_host_platform_device_count=3"),
            "env_var": env_without_cpu_count(JAX_NUM_CPU_DEVICES="1")}
    procs = {c: subprocess.Popen([sys.executable, "-c", SCRIPT, c], env={**e, "JAX_PLATFORMS": "cpu"},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c, e in envs.items()}
    out = {}
    for c, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, (c, stderr[-2000:])
        out[c] = json.loads(stdout.strip().splitlines()[-1])
    return out


def test_importing_the_library_does_not_start_jax(cases):
    assert not any(r["started_by_imports"] for r in cases.values())


def test_use_cpu_cores_gives_that_many_cpu_devices(cases):
    r = cases["explicit"]
    assert r["returned"] == 3 and r["again"] == 3 and r["devices"] == ["cpu"] * 3
    assert r["error"] == ("use_cpu_cores(2): JAX has already started with 3 CPU devices; call "
                          "it before any JAX computation, or start Python with "
                          "JAX_NUM_CPU_DEVICES=2")


def test_default_is_one_device_per_core_unless_chosen(cases):
    r = cases["default"]
    assert r["returned"] == r["cores"] and len(r["devices"]) == r["cores"]
    # a count the user chose is kept: the XLA flag, or JAX_NUM_CPU_DEVICES
    assert cases["xla_flag"]["returned"] is None and len(cases["xla_flag"]["devices"]) == 3
    assert cases["env_var"]["returned"] is None and len(cases["env_var"]["devices"]) == 1


@pytest.mark.parametrize("bad", [0, -1, 2.0, "2", True])
def test_bad_count_is_refused(bad):
    with pytest.raises(ValueError, match=r"use_cpu_cores: n must be an int >= 1, got"):
        cores.use_cpu_cores(bad)


@pytest.mark.parametrize("argv", [["sweep", "missing.yaml"], ["train", "--env", "NoSuchEnv"],
                                  ["sft", "--env", "NoSuchEnv"]])
def test_commands_ask_for_one_device_per_core(argv, monkeypatch, tmp_path):
    """``jaxgrpo sweep``, ``train`` and ``sft`` call ``cpu_cores_by_default`` first (here a
    recorder; the test process keeps its one device), before they read their input."""
    calls = []
    monkeypatch.setattr(cores, "cpu_cores_by_default", lambda: calls.append(1))
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert calls == [1]


def test_idle_cores_are_said_unless_the_count_was_chosen(monkeypatch):
    """``OneCoreWarning`` for several runs or seeds on one CPU device of a multi-core machine;
    nothing for several devices, an accelerator, one core, or a count the user chose."""
    from types import SimpleNamespace
    cpu, gpu = SimpleNamespace(platform="cpu"), SimpleNamespace(platform="gpu")

    def said(n_cores, chosen, devices):
        monkeypatch.setattr(cores, "usable_cores", lambda: n_cores)
        monkeypatch.setattr(cores, "cpu_devices_chosen", lambda: chosen)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cores.warn_idle_cores("run_training", "8 seeds", devices)
        return [str(x.message) for x in w if issubclass(x.category, cores.OneCoreWarning)]

    assert said(4, False, [cpu]) == [
        "run_training: 8 seeds on 1 CPU device, but this machine has 4 cores and XLA:CPU runs "
        "a program on about one of them; jaxgrpo.use_cpu_cores() before JAX starts (or "
        "JAX_NUM_CPU_DEVICES=4) gives one device per core and spreads them over the cores"]
    assert said(4, False, [cpu, cpu]) == said(4, False, [gpu]) == said(1, False, [cpu]) == []
    assert said(4, True, [cpu]) == []


def test_run_training_says_when_its_seeds_share_one_core(monkeypatch, tmp_path):
    """run_training checks for idle cores with its seeds before it compiles (one seed: no
    check)."""
    from jaxgrpo import GRPOConfig, runs
    seen = []
    monkeypatch.setattr(runs, "warn_idle_cores", lambda *a: seen.append(a[:2]))

    class Compiling(Exception):
        pass

    def compiling(*a, **k):
        raise Compiling
    monkeypatch.setattr(runs, "_compiled_init", compiling)
    for seeds, out in ((3, "a"), (1, "b")):
        with pytest.raises(Compiling):
            runs.run_training(GRPOConfig(), tmp_path / out, seeds=seeds)
    assert seen == [("run_training", "3 seeds")]


RUNS = r"""
import json, sys
import numpy as np, pandas as pd
from jaxgrpo import GRPOConfig, make_train, run_training, use_cpu_cores
from jaxgrpo.cli.tables import result_table
from jaxgrpo.runs import seed_devices
use_cpu_cores(2)
import jax
out = sys.argv[1]
opts = {"xla_cpu_use_fusion_emitters": True}          # conftest.BITWISE
cfg = GRPOConfig(total_timesteps=4 * 8 * 16, num_groups=2, group_size=4, num_steps=16,
                 env_params={"max_steps_in_episode": 50})
whole = run_training(cfg, out + "/whole", seeds=4, compiler_options=opts)
run_training(cfg, out + "/resumed", seeds=4, compiler_options=opts, checkpoint_every=2,
             stop_after=2)
resumed = run_training(cfg, out + "/resumed", seeds=4, resume=True)
# the same seeds on device 0 alone: jax.jit(jax.vmap(make_train(cfg)))
_, m = jax.jit(jax.vmap(make_train(cfg)))(jax.random.split(jax.random.key(0), 4))
a = pd.read_csv(out + "/whole/metrics.csv")
b = pd.read_csv(out + "/resumed/metrics.csv")
ret = np.asarray(m["episode_return"])
print(json.dumps({
    "seed_devices": [whole["seed_devices"], seed_devices(3), seed_devices(1)],
    "line": result_table(whole, out).splitlines()[-1],
    "resumed_equal": bool(a.equals(b)),
    "one_device_gap": float(np.nanmax(np.abs(
        a.pivot(index="iteration", columns="seed", values="episode_return").to_numpy().T
        - ret))),
}))
"""


def test_run_training_spreads_seeds_over_the_devices(tmp_path):
    """With 2 CPU devices, 4 seeds train 2 per device (3 seeds stay on one: 2 does not divide
    3), the result line says so, a resumed run equals the run in one go bit for bit, and the
    seeds' returns equal the same seeds vmapped on one device up to float rounding."""
    p = subprocess.run([sys.executable, "-c", RUNS, str(tmp_path)],
                       env=env_without_cpu_count(JAX_PLATFORMS="cpu"), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["seed_devices"] == [2, 1, 1]
    assert r["line"].endswith(f"env steps/s, all seeds over 2 devices); wrote {tmp_path}")
    assert r["resumed_equal"]
    assert r["one_device_gap"] < 1e-3
