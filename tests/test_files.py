"""gentg_jax.files: whole files or nothing."""

import json

import pytest

from gentg_jax import files


def test_write_json_creates_parents_and_leaves_no_temporaries(tmp_path):
    path = files.write_json(tmp_path / "a" / "b" / "table.json", {"p1": 41.5, "rows": [1, 2]})
    assert json.loads(path.read_text()) == {"p1": 41.5, "rows": [1, 2]}
    assert path.read_text().endswith("\n")
    assert [p.name for p in path.parent.iterdir()] == ["table.json"]
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = files.write_text(tmp_path / "result.csv", "old\n")
    with pytest.raises(RuntimeError, match="interrupted"):
        with files.atomic_path(path) as tmp:
            assert tmp.parent == path.parent and tmp.suffix == ".csv" and tmp != path
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.csv"]


def test_unserialisable_payload_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        files.write_json(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []
