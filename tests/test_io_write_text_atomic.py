"""write_text_atomic: a run folder's config.yaml is replaced, never rewritten through a hard link.

Found on a real run: a validation run folder copied with ``cp -al`` (hard links, to save 10 GB) and run
again with other settings rewrote the original folder's config.yaml through the shared inode.
"""

from __future__ import annotations

import os

import pytest

from hsr.io import write_text_atomic


def test_a_hard_linked_copy_leaves_the_original_alone(tmp_path):
    original = tmp_path / "run" / "config.yaml"
    original.parent.mkdir()
    original.write_text("whole_head: false\n")
    copy = tmp_path / "copy.yaml"
    os.link(original, copy)
    write_text_atomic(copy, "whole_head: true\n")
    assert copy.read_text() == "whole_head: true\n"
    assert original.read_text() == "whole_head: false\n"
    assert os.stat(copy).st_ino != os.stat(original).st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.yaml", "run"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "config.yaml"
    target.write_text("old\n")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_the_new_file_is_readable_like_one_written_plainly(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    write_text_atomic(atomic, "x")
    assert os.stat(atomic).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
