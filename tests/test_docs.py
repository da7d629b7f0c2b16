"""The README and docs/ stay true to the code, cheaply (docs/run_examples.py runs every example
for real): every python block compiles, every ``jaxgrpo`` command line parses and builds its
config, every sweep YAML validates, the error examples print exactly what they show, and every
relative link points to a file of the repository. No compilation."""
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from jaxgrpo import cli
from jaxgrpo.grids import load_sweep_spec

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_examples", ROOT / "docs" / "run_examples.py")
ex = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ex)
BLOCKS = [b for page in ex.PAGES for b in ex.blocks(page)]


def test_every_page_has_examples_and_the_readme_is_short():
    pages = {b.page for b in BLOCKS}
    assert set(ex.PAGES) == pages
    assert sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")) == \
        sorted(p for p in ex.PAGES if p.startswith("docs/"))          # no page left unchecked
    readme = (ROOT / "README.md").read_text().splitlines()
    first_screen = "\n".join(readme[:45])
    assert "jaxgrpo train" in first_screen and "python -m pytest" in first_screen


@pytest.mark.parametrize("b", [b for b in BLOCKS if b.lang == "python"],
                         ids=lambda b: f"{b.page}:{b.line}")
def test_python_blocks_compile(b):
    compile(b.text, f"{b.page}:{b.line}", "exec")


def _jaxgrpo_lines():
    """``(page:line, argv, shown output or None)`` of every ``jaxgrpo`` command in the docs."""
    for b in BLOCKS:
        if b.lang == "bash":
            steps = [(c, None) for c in ex.commands(b)]
        elif b.lang == "console":
            steps = ex.console_steps(b)
        else:
            continue
        for line, shown in steps:
            words = shlex.split(line, comments=True)
            if words and words[-1] == "&":              # started in the background
                words = words[:-1]
            if words and words[0] == "jaxgrpo":
                yield pytest.param(b, words[1:], shown, id=f"{b.page}:{b.line} {line[:50]}")


@pytest.mark.parametrize("b, argv, shown", list(_jaxgrpo_lines()))
def test_command_lines_parse(b, argv, shown, tmp_path, monkeypatch, capsys):
    cmd, rest = argv[0], argv[1:]
    assert cmd in cli.COMMANDS
    if shown is not None:                # an error shown with its output: exactly that
        monkeypatch.chdir(tmp_path)
        assert cli.main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines() == shown
        return
    parser = cli.PARSERS[cmd]()
    args = parser.parse_args(rest)
    if cmd in ("train", "sft") and any(o.startswith("init_from=models/")
                                       for o in getattr(args, "overrides", [])):
        return     # a checkpoint the reader downloads (docs/pretrained.md): parsed only
    if cmd in ("train", "sft") and not args.resume:
        # init_from names a run an earlier example writes: checked by the text tests instead
        args.overrides = [o for o in args.overrides if not o.startswith("init_from=")]
        cli.build_config(args)
    if cmd == "sweep" and args.resume:
        assert args.config is None
    elif cmd == "sweep":
        page_yaml = {ex.yaml_name(x): x for x in BLOCKS if x.page == b.page and x.lang == "yaml"}
        name = Path(args.config).name
        if name in page_yaml:
            (tmp_path / name).write_text(page_yaml[name].text)
            load_sweep_spec(tmp_path / name)
        elif (ROOT / args.config).is_file():   # a file of the repository
            load_sweep_spec(ROOT / args.config)
        else:                             # a file an earlier example wrote (a sweep.yaml)
            assert "runs/" in args.config, f"{b.page}: no YAML block {args.config}"


def test_links_point_to_files():
    for page in ex.PAGES:
        text = (ROOT / page).read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (ROOT / page).parent.joinpath(target).resolve().exists(), (page, target)


def test_no_placeholder_or_empty_generated_block():
    for page in ex.PAGES:
        text = (ROOT / page).read_text()
        assert not re.findall(r"\b(?:INSTALL|TRAIN|TEST)_(?:TIME|OUTPUT)\b|\bMACHINE\b|\bTODO\b|"
                              r"\bTBD\b", text), page
        for name, body in re.findall(r"<!-- (\S+):begin -->\n(.*?)<!-- \1:end -->", text, re.S):
            assert body.strip(), f"{page}: the {name} block is empty; regenerate it"


# ----------------------------------------------------------------------------- quoted numbers
# Every default, budget and subcommand the pages quote, found by explicit patterns and compared
# with the code's value. Each pattern must still find what it found when written (its count),
# so a reworded sentence is seen here rather than escaping the check.

