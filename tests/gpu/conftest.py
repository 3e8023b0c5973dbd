"""The GPU suite: what only a card can show, for the first minutes on one.

Every test here is marked ``gpu`` (pyproject.toml registers the marker). Without CUDA the
whole suite is collected and skipped, and the run's summary says so in one line (CI shows
it). Plain ``pytest`` runs it where CUDA is visible (under 2 minutes on one card);
``make test-gpu`` runs only it. ``LOWSHOT_REQUIRE_GPU=1`` (benchmarks/gpu_run.sh on a
GPU machine) turns "no CUDA" into a failure instead of a skip.

``LOWSHOT_GPU_REHEARSAL=1`` runs the suite on the CPU where there is no CUDA: a rehearsal
that executes its code (set-up, calls, comparisons) to catch errors before renting a
card; only the assertions about CUDA itself (the device, its memory) are left to the card.
It proves nothing about the GPU and is never part of CI.

Figures the tests measure (peak memory, PSNRs) go to ``LOWSHOT_GPU_FIGURES`` (a JSON file)
when it is set, and are printed at the end of the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

# tests/gpu is a package (gpu), so pytest puts tests/ on sys.path: its helpers
# (standins, conftest) import as they do for the other test modules.
REPO = Path(__file__).resolve().parent.parent.parent
HERE = Path(__file__).resolve().parent
REHEARSAL = os.environ.get("LOWSHOT_GPU_REHEARSAL") == "1"
REQUIRED = os.environ.get("LOWSHOT_REQUIRE_GPU") == "1"
_FIGURES: dict[str, Any] = {}


def cuda_visible() -> bool:
    return torch.cuda.is_available()


def why_skipped() -> str:
    return (
        f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
        f"sees none): the GPU suite runs on a GPU machine (make test-gpu)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in item.path.parents]
    for item in ours:
        item.add_marker(pytest.mark.gpu)
    if not ours or cuda_visible() or REHEARSAL:
        return
    if REQUIRED:
        raise pytest.UsageError(f"LOWSHOT_REQUIRE_GPU=1, but {why_skipped()}")
    skip = pytest.mark.skip(reason=why_skipped())
    for item in ours:
        item.add_marker(skip)
    config.stash[_SKIPPED] = len(ours)


_SKIPPED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    skipped = config.stash.get(_SKIPPED, 0)
    if skipped:
        terminalreporter.write_line(f"tests/gpu: {skipped} tests skipped: {why_skipped()}")
    if _FIGURES:
        terminalreporter.write_line(f"tests/gpu figures: {json.dumps(_FIGURES, sort_keys=True)}")
        target = os.environ.get("LOWSHOT_GPU_FIGURES")
        if target:
            Path(target).write_text(json.dumps(_FIGURES, indent=1, sort_keys=True))


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The card (``cuda``); the CPU in a rehearsal."""
    return torch.device("cuda" if cuda_visible() else "cpu")


@pytest.fixture
def on_card(device: torch.device) -> bool:
    """Whether assertions about CUDA itself can be made (False only in a rehearsal)."""
    return device.type == "cuda"


@pytest.fixture(scope="session")
def figures() -> dict[str, Any]:
    """Measured figures by name, written out at the end (module docstring)."""
    return _FIGURES


@pytest.fixture(autouse=True)
def ieee_fp32(device: torch.device) -> Iterator[None]:
    """Every test starts from the default policy (fp32: IEEE, no TF32) and leaves it."""
    from lowshot.devices import set_precision

    set_precision("fp32", device)
    yield
    set_precision("fp32", device)


@pytest.fixture(scope="session")
def celeba() -> Path:
    """The folder holding celeba-test-faces-64.zip and the two label files:
    ``LOWSHOT_GPU_DATA`` (gpu_run.sh passes its .gpudata), else .gpudata in the checkout,
    else ../shared/data/celeba beside it. Fails (never skips) when none holds them."""
    names = ("celeba-test-faces-64.zip", "list_eval_partition.txt", "identity_CelebA.txt")
    candidates = [
        Path(os.environ["LOWSHOT_GPU_DATA"]) if os.environ.get("LOWSHOT_GPU_DATA") else None,
        REPO / ".gpudata",
        REPO.parent / "shared" / "data" / "celeba",
    ]
    for folder in candidates:
        if folder is not None and all((folder / name).is_file() for name in names):
            return folder
    pytest.fail(f"none of {[str(c) for c in candidates if c]} holds {names} (make gpudata)")
