"""The suite compiles with XLA's backend optimization off (``--xla_backend_optimization_level=0``,
added to ``XLA_FLAGS`` here, before JAX is imported, so the test processes and the commands
they start all use it): compiling dominates the suite's time on CPU, and this cuts the whole
run by about a fifth. Every comparison in the suite is between programs compiled the same way
(bitwise) or against NumPy references (with tolerances), so the flag changes no assertion.
``JAXGRPO_TEST_XLA_OPT=default python -m pytest ...`` runs the suite on the default build.
"""
import os

_FLAG = "--xla_backend_optimization_level=0"

if os.environ.get("JAXGRPO_TEST_XLA_OPT") != "default" and \
        _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