def _literal(text):
    """A value as the docs write it: ``3e-3``, ``1,400,000``, ``1.4M``, ``"tanh"``, ``(64, 64)``,
    ``None``, ``false``; else the text itself (stripped of backticks)."""
    import ast
    text = text.strip().strip("`").strip()
    if text in ("None", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    m = re.fullmatch(r"([\d.]+)M", text)
    if m:
        return float(m.group(1)) * 1e6
    try:
        return ast.literal_eval(text.replace(",", "") if re.fullmatch(r"[\d,]+", text) else text)
    except (ValueError, SyntaxError):
        return text


def _same(quoted, value) -> bool:
    if isinstance(value, tuple) and isinstance(quoted, (tuple, list)):
        return tuple(quoted) == value
    if isinstance(value, bool) or value is None or isinstance(quoted, (bool, str)):
        return quoted == value
    return isinstance(quoted, (int, float)) and abs(quoted - value) <= 1e-9 * abs(value)


def _code():
    """``{name: value}`` the docs may quote: config defaults (class default and the default a
    config resolves to), the command line's, the text task options'."""
    import dataclasses
    import inspect

    from jaxgrpo.config import GRPOConfig, PPOConfig, SFTConfig
    from jaxgrpo.text.tasks import make_task

    def defaults(config):
        """``{field: (class default, resolved default)}``."""
        return {f.name: ({f.default} if f.default is not dataclasses.MISSING else set(),
                         getattr(config, f.name))
                for f in dataclasses.fields(config) if f.init}
    text = GRPOConfig(env="text:addition")
    return {"grpo": defaults(GRPOConfig()), "ppo": defaults(PPOConfig()),
            "text": defaults(text), "sft": defaults(SFTConfig()), "text_config": text,
            "filler": inspect.signature(make_task).parameters["filler"].default,
            "options": {a.option_strings[-1]: a.default for make in cli.PARSERS.values()
                        for a in make()._actions if a.option_strings},
            "commands": list(cli.main_parser()._subparsers._group_actions[0].choices)}


def _check_field(kind, name, quoted, code, where):
    """The field ``name`` of config ``kind`` defaults to ``quoted`` (its class default or the
    value a default config resolves it to)."""
    class_default, resolved = code[kind][name]
    value = _literal(quoted)
    assert any(_same(value, v) for v in [*class_default, resolved]), \
        f"{where}: {name} is quoted as {quoted!r}, the code's default is {resolved!r}"


# (page, where on it (see _section), pattern capturing (field names, quoted defaults), the
#  config whose defaults they are, how many matches the pattern has there)
FIELD_QUOTES = [
    # a table row "| `a`, `b` | 1, 2 | ..." of the GRPOConfig / PPOConfig tables
    ("docs/configs.md", "## GRPOConfig", r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]+) \|", "grpo", 19),
    ("docs/configs.md", "## PPOConfig", r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]+) \|", "ppo", 5),
    # "`hidden_sizes` (default `(64, 64)`)"
    ("docs/configs.md", "## Shared fields", r"`(\w+)` \(default\s+(`[^`]+`)\)", "grpo", 2),
    ("docs/configs.md", "## Shared fields", r"`(\w+)` \(default\s+(`[^`]+`)\)", "ppo", 2),
    # the text settings table: "`temperature` [1.0]"
    ("docs/language-models.md", "## Settings", r"`(\w+)` \[([^\]]+)\]", "text", 13),
    # "Text runs have their own defaults for `lr` (1e-4), `num_groups` (64 prompts ...)"
    ("docs/language-models.md", "Text runs have their own defaults...`lr` 3e-4",
     r"`(\w+)` \(([\d.e,-]+)", "text", 6),
    ("docs/language-models.md", "`SFTConfig` has", r"`(\w+)` \(([\d.e,-]+)\)", "sft", 4),
    # "`num_steps` times per iteration (default 128)"
    ("docs/group-modes.md", "## Collectors", r"`(\w+)` times per iteration \(default (\d+)\)",
     "grpo", 1),
]
# defaults the docs state in words (no value to compare): (kind, field) -> the words
IN_WORDS = {("grpo", "clip_eps_high"): "= clip_eps", ("text", "max_new_tokens"): "the task's"}


def _section(text, start):
    """``text`` from ``start`` to the next heading of the same level (a heading), to the end
    of its paragraph (a phrase), or to ``END`` (``start`` written ``"START...END"``)."""
    if "..." in start:
        start, end = start.split("...")
        i = text.index(start)
        return text[i:text.index(end, i)]
    i = text.index(start)
    if start.startswith("#"):
        level = start.split()[0]
        m = re.compile(rf"^{level} ", re.M).search(text, i + len(start))
        return text[i:m.start() if m else len(text)]
    end = text.find("\n\n", i)
    return text[i:end if end >= 0 else len(text)]


@pytest.mark.parametrize("page, start, pattern, kind, count", FIELD_QUOTES,
                         ids=[f"{p}:{s}:{k}" for p, s, _, k, _ in FIELD_QUOTES])
def test_quoted_config_defaults_are_the_code(page, start, pattern, kind, count):
    code = _code()
    text = _section((ROOT / page).read_text(), start)
    found = re.findall(pattern, text, re.M)
    assert len(found) == count, f"{page} {start}: {len(found)} quotes, expected {count}"
    for names, values in found:
        names = re.findall(r"`(\w+)`", names) or [names]
        values = [values.strip()] if len(names) == 1 else [v.strip() for v in values.split(",")]
        assert len(values) == len(names), (page, names, values)
        for name, quoted in zip(names, values):
            words = IN_WORDS.get((kind, name))
            if words is not None:
                assert words in quoted, (page, name, quoted)
                continue
            # '"learned" or "rotary"': the default, then the other choices
            _check_field(kind, name, quoted.split(" or ")[0], code, page)


