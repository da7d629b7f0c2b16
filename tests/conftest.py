"""The suite compiles with XLA's backend optimization off and the CPU's older elemental
emitters (``--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false``, added to
``XLA_FLAGS`` here, before JAX is imported, so the test processes and the commands they start
all use them): compiling dominates the suite's time on CPU, and together they halve a small
program's compile time. Every comparison in the suite is between programs compiled the same
way (bitwise) or against NumPy references (with tolerances), so the flags change no assertion;
the few that compare two different programs bit for bit compile both with XLA's default
emitters (``BITWISE`` below).
``JAXGRPO_TEST_XLA_OPT=default python -m pytest ...`` runs the suite on the default build.
"""
import os

import pytest

_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def with_flags(flags: str, *extra: str) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) with ``extra`` appended where absent."""
    words = flags.split()
    return " ".join(words + [f for f in extra if f not in words])


if os.environ.get("JAXGRPO_TEST_XLA_OPT") != "default":
    os.environ["XLA_FLAGS"] = with_flags(os.environ.get("XLA_FLAGS", ""), *_FLAGS)

# One CPU device in every test process and the commands they start, whichever test first
# starts JAX (``jaxgrpo sweep`` and ``train`` give JAX one CPU device per core when the count
# is not chosen: ``jaxgrpo.cores``). Tests of several devices set their own count
# (``env_without_cpu_count``).
os.environ["JAX_NUM_CPU_DEVICES"] = "1"
os.environ["XLA_FLAGS"] = " ".join(w for w in os.environ.get("XLA_FLAGS", "").split()
                                   if "xla_force_host_platform_device_count" not in w)


def env_without_cpu_count(**extra) -> dict:
    """The environment for a command that chooses its own CPU device count (``XLA_FLAGS``
    ``--xla_force_host_platform_device_count``, or ``jaxgrpo sweep``'s one device per core)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    return {**env, **extra}


# compiler_options for tests that compare two different programs bit for bit (a run resumed
# against one in one go, the early-stopped decode against the full one): XLA CPU's default
# fusion emitters, as users compile; the legacy emitters fuse such programs differently.
BITWISE = {"xla_cpu_use_fusion_emitters": True}


def fast_xla_flags() -> str:
    """``XLA_FLAGS`` for a command whose results are compared with in-process programs compiled
    with ``compiler_options={"xla_backend_optimization_level": 0}``."""
    return with_flags(os.environ.get("XLA_FLAGS", ""), _FLAGS[0])


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    """A folder with a byte-level BPE tokenizer and chat template saved by transformers
    (``test_hf_tokenizer.make_tokenizer``), for the Hugging Face tests."""
    from test_hf_tokenizer import make_tokenizer
    d = tmp_path_factory.mktemp("tok")
    make_tokenizer(d)
    return d


# The slowest test files (``--durations``), started first: with ``--dist loadfile`` each file
# runs on one worker, so a long file collected last (test_train.py) would leave the other
# worker idle at the end of the run.
SLOW_FIRST = ("test_train.py", "test_multiprocess.py", "test_sweep.py", "test_preemption.py",
              "test_sweep_checkpoint.py", "test_cli.py", "test_loss_options.py",
              "test_text_grpo.py", "test_advantages.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
