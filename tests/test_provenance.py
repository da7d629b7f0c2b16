"""jaxgrpo.provenance: the machine, device, versions and code digest recorded with results."""
import re

import jax

from jaxgrpo import provenance


def test_machine_line_and_info():
    line = provenance.machine()
    assert re.search(r", \d+ cores, jax \S+, device \S+", line)
    assert f"jax {jax.__version__}" in line
    info = provenance.machine_info()
    assert {"cpu", "isa", "cores", "python", "jax", "jaxlib", "flax", "optax", "gymnax",
            "distrax", "device", "memory_gib"} <= set(info)
    assert info["jax"] == jax.__version__ and info["cores"] >= 1 and info["memory_gib"] >= 1
    assert info["isa"] is None or set(info["isa"]) <= set(provenance.ISA_FLAGS)


def test_device_and_versions():
    d = jax.devices()[0]
    assert provenance.device().startswith(d.platform)
    v = provenance.versions()
    assert v["jax"] == jax.__version__ and "jaxgrpo" in v and "python" in v


def test_code_digest_is_stable_and_short():
    a = provenance.code_digest()
    assert re.fullmatch(r"[0-9a-f]{16}", a) and provenance.code_digest() == a