def _iterations_text():
    """The text default's iterations at full completions (what "about N iterations" means:
    the budget over the tokens of one iteration whose every completion runs to its limit)."""
    c = _code()["text_config"]
    return c.total_timesteps / c.max_steps_per_iteration


# (page, pattern, the code's value): budgets, counts and other numbers in the prose
NUMBER_QUOTES = [
    ("docs/language-models.md", r"GRPO's default budget is\s+([\d.]+M) completion tokens",
     lambda c: c["text"]["total_timesteps"][1]),
    ("docs/language-models.md", r"about (\d+) iterations on 3-digit addition",
     lambda c: round(_iterations_text(), -1)),
    ("README.md", r"samples (\d+) completions of each", lambda c: c["text"]["group_size"][1]),
    ("README.md", r"completions of each of (\d+)\s+prompts", lambda c: c["text"]["num_groups"][1]),
    ("docs/language-models.md", r"`filler=K` \(default (\d+)\)", lambda c: c["filler"]),
    ("docs/command-line.md", r"\(`--episodes`, default (\d+)\)",
     lambda c: c["options"]["--episodes"]),
]


@pytest.mark.parametrize("page, pattern, value", NUMBER_QUOTES,
                         ids=[f"{p}:{q[:30]}" for p, q, _ in NUMBER_QUOTES])
def test_quoted_budgets_and_numbers_are_the_code(page, pattern, value):
    found = re.findall(pattern, (ROOT / page).read_text())
    assert found, f"{page}: {pattern!r} no longer matches; update this test"
    want = value(_code())
    for quoted in found:
        assert _same(_literal(quoted), want), f"{page}: quotes {quoted}, the code says {want}"


def test_python_examples_quote_the_configs_they_build():
    """A python block that builds ``cfg`` and comments its values (``cfg.iterations  # 63``,
    ``cfg.hparams()  # {'lr': 0.003, ...}``, ``metrics[...].shape  # (2, 63)``) quotes that
    config's values: the last axis of a metrics shape is ``cfg.iterations``."""
    import ast

    import jaxgrpo
    from jaxgrpo.config import GRPOConfig, PPOConfig, SFTConfig
    checked = 0
    for b in BLOCKS:
        if b.lang != "python" or "cfg = " not in b.text:
            continue
        tree = ast.parse(b.text)
        node = next(n for n in tree.body if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], "id", None) == "cfg")
        cfg = eval(ast.get_source_segment(b.text, node.value),
                   {"jaxgrpo": jaxgrpo, "GRPOConfig": GRPOConfig, "PPOConfig": PPOConfig,
                    "SFTConfig": SFTConfig})
        where = f"{b.page}:{b.line}"
        for line in b.text.splitlines():
            code, _, comment = line.partition("#")
            m = re.match(r"\s*\((?:\d+, )*(\d+)\)", comment)
            if ".shape" in code and m and "metrics" in code:
                assert int(m.group(1)) == cfg.iterations, (where, line, cfg.iterations)
                checked += 1
            m = re.match(r"\s*(\d+)\b", comment)
            if code.strip() == "cfg.iterations" and m:
                assert int(m.group(1)) == cfg.iterations, (where, line, cfg.iterations)
                checked += 1
            if code.strip() == "cfg.hparams()":
                hp = cfg.hparams()
                for k, v in re.findall(r"'(\w+)': ([\d.e-]+)", comment):
                    assert abs(float(v) - float(hp[k])) <= 1e-6 * abs(float(v)), (where, k, v)
                    checked += 1
    assert checked >= 7, checked


def test_subcommands_quoted_are_the_parsers():
    """The README's list, command-line.md's table and count, and ``jaxgrpo --help``'s
    commands are the parser's subcommands, in its order."""
    commands = _code()["commands"]
    assert commands == list(cli.COMMANDS)
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"\[The command line\]\(docs/command-line\.md\): ((?:`\w+`,?\s+)+)", readme)
    assert m and re.findall(r"`(\w+)`", m.group(1)) == commands, m and m.group(1)
    page = (ROOT / "docs" / "command-line.md").read_text()
    table = _section(page, "| command | what it does |")
    assert re.findall(r"^\| `jaxgrpo (\w+)` \|", table, re.M) == commands
    words = {3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven"}
    assert f"{words[len(commands)]} subcommands" in page
    assert re.findall(r"^### jaxgrpo (\w+)$", page, re.M) == commands   # options reference
    assert "text tasks" in " ".join(cli.main_parser().format_help().split())   # jaxgrpo --help


def test_readme_says_why_the_printed_numbers_differ_between_machines():
    """Next to the printed train result: XLA compiles per CPU model, so other machines print
    other numbers, and the same machine the same ones bitwise."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    i = readme.index("<!-- train:begin -->")
    before = readme[i - 400:i]
    assert "XLA compiles differently for each CPU model" in before
    assert "bit for bit, on the same machine" in before
