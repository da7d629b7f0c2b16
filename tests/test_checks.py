"""jaxgrpo.checks: the value checks every validating module shares (one ValueError line that
starts with what is wrong) and the "did you mean" of a misspelled field. No JAX."""
import numpy as np
import pytest

from jaxgrpo.checks import (check_choice, check_count, check_number, fail, field_hint,
                            unknown_field)
from jaxgrpo.config import GRPOConfig


def test_fail_names_where():
    with pytest.raises(ValueError, match=r"^lr: must be positive$"):
        fail("lr", "must be positive")


def test_check_count():
    assert check_count("seeds", 3) == 3
    assert type(check_count("seeds", np.int64(3))) is int      # any integer type, as an int
    assert check_count("digits", 9, 1, 9) == 9
    for v, msg in [(2.5, r"^seeds: must be an int, got float 2.5$"),
                   (True, r"^seeds: must be an int, got bool True$"),
                   ("3", r"^seeds: must be an int, got str '3'$"),
                   (0, r"^seeds: must be >= 1, got 0$")]:
        with pytest.raises(ValueError, match=msg):
            check_count("seeds", v)
    with pytest.raises(ValueError, match=r"^a: digits: must be <= 9 \(int32\), got 10$"):
        check_count("a: digits", 10, 1, 9, " (int32)")


def test_check_number_and_choice():
    assert check_number("gamma", 1, low=0.0, high=1.0) == 1
    for kw, v, msg in [({}, "x", "must be a number, got str 'x'"), ({}, True, "must be a number, got bool True"),
                       ({}, float("nan"), "must be finite"),
                       ({"low": 0.0, "low_open": True}, 0.0, "must be > 0.0, got 0.0"),
                       ({"low": 0.0}, -1, "must be >= 0.0, got -1"),
                       ({"high": 1.0}, 2.0, "must be <= 1.0, got 2.0")]:
        with pytest.raises(ValueError, match=f"^lr: {msg}"):
            check_number("lr", v, **kw)
    assert check_choice("loss_type", "dapo", ("grpo", "dapo")) == "dapo"
    with pytest.raises(ValueError, match=r"^loss_type: must be one of \['grpo'\], got 'x'$"):
        check_choice("loss_type", "x", ("grpo",))


def test_field_hints():
    assert field_hint("gama", GRPOConfig) == "did you mean 'gamma'?"
    assert field_hint("seedz", GRPOConfig, extra=("seeds",)) == "did you mean 'seeds'?"
    assert field_hint("zzzzzz", GRPOConfig).startswith("known: ")
    assert unknown_field("gama", GRPOConfig) == ("'gama' is not a field of GRPOConfig "
                                                 "(did you mean 'gamma'?)")
