"""Character-level tokenizer for the text tasks.

Ids 0, 1, 2 are the special tokens PAD, BOS and EOS in every vocabulary; character ``chars[i]``
has id ``3 + i``. ``TOKENIZER`` is the default vocabulary (digits, ``+-*=,: ``, a-z and
``?()/<>.``); a task with its own alphabet builds a ``CharTokenizer`` that extends it.
"""
from __future__ import annotations

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIAL = ("<pad>", "<bos>", "<eos>")
DEFAULT_CHARS = "0123456789+-*=,: abcdefghijklmnopqrstuvwxyz?()/<>."


class CharTokenizer:
    """One token per character of ``chars`` (a string of distinct characters), after the three
    special tokens. Hashable and compared by ``chars``, so a task holding one stays hashable."""

    PAD, BOS, EOS = PAD, BOS, EOS

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"chars must be a non-empty string, got {chars!r}")
        dup = sorted({c for c in chars if chars.count(c) > 1})
        if dup:
            raise ValueError(f"chars must be distinct; repeated: {''.join(dup)!r}")
        self.chars = chars
        self.vocab_size = len(SPECIAL) + len(chars)
        self._ids = {c: i + len(SPECIAL) for i, c in enumerate(chars)}

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> np.ndarray:
        """``text`` -> int32 [len(text) (+1 with bos) (+1 with eos)]. Raises ValueError on a
        character outside the vocabulary."""
        try:
            ids = [self._ids[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary "
                             f"{self.chars!r}") from None
        return np.array([BOS] * bos + ids + [EOS] * eos, np.int32)

    def decode(self, tokens, stop_at_eos: bool = True) -> str:
        """int tokens [T] (list, NumPy or JAX array) -> string. PAD and BOS are skipped; decoding
        stops at the first EOS (or skips every EOS with ``stop_at_eos=False``)."""
        out = []
        for t in np.asarray(tokens).reshape(-1).tolist():
            if not 0 <= t < self.vocab_size:
                raise ValueError(f"token {t} is outside the vocabulary (size {self.vocab_size})")
            if t == EOS and stop_at_eos:
                break
            if t < len(SPECIAL):
                continue
            out.append(self.chars[t - len(SPECIAL)])
        return "".join(out)

    def extended(self, chars: str) -> CharTokenizer:
        """This tokenizer if it has every character of ``chars``, else one with the missing
        characters appended (existing ids are unchanged)."""
        missing = "".join(dict.fromkeys(c for c in chars if c not in self._ids))
        return CharTokenizer(self.chars + missing) if missing else self

    def __eq__(self, other):
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def __hash__(self):
        return hash(("CharTokenizer", self.chars))

    def __repr__(self):
        return f"CharTokenizer({self.chars!r})"


TOKENIZER = CharTokenizer(DEFAULT_CHARS)
VOCAB_SIZE = TOKENIZER.vocab_size
