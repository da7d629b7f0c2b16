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
