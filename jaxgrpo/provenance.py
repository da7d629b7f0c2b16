"""Where a result came from: the machine, the device and the library versions (written with
every run folder, sweep and benchmark table)."""
from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path


# vector extensions that change XLA:CPU's code (speed, and float rounding: the same seeds can
# train differently on two CPUs)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "asimd", "sve")


def _cpuinfo() -> tuple[str | None, list | None]:
    """``(model name, ISA_FLAGS present)`` of the first processor in /proc/cpuinfo (None, None
    where it cannot be read)."""
    model, isa = None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")) and isa is None:
                    isa = [x for x in ISA_FLAGS if x in line.split(":", 1)[1].split()]
    except OSError:
        pass
    return model, isa


def machine() -> str:
    """One line: CPU model, cores, JAX version and device."""
    import jax
    cpu = _cpuinfo()[0] or platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__}, "
            f"device {jax.devices()[0].device_kind}")


def machine_info() -> dict:
    """The machine as a dict (what benchmark tables record): CPU model and its vector
    extensions, usable cores, Python and library versions, devices, memory."""
    from importlib import metadata

    import jax
    model, isa = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    d = jax.devices()
    return {"cpu": model or platform.processor() or "unknown", "isa": isa, "cores": usable,
            "python": platform.python_version(),
            **{p: metadata.version(p) for p in ("jax", "jaxlib", "flax", "optax", "gymnax",
                                                "distrax")},
            "device": f"{len(d)} x {d[0].platform} ({d[0].device_kind})",
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}


def versions() -> dict:
    """Versions of jaxgrpo and the libraries a result depends on."""
    from importlib import metadata   # here: 20 ms that the command line's --help never needs
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
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
