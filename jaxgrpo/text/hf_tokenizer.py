"""A Hugging Face checkpoint's tokenizer and chat template, without transformers.

``HFTokenizer(DIR)`` reads a checkpoint folder's ``tokenizer.json`` (with the ``tokenizers``
package), ``tokenizer_config.json`` (special tokens, chat template), ``chat_template.jinja``
(the chat template transformers 5 writes; it wins over the config's) and
``generation_config.json`` (EOS ids)::

    tok = HFTokenizer("Qwen2.5-0.5B-Instruct")
    ids = tok.apply_chat_template([{"role": "user", "content": "2+2?"}])   # int32 [n]
    text = tok.decode(completion)                    # stops at the first of tok.eos_token_ids

The chat template is rendered as transformers renders it (a jinja2 sandbox with
``trim_blocks``, ``lstrip_blocks``, the ``loopcontrols`` extension, ``raise_exception``,
``strftime_now``, a ``tojson`` filter that does not escape HTML, the special tokens as variables
``bos_token``, ``eos_token``, ...), and the rendered text is encoded without adding special
tokens, so the ids equal transformers' ``apply_chat_template(messages, tokenize=True)``.

An ``HFTokenizer`` is hashable and compared by its folder and the hash of the files it read, so
a ``TextTask`` holding one stays hashable (a static argument of compiled functions).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np

# the files an HFTokenizer reads (all but tokenizer.json optional); save() writes them back
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json")
# transformers' named special tokens (PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES): the
# chat template sees each one the tokenizer has, as a string variable
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                  "mask_token")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def read_json(path: Path) -> dict:
    """The JSON object in ``path`` (``ValueError`` naming the file if it is unreadable or not an
    object)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read it as JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: must hold a JSON object, got {type(value).__name__}")
    return value


def _token_text(value):
    """A special token as tokenizer_config.json writes it (a string, or an AddedToken dict with
    "content") -> its string, or None."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _ids(value) -> tuple:
    """generation_config's / config.json's eos_token_id (an int, a list of ints or None) -> tuple."""
    if value is None:
        return ()
    values = value if isinstance(value, (list, tuple)) else [value]
    return tuple(int(v) for v in values if isinstance(v, int) and not isinstance(v, bool))


# ----------------------------------------------------------------------------- chat templates

@functools.lru_cache(maxsize=16)
def compile_chat_template(template: str):
    """A chat template (jinja2 source) -> compiled ``jinja2.Template`` in the environment
    transformers uses (``transformers.utils.chat_template_utils._compile_jinja_template``):
    an ``ImmutableSandboxedEnvironment`` with ``trim_blocks``, ``lstrip_blocks``, the
    ``loopcontrols`` extension and a ``{% generation %}`` block (rendered as its body), the
    globals ``raise_exception``, ``strftime_now``, ``dict`` and ``namespace`` (no underscore
    attributes) and a ``tojson`` filter that does not escape HTML. ``ValueError`` on a syntax
    error."""
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` (transformers marks assistant tokens with
        it): renders its body."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    class TemplateDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"chat templates cannot store underscore-prefixed attributes on a "
                    f"namespace, got {name!r}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now,
                       dict=TemplateDict(), namespace=TemplateNamespace)
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"chat template: jinja2 syntax error at line {e.lineno}: {e.message}") from None


def _plain(value):
    """Messages -> plain JSON data (str/int/float/bool/None, dicts, lists), what the sandboxed
    template may see; NumPy scalars become Python ones."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, str):        # subclasses (enums) back to the base type
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise ValueError(f"chat messages: a {type(value).__name__} cannot go into a chat template "
                     f"(strings, numbers, bools, dicts and lists only)")


