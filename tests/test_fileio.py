"""jaxgrpo.fileio: atomic writes (a failed write leaves the old file and no temporary file),
exclusive creation, JSON."""
import json

import pytest

from jaxgrpo.fileio import atomic_path, write_json, write_text


def test_write_text_replaces_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "a.txt"
    write_text(p, "one")
    write_text(p, "two")
    assert p.read_text() == "two" and [f.name for f in tmp_path.iterdir()] == ["a.txt"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp != p
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_exclusive_write_refuses_an_existing_file(tmp_path):
    p = tmp_path / "claim.txt"
    write_text(p, "mine", exclusive=True)
    with pytest.raises(FileExistsError):
        write_text(p, "theirs", exclusive=True)
    assert p.read_text() == "mine" and [f.name for f in tmp_path.iterdir()] == ["claim.txt"]


def test_write_json(tmp_path):
    p = tmp_path / "x.json"
    write_json(p, {"a": [1, 2.5], "b": None})
    assert json.loads(p.read_text()) == {"a": [1, 2.5], "b": None}
    assert p.read_text().endswith("\n")
