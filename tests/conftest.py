"""Shared fixtures: the repository root, the shared CelebA files beside the checkout, and
one torch thread for tests of small networks."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

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


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after it: on a shared 2-core machine, two
    OpenMP threads spin-waiting for each other made a small training step 50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


WORKFLOW_FILES = (
    "Snakefile",
    "config.yaml",
    "rules",
    "scripts",
    "configs",
    "envs",
    "report",
    "profiles",
)


def copy_workflow(destination: Path) -> Path:
    """Copy every file Snakemake reads (rules, scripts, envs, …) into ``destination``.

    A workflow copy that lacks one of them fails late, when Snakemake records a job's
    metadata, so the list lives here once for every test that runs the workflow.
    """
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, symlinks=True)
        else:
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture
def readme_examples(tmp_path: Path):
    """The README's examples (``readme_text.write_examples``) loaded as plugins in this
    process, unloaded after the test; yields their files."""
    import sys

    from readme_text import EXAMPLE_KINDS, write_examples

    from lowshot import methods, problems
    from lowshot.registry import load_plugins

    before = set(sys.modules)
    paths = write_examples(tmp_path / "readme_examples")
    load_plugins([str(p) for p in paths])
    loaded = [name for name in set(sys.modules) - before if name.startswith("lowshot_plugin_")]
    yield paths
    methods.METHODS.unregister(EXAMPLE_KINDS["method"])
    problems.PROBLEMS.unregister(EXAMPLE_KINDS["problem"])
    for name in loaded:
        del sys.modules[name]


def write_tiny_data(
    root: Path,
    n_images: int,
    *,
    test: Sequence[int],
    gan_corpus: Sequence[int],
    shots: Mapping[int, Sequence[int]],
    validation: Sequence[int] | None = (),
) -> tuple[Path, Path]:
    """A data stage of ``n_images`` random faces in ``root``: images.h5 (ids
    000000.jpg ...) and splits.h5 with these rows (``validation`` None: a split file from
    before validation faces, without them). Returns (images.h5, splits.h5)."""
    rng = np.random.default_rng(0)
    ids = np.array([f"{i:06d}.jpg" for i in range(n_images)], dtype=object)
    string = h5py.string_dtype()
    images, splits = root / "images.h5", root / "splits.h5"
    with h5py.File(images, "w") as handle:
        handle["images"] = rng.integers(0, 256, (n_images, 64, 64, 3), dtype=np.uint8)
        handle.create_dataset("ids", data=ids, dtype=string)
    with h5py.File(splits, "w") as handle:
        rows = {"test": test} if validation is None else {"test": test, "validation": validation}
        for name, chosen in rows.items():
            handle[name] = np.asarray(chosen, np.int64)
            handle.create_dataset(f"{name}_ids", data=ids[list(chosen)], dtype=string)
        handle["gan_corpus"] = np.asarray(gan_corpus, np.int64)
        for size, chosen in shots.items():
            handle[f"shots/S{size}"] = np.asarray(chosen, np.int64)
    return images, splits
