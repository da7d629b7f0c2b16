"""jaxgrpo.text.hf_tokenizer: HFTokenizer against transformers on a byte-level BPE tokenizer
trained here with ``tokenizers`` (nothing downloaded): chat-template ids and text equal
transformers' ``apply_chat_template`` (template from chat_template.jinja and from
tokenizer_config.json, jinja features transformers provides), encode/decode equal
transformers' and round-trip, EOS/pad/bos/vocab resolution, hashing and pickling, bad input.

``make_tokenizer(DIR)`` is shared with test_pretrained.py."""
import json
import pickle
import random
import shutil

import numpy as np
import pytest
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from jaxgrpo.text.hf_tokenizer import HFTokenizer

WORDS = ("the cat sat on a mat and two dogs ran fast while seven birds sang loud songs about "
         "numbers plus minus equals answer think question reason step first then so").split()
SPECIAL = ("<|endoftext|>", "<s>", "<|im_start|>", "<|im_end|>")
# trim_blocks / lstrip_blocks matter here (blocks on their own, indented lines), as do
# raise_exception, slicing and `set`
TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system = 'You answer questions.' %}
{%- endif %}
{{ bos_token }}<|im_start|>system
{{ system }}<|im_end|>
{% for message in messages %}
    {% if message['role'] not in ['user', 'assistant'] %}
        {{ raise_exception('unknown role: ' + message['role']) }}
    {% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] | trim }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""
# transformers' extras: tojson (not HTML-escaping), namespace, loop controls, {% generation %}
TEMPLATE_EXTRAS = """{%- set ns = namespace(n=0) %}
{%- for m in messages %}
    {%- if m['role'] == 'system' %}{% continue %}{% endif %}
    {%- set ns.n = ns.n + 1 %}
<|im_start|>{{ m['role'] }} {{ ns.n }}
{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}{% endgeneration %}{% else %}{{ m | tojson }}{% endif %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

CHATS = [
    [{"role": "user", "content": "what is 12+7? think"}],
    [{"role": "system", "content": "You add numbers."},
     {"role": "user", "content": "  two dogs & seven birds: how many?  "},
     {"role": "assistant", "content": "9"},
     {"role": "user", "content": "and the cat <b>sat</b>?"}],
]
TEXTS = ["the cat sat on a mat", " 12+7=19.", "Unseen WORDS, caps & émoji 🐈!\n  spaces\ttabs",
         "<|im_end|> inside text"]


def _corpus(n=80, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(10))
            + f" {rng.randint(0, 999)}+{rng.randint(0, 99)}={rng.randint(0, 999)}."
            for _ in range(n)]


def make_tokenizer(directory, vocab_size=360, template=TEMPLATE):
    """Train a byte-level BPE tokenizer (``vocab_size`` ids, special tokens ``SPECIAL``: pad
    <|endoftext|>, bos <s>, eos <|im_end|>) on a small generated corpus and save it with
    transformers' ``PreTrainedTokenizerFast.save_pretrained`` into ``directory`` (chat template
    in chat_template.jinja, as transformers 5 writes it). Returns the transformers tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>",
        pad_token="<|endoftext|>", chat_template=template)
    fast.save_pretrained(str(directory))
    return fast


@pytest.fixture(scope="module")
def hf(tok_dir):
    return transformers.AutoTokenizer.from_pretrained(str(tok_dir))


@pytest.fixture(scope="module")
def tok(tok_dir):
    return HFTokenizer(tok_dir)


def _hf_chat(hf, chat, add_generation_prompt=True, tokenize=True):
    out = hf.apply_chat_template(chat, tokenize=tokenize, add_generation_prompt=add_generation_prompt)
    if tokenize and not isinstance(out, list):        # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    return out


def test_files_are_as_transformers_5_writes_them(tok_dir):
    assert (tok_dir / "chat_template.jinja").is_file()
    assert "chat_template" not in json.loads((tok_dir / "tokenizer_config.json").read_text())


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("chat", range(len(CHATS)))
def test_chat_template_equals_transformers(tok, hf, chat, add_generation_prompt):
    chat = CHATS[chat]
    text = tok.apply_chat_template(chat, add_generation_prompt=add_generation_prompt, tokenize=False)
    assert text == _hf_chat(hf, chat, add_generation_prompt, tokenize=False)
    assert text.startswith("<s><|im_start|>system\n")          # bos_token and trim_blocks
    assert text.endswith("<|im_start|>assistant\n") == add_generation_prompt
    ids = tok.apply_chat_template(chat, add_generation_prompt=add_generation_prompt)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert ids.tolist() == _hf_chat(hf, chat, add_generation_prompt)
    # the template's special tokens are single ids
    assert ids[0] == tok.bos_id and (ids == tok.eos_token_ids[0]).sum() >= len(chat) - 1


def test_chat_template_from_tokenizer_config(tok_dir, tok, tmp_path):
    """transformers 4 kept the template in tokenizer_config.json; chat_template.jinja wins when
    both exist (as in transformers)."""
    d = tmp_path / "v4"
    shutil.copytree(tok_dir, d)
    (d / "chat_template.jinja").unlink()
    config = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TEMPLATE}))
    v4 = HFTokenizer(d)
    for chat in CHATS:
        assert v4.apply_chat_template(chat).tolist() == tok.apply_chat_template(chat).tolist()
    hf4 = transformers.AutoTokenizer.from_pretrained(str(d))
    assert v4.apply_chat_template(CHATS[1]).tolist() == _hf_chat(hf4, CHATS[1])
    (d / "chat_template.jinja").write_text("{{ eos_token }}")
    assert HFTokenizer(d).apply_chat_template(CHATS[0], tokenize=False) == "<|im_end|>"


