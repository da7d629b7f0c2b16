"""Where a result came from: the machine, the device and the library versions (written with
every run folder, sweep and benchmark table)."""
from __future__ import annotations

import os
import platform


def machine() -> str:
    """One line: CPU model, cores, JAX version and device."""
    import jax
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__}, "
            f"device {jax.devices()[0].device_kind}")



def versions() -> dict:
    """Versions of jaxgrpo and the libraries a result depends on."""
    from importlib import metadata
    out = {"python": platform.python_version()}
    for name in ("jaxgrpo", "jax", "jaxlib", "flax", "optax", "gymnax", "orbax-checkpoint"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device() -> str:
    """``"cpu: cpu"``, ``"gpu: NVIDIA H100 80GB HBM3"``, ... (platform and kind of device 0,
    with the device count when there are several)."""
    import jax
    d = jax.devices()
    s = d[0].platform + ("" if d[0].device_kind == d[0].platform else f": {d[0].device_kind}")
    return s + (f" x{len(d)}" if len(d) > 1 else "")



def code_digest() -> str:
    """SHA-256 (first 16 hex digits) of every ``.py`` file of the installed ``jaxgrpo``
    package, by relative path: what a sweep checkpoint records, so that a resume under changed
    code is refused rather than mixing two programs' results."""
    import hashlib
    from pathlib import Path
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
