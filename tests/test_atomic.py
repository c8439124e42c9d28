"""One home for write-then-rename: the target appears whole or not at all."""

import pytest

from volseg.files.atomic import atomic_path, write_text_atomic


def test_the_target_appears_only_when_the_write_finished(tmp_path):
    target = tmp_path / "sub" / "record.json"
    with atomic_path(target) as tmp:
        tmp.write_text("{}", encoding="utf-8")
        assert not target.exists() and tmp.parent == target.parent and tmp.name.startswith(".")
    assert target.read_text(encoding="utf-8") == "{}"
    assert write_text_atomic(target, "[1]").read_text(encoding="utf-8") == "[1]"
    assert [p.name for p in target.parent.iterdir()] == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "labels.nii.gz"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_path(target, ".nii.gz") as tmp:
            assert tmp.name.endswith(".nii.gz")  # writers that infer the format from the name still work
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("disk full")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]
