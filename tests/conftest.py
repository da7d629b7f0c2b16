"""The suite compiles with XLA's backend optimization off (``--xla_backend_optimization_level=0``,
added to ``XLA_FLAGS`` here, before JAX is imported, so the test processes and the commands
they start all use it): compiling dominates the suite's time on CPU, and this cuts the whole
run by about a fifth. Every comparison in the suite is between programs compiled the same way
(bitwise) or against NumPy references (with tolerances), so the flag changes no assertion.
``JAXGRPO_TEST_XLA_OPT=default python -m pytest ...`` runs the suite on the default build.
"""
import os

import pytest

_FLAG = "--xla_backend_optimization_level=0"

if os.environ.get("JAXGRPO_TEST_XLA_OPT") != "default" and \
        _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    """A folder with a byte-level BPE tokenizer and chat template saved by transformers
    (``test_hf_tokenizer.make_tokenizer``), for the Hugging Face tests."""
    from test_hf_tokenizer import make_tokenizer
    d = tmp_path_factory.mktemp("tok")
    make_tokenizer(d)
    return d
