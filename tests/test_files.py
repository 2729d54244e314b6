"""gentg_jax.files: whole files or nothing, checksums."""

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


def test_checksums_find_truncated_emptied_flipped_and_missing_files(tmp_path):
    for name, content in {"a.bin": b"abc" * 100, "d/b.json": b"{}", "d/c": b"x"}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(content)
    files.write_checksums(tmp_path, exclude=["d/c"])
    assert files.verify_checksums(tmp_path) is None
    (tmp_path / "d" / "c").write_bytes(b"excluded")
    assert files.verify_checksums(tmp_path) is None
    data = bytearray((tmp_path / "a.bin").read_bytes())
    data[7] ^= 0x10
    (tmp_path / "a.bin").write_bytes(bytes(data))
    assert files.verify_checksums(tmp_path) == "a.bin differs from its checksum (300 bytes)"
    (tmp_path / "d" / "b.json").unlink()
    assert "d/b.json is missing" in files.verify_checksums(tmp_path)
    (tmp_path / files.CHECKSUM_FILE).write_text("")
    assert "unreadable" in files.verify_checksums(tmp_path)
    with pytest.raises(FileNotFoundError):
        files.verify_checksums(tmp_path / "d")
