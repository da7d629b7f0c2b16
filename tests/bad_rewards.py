"""Reward functions that are wrong in the ways users get them wrong, for
``tests/test_bad_input.py`` (named on its command lines as ``tests.bad_rewards:NAME``)."""


def raises(prompts, completions, **columns):
    """Raises on every call (a user's bug)."""
    raise KeyError("solution")


def wrong_length(prompts, completions, **columns):
    """One reward too few."""
    return [0.0] * (len(completions) - 1)


def not_a_number(prompts, completions, **columns):
    """A string where a float belongs."""
    return ["1.0"] * len(completions)


def fine(prompts, completions, **columns):
    """A valid reward function (1.0 for every completion)."""
    return [1.0] * len(completions)


def wrong_signature(completions):
    """Not TRL's signature: it is called with keyword arguments prompts=, completions=, ..."""
    return [0.0] * len(completions)
