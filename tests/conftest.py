"""Shared fixtures: the repository root and the shared CelebA files beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CELEBA = REPO.parent / "shared" / "data" / "celeba"
SHARED_FILES = (
    "img_align_celeba.zip",
    "celeba-test-faces-64.zip",
    "list_eval_partition.txt",
    "identity_CelebA.txt",
)


@pytest.fixture(scope="session")
def shared_celeba() -> Path:
    """The folder of shared CelebA files; fails (never skips) when a file is missing."""
    missing = [name for name in SHARED_FILES if not (SHARED_CELEBA / name).is_file()]
    if missing:
        pytest.fail(
            f"the tests need the shared CelebA files {missing} in {SHARED_CELEBA} "
            "(../shared/data/celeba beside the repository); see README.md"
        )
    return SHARED_CELEBA