def test_chat_template_extras_equal_transformers(tok_dir, tmp_path):
    d = tmp_path / "extras"
    shutil.copytree(tok_dir, d)
    (d / "chat_template.jinja").write_text(TEMPLATE_EXTRAS)
    mine, hf = HFTokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d))
    chat = CHATS[1] + [{"role": "assistant", "content": "done", "tool_calls": None}]
    text = mine.apply_chat_template(chat, tokenize=False)
    assert text == _hf_chat(hf, chat, tokenize=False)
    assert '"content": "and the cat <b>sat</b>?"' in text       # tojson, HTML not escaped
    assert "tool_calls" not in text                             # None values dropped
    assert mine.apply_chat_template(chat).tolist() == _hf_chat(hf, chat)


def test_encode_decode_equal_transformers(tok, hf):
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids.dtype == np.int32
        assert ids.tolist() == hf(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids, stop_at_eos=False) == hf.decode(ids.tolist(), skip_special_tokens=True)
        assert tok.decode(ids, skip_special_tokens=False, stop_at_eos=False) == \
            hf.decode(ids.tolist(), skip_special_tokens=False)
        if "<|" not in text:
            assert tok.decode(ids) == text                      # byte-level BPE round-trips
    assert len(tok.encode("the cat sat")) < len("the cat sat")  # merges were learned


def test_decode_stops_at_the_first_eos(tok):
    a, b = tok.encode("the cat"), tok.encode(" sat")
    eos, pad = tok.eos_token_ids[0], tok.pad_id
    ids = np.concatenate([a, [eos], b, [pad, pad]])
    assert tok.decode(ids) == "the cat"
    assert tok.decode(np.concatenate([a, b, [pad]])) == "the cat sat"       # pad is special
    assert tok.decode(ids, stop_at_eos=False) == "the cat sat"
    assert tok.decode([]) == ""


def test_special_ids_and_vocab(tok, hf, tok_dir, tmp_path):
    assert tok.eos_token_ids == (hf.eos_token_id,)
    assert tok.pad_id == hf.pad_token_id and tok.bos_id == hf.bos_token_id
    assert tok.EOS == tok.eos_token_ids[0] and tok.PAD == tok.pad_id and tok.BOS == tok.bos_id
    assert tok.vocab_size == len(hf) == 360
    d = tmp_path / "gen"
    shutil.copytree(tok_dir, d)
    endoftext = hf.convert_tokens_to_ids("<|endoftext|>")
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [endoftext, hf.eos_token_id]}))
    (d / "config.json").write_text(json.dumps({"vocab_size": 384}))
    config = json.loads((d / "tokenizer_config.json").read_text())
    del config["pad_token"]
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    t = HFTokenizer(d)
    assert t.eos_token_ids == (endoftext, hf.eos_token_id)     # generation_config's, in order
    assert t.pad_id == endoftext                                 # no pad token: the first EOS
    assert t.vocab_size == 384                                   # the model's padded vocabulary
    ids = np.concatenate([t.encode("the cat"), [hf.eos_token_id], t.encode(" sat")])
    assert t.decode(ids) == "the cat"                            # any EOS id ends it
    assert t.decode([370]) == ""                                 # padding ids decode to nothing
    with pytest.raises(ValueError, match="token 384 is outside the vocabulary"):
        t.decode([1, 384])
    assert t.generation_config()["eos_token_id"] == [endoftext, hf.eos_token_id]


def test_hash_eq_and_pickle(tok, tok_dir, tmp_path):
    again = HFTokenizer(tok_dir)
    assert again == tok and hash(again) == hash(tok)
    assert len({tok, again}) == 1
    back = pickle.loads(pickle.dumps(tok))
    assert back == tok and back.apply_chat_template(CHATS[1]).tolist() == \
        tok.apply_chat_template(CHATS[1]).tolist()
    d = tmp_path / "other"
    tok.save(d)
    moved = HFTokenizer(d)
    assert moved != tok                                          # another folder
    assert moved.encode(TEXTS[2]).tolist() == tok.encode(TEXTS[2]).tolist()
    (d / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert HFTokenizer(d) != moved                               # other contents


def test_bad_input(tok, tok_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown role: tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="non-empty list of dicts"):
        tok.apply_chat_template("hello")
    with pytest.raises(ValueError, match="must be dicts"):
        tok.apply_chat_template(["hello"])
    with pytest.raises(ValueError, match="text must be a str"):
        tok.encode(["hello"])
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        HFTokenizer(tmp_path)
    d = tmp_path / "nochat"
    shutil.copytree(tok_dir, d)
    (d / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match="has no chat template"):
        HFTokenizer(d).apply_chat_template(CHATS[0])
    (d / "chat_template.jinja").write_text("{% for m in messages %}{{ m }")
    with pytest.raises(ValueError, match="jinja2 syntax error"):
        HFTokenizer(d).apply_chat_template(CHATS[0])
    config = json.loads((d / "tokenizer_config.json").read_text())
    del config["eos_token"]
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="names no EOS token"):
        HFTokenizer(d)


def test_sandboxed(tok_dir, tmp_path):
    d = tmp_path / "evil"
    shutil.copytree(tok_dir, d)
    (d / "chat_template.jinja").write_text("{{ messages.__class__.__mro__ }}")
    with pytest.raises(Exception, match="unsafe|not safely|access"):
        HFTokenizer(d).apply_chat_template(CHATS[0])
