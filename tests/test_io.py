"""lowshot.io.atomic_path: complete files or none, and no temporaries left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowshot.io import atomic_path


def temporaries(folder: Path) -> list[str]:
    """The names of the hidden temporaries (``.<name>.<random>.tmp``) in ``folder``."""
    return sorted(path.name for path in folder.glob(".*.tmp"))


def test_a_rerun_removes_stale_temporaries_of_its_destination(tmp_path: Path) -> None:
    # What a killed job leaves: a hidden, half-written temporary beside its destination.
    stale = tmp_path / ".images.h5.k2j4x_9q.tmp"
    stale.write_bytes(b"half an image store")
    # Temporaries of other destinations, among them names that begin like ours.
    others = [".other.h5.ab12cd34.tmp", ".images.h5.bak.ab12cd34.tmp", ".images.h5x.ab12cd34.tmp"]
    for name in others:
        (tmp_path / name).write_bytes(b"another job's output")
    with atomic_path(tmp_path / "images.h5") as tmp:
        assert not stale.exists()  # removed before the new one is written
        tmp.write_bytes(b"complete")
    assert (tmp_path / "images.h5").read_bytes() == b"complete"
    assert temporaries(tmp_path) == sorted(others)


def test_a_failed_write_leaves_neither_output_nor_temporary(tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text("old\n")
    with (
        pytest.raises(RuntimeError, match="killed halfway"),
        atomic_path(tmp_path / "table.csv") as tmp,
    ):
        tmp.write_text("new, half")
        raise RuntimeError("killed halfway")
    assert (tmp_path / "table.csv").read_text() == "old\n"
    assert temporaries(tmp_path) == []
