"""jaxgrpo.text.tokenizer: the character tokenizer (special ids, round trips, errors,
extension and hashing)."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.text.tokenizer import (BOS, DEFAULT_CHARS, EOS, PAD, SPECIAL, TOKENIZER, VOCAB_SIZE,
                                    CharTokenizer)


def test_tokenizer_round_trip():
    rng = np.random.default_rng(0)
    assert VOCAB_SIZE == TOKENIZER.vocab_size == 3 + len(TOKENIZER.chars)
    assert (PAD, BOS, EOS) == (0, 1, 2)
    assert set("0123456789+-*=,: abcdefghijklmnopqrstuvwxyz?()/<>.") == set(TOKENIZER.chars)
    for _ in range(500):
        s = "".join(rng.choice(list(TOKENIZER.chars), rng.integers(0, 20)))
        ids = TOKENIZER.encode(s)
        assert ids.dtype == np.int32 and ids.shape == (len(s),) and np.all(ids > EOS)
        assert TOKENIZER.decode(ids) == s
        assert TOKENIZER.decode(TOKENIZER.encode(s, bos=True, eos=True)) == s
        padded = jnp.asarray(np.concatenate([[PAD, PAD, BOS], ids, [EOS], ids]))
        assert TOKENIZER.decode(padded) == s
        assert TOKENIZER.decode(np.concatenate([ids, [EOS], ids]), stop_at_eos=False) == s + s
    assert TOKENIZER.encode("", bos=True, eos=True).tolist() == [BOS, EOS]
    with pytest.raises(ValueError, match="'A' is not in the vocabulary"):
        TOKENIZER.encode("aA")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        TOKENIZER.decode([VOCAB_SIZE])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        TOKENIZER.decode([-1])
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer("abca")
    ext = TOKENIZER.extended("xyZ!")
    assert ext.chars == TOKENIZER.chars + "Z!" and TOKENIZER.extended("abc") is TOKENIZER
    assert ext == CharTokenizer(TOKENIZER.chars + "Z!")
    assert hash(ext) == hash(CharTokenizer(ext.chars))
    assert ext.decode(ext.encode("a!Z9")) == "a!Z9"


def test_ids_are_three_plus_the_character_index():
    assert TOKENIZER.chars == DEFAULT_CHARS and len(SPECIAL) == 3
    np.testing.assert_array_equal(TOKENIZER.encode(DEFAULT_CHARS), 3 + np.arange(len(DEFAULT_CHARS)))
    tok = CharTokenizer("ba")
    assert tok.vocab_size == 5 and tok.encode("ab").tolist() == [4, 3]
    assert tok.decode([[BOS, 3], [4, PAD]]) == "ba"       # any shape, read row-major


def test_extended_keeps_every_existing_id():
    ext = TOKENIZER.extended("é€a€")
    assert ext.chars == DEFAULT_CHARS + "é€"              # each missing character once
    np.testing.assert_array_equal(ext.encode(DEFAULT_CHARS), TOKENIZER.encode(DEFAULT_CHARS))
    assert ext.encode("é€").tolist() == [VOCAB_SIZE, VOCAB_SIZE + 1]


@pytest.mark.parametrize("chars", ["", None, 3, ["a", "b"]])
def test_bad_character_sets(chars):
    with pytest.raises(ValueError, match="non-empty string"):
        CharTokenizer(chars)


def test_compared_and_hashed_by_characters():
    a, b = CharTokenizer("xyz"), CharTokenizer("xyz")
    assert a == b and a is not b and {a: 1}[b] == 1
    assert a != CharTokenizer("zyx") and a != "xyz"
    assert repr(a) == "CharTokenizer('xyz')"