def normalize_messages(messages) -> list:
    """A conversation (list of {"role", "content", ...} dicts) -> plain dicts as transformers
    passes them to the template: keys whose value is None dropped, a message's reasoning under
    "reasoning_content", "thinking" or "reasoning" also given under the other two names
    templates read ("thinking", "reasoning_content"). ``ValueError`` if it is not a non-empty
    list of dicts."""
    if isinstance(messages, dict) or not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"chat messages must be a non-empty list of dicts, got {messages!r:.80}")
    out = []
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError(f"chat messages must be dicts ({{'role': ..., 'content': ...}}), "
                             f"got {type(m).__name__} {m!r:.60}")
        m = {k: v for k, v in _plain(m).items() if v is not None}
        reasoning = next((m[k] for k in _REASONING_FIELDS if m.get(k) is not None), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


# ----------------------------------------------------------------------------- the tokenizer

class HFTokenizer:
    """The tokenizer of a Hugging Face checkpoint folder ``path``.

    Attributes: ``eos_token_ids`` tuple of ints (generation_config.json's ``eos_token_id``, one
    or several; else the tokenizer's EOS token; else config.json's); ``pad_id`` int (the pad
    token, else generation_config's pad_token_id, else the first EOS id); ``bos_id`` int or
    None; ``vocab_size`` int (the tokenizer's, or config.json's if larger: models pad their
    vocabulary); ``chat_template`` str or None; ``special_tokens`` dict name -> string (bos_token,
    eos_token, ...); ``PAD``, ``EOS``, ``BOS``: pad_id, the first EOS id and bos_id (the names
    ``CharTokenizer`` has). ``ValueError`` if the folder has no tokenizer.json or no EOS token.
    """

    def __init__(self, path):
        self.path = Path(path).expanduser().resolve()
        if not (self.path / "tokenizer.json").is_file():
            raise ValueError(f"HFTokenizer: {self.path} has no tokenizer.json (a Hugging Face "
                             f"checkpoint folder with a fast tokenizer is needed)")
        files = {name: (self.path / name).read_bytes() for name in TOKENIZER_FILES
                 if (self.path / name).is_file()}
        config = {}
        if (self.path / "config.json").is_file():
            config = read_json(self.path / "config.json")
        self._setup(files, config)

    @classmethod
    def _from_files(cls, path, files: dict, config: dict) -> "HFTokenizer":
        self = cls.__new__(cls)
        self.path = Path(path)
        self._setup(files, config)
        return self

    def _setup(self, files: dict, config: dict):
        from tokenizers import Tokenizer
        self._files = dict(files)
        self._config = {k: config[k] for k in ("vocab_size", "eos_token_id", "bos_token_id",
                                               "pad_token_id") if k in config}
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name] + b"\0")
        digest.update(json.dumps(self._config, sort_keys=True).encode())
        self.digest = digest.hexdigest()
        try:
            self._tok = Tokenizer.from_str(files["tokenizer.json"].decode("utf-8"))
        except Exception as e:  # noqa: BLE001  (tokenizers raises its own Exception type)
            raise ValueError(f"HFTokenizer: {self.path / 'tokenizer.json'} cannot be read by "
                             f"the tokenizers package: {e}") from None

        def load(name):
            return json.loads(files[name].decode("utf-8")) if name in files else {}

        tok_config = load("tokenizer_config.json")
        special_map = load("special_tokens_map.json")
        gen = load("generation_config.json")
        self.tokenizer_config = tok_config
        self.special_tokens = {}
        for name in SPECIAL_TOKENS:
            text = _token_text(tok_config.get(name, special_map.get(name)))
            if text is not None:
                self.special_tokens[name] = text
        token_id = lambda name: (self._tok.token_to_id(self.special_tokens[name])
                                 if name in self.special_tokens else None)

        if "chat_template.jinja" in files:
            template = files["chat_template.jinja"].decode("utf-8")
        else:
            template = tok_config.get("chat_template")
            if isinstance(template, list):     # [{"name": ..., "template": ...}, ...]
                named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
                template = named.get("default")
        self.chat_template = template if isinstance(template, str) else None

        eos = _ids(gen.get("eos_token_id"))
        if not eos and token_id("eos_token") is not None:
            eos = (token_id("eos_token"),)
        eos = eos or _ids(config.get("eos_token_id"))
        if not eos:
            raise ValueError(f"HFTokenizer: {self.path} names no EOS token (eos_token in "
                             f"tokenizer_config.json or eos_token_id in generation_config.json)")
        self.eos_token_ids = tuple(dict.fromkeys(eos))
        pad = token_id("pad_token")
        if pad is None:
            pad = next(iter(_ids(gen.get("pad_token_id"))), None)
        self.pad_id = int(self.eos_token_ids[0] if pad is None else pad)
        bos = token_id("bos_token")
        if bos is None:
            bos = next(iter(_ids(gen.get("bos_token_id")) or _ids(config.get("bos_token_id"))), None)
        self.bos_id = None if bos is None else int(bos)
        self.vocab_size = max(self._tok.get_vocab_size(with_added_tokens=True),
                              int(config.get("vocab_size") or 0))
        self.clean_up_tokenization_spaces = bool(tok_config.get("clean_up_tokenization_spaces", False))
        self._eos_set = frozenset(self.eos_token_ids)

    # ------------------------------------------------------------------------- CharTokenizer names

    @property
    def PAD(self) -> int:
        return self.pad_id

    @property
    def EOS(self) -> int:
        return self.eos_token_ids[0]

    @property
    def BOS(self):
        return self.bos_id

    # ------------------------------------------------------------------------- encode / decode

    def encode(self, text: str, add_special_tokens: bool = False) -> np.ndarray:
        """text -> int32 [n], the tokenizer's ids (with the post-processor's BOS/EOS only when
        ``add_special_tokens``; transformers' ``tokenizer(text, add_special_tokens=...)``)."""
        if not isinstance(text, str):
            raise ValueError(f"HFTokenizer.encode: text must be a str, got {type(text).__name__}")
        return np.asarray(self._tok.encode(text, add_special_tokens=add_special_tokens).ids,
                          np.int32)

    def decode(self, ids, skip_special_tokens: bool = True, stop_at_eos: bool = True) -> str:
        """int ids [n] (list, NumPy or JAX array) -> text. Ids from the first EOS id
        (``eos_token_ids``) on are dropped (``stop_at_eos=False``: kept, as transformers'
        ``decode``); special tokens are skipped with ``skip_special_tokens``. Ids in the
        model's padded vocabulary past the tokenizer's decode to nothing. ``ValueError`` on an
        id outside [0, vocab_size)."""
        ids = np.asarray(ids).reshape(-1).tolist()
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"HFTokenizer.decode: token {bad[0]} is outside the vocabulary "
                             f"(size {self.vocab_size})")
        if stop_at_eos:
            ends = [n for n, i in enumerate(ids) if i in self._eos_set]
            ids = ids[:ends[0]] if ends else ids
        text = self._tok.decode(ids, skip_special_tokens=skip_special_tokens)
        if self.clean_up_tokenization_spaces and type(self._tok.model).__name__ != "BPE":
            # transformers' clean_up_tokenization (it skips BPE models)
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                         (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                         (" 're", "'re")):
                text = text.replace(a, b)
        return text

    def apply_chat_template(self, messages, add_generation_prompt: bool = True,
                            tokenize: bool = True, **kwargs):
        """A conversation (list of {"role", "content"} dicts) -> the chat template's rendering:
        int32 [n] ids (``tokenize``; encoded without adding special tokens: the template writes
        them) or the string. ``kwargs`` become template variables (e.g. ``enable_thinking``,
        ``tools``), as in transformers. ``ValueError`` if the tokenizer has no chat template or
        the template raises."""
        import jinja2
        if self.chat_template is None:
            raise ValueError(f"HFTokenizer: {self.path} has no chat template (tokenizer_config.json's "
                             f"chat_template or chat_template.jinja)")
        template = compile_chat_template(self.chat_template)
        variables = {"tools": None, "documents": None, **self.special_tokens, **_plain(kwargs)}
        try:
            text = template.render(messages=normalize_messages(messages),
                                   add_generation_prompt=bool(add_generation_prompt), **variables)
        except jinja2.exceptions.TemplateError as e:
            raise ValueError(f"chat template of {self.path}: {e}") from None
        return self.encode(text) if tokenize else text

    # ------------------------------------------------------------------------- files

    def save(self, directory) -> None:
        """Write the tokenizer files this tokenizer was read from (tokenizer.json,
        tokenizer_config.json, special_tokens_map.json, chat_template.jinja,
        generation_config.json: those it had) into ``directory``, unchanged."""
        os.makedirs(directory, exist_ok=True)
        for name, data in self._files.items():
            Path(directory, name).write_bytes(data)

    def generation_config(self) -> dict:
        """generation_config.json's contents (as read; {} if none), with eos/bos/pad ids as
        this tokenizer resolves them."""
        gen = json.loads(self._files["generation_config.json"]) if "generation_config.json" in self._files else {}
        eos = list(self.eos_token_ids)
        gen["eos_token_id"] = eos[0] if len(eos) == 1 else eos
        gen.setdefault("pad_token_id", self.pad_id)
        if self.bos_id is not None:
            gen.setdefault("bos_token_id", self.bos_id)
        return gen

    def __reduce__(self):
        return (HFTokenizer._from_files, (str(self.path), self._files, self._config))

    def __eq__(self, other):
        return (isinstance(other, HFTokenizer) and other.path == self.path
                and other.digest == self.digest)

    def __hash__(self):
        return hash(("HFTokenizer", str(self.path), self.digest))

    def __repr__(self):
        return f"HFTokenizer({str(self.path)!r})"
