"""The HDF5 image store: writing it from a source, and reading rows back.

Image store (``results/data/images.h5``), rows in source order
----------------------------------------------------------------
``images``     (N, 64, 64, 3) uint8 RGB, chunked by ``CHUNK_ROWS`` rows, uncompressed
``ids``        (N,) str, file names such as ``182638.jpg``
``partition``  (N,) int8, official partition 0 train / 1 val / 2 test, -1 unknown
``identity``   (N,) int32, official identity number, -1 unknown
attrs: source, source_sha256 (see ``lowshot.data.sources.source_checksum``), crop,
image_size, n_images, n_skipped, skipped (JSON: reason -> {"count", "files": first
``MAX_LISTED`` names}), partition_file, identity_file (``"none"`` when not given).

Which files become rows, and how they are cropped: see ``lowshot.data.sources``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import h5py
import numpy as np
from tqdm import tqdm

from lowshot.data.sources import (
    CROPS,
    DUPLICATE,
    HOW_TO_GET_CELEBA,
    IMAGE_EXTENSIONS,
    NO_IDENTITY,
    NO_PARTITION,
    NOT_AN_IMAGE,
    DataError,
    PathLike,
    SkipImageError,
    check_data_paths,
    crop_image,
    decode_image,
    open_source,
    read_label_file,
    source_checksum,
)
from lowshot.io import atomic_path

# torch is imported inside ``load_images``, the one function that makes tensors: the data
# stage and the Snakefile, which imports this package, do without it, and importing it
# takes seconds.
if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CHUNK_ROWS = 64  # rows per HDF5 chunk: 768 KiB, so reading a few scattered rows stays cheap
MAX_LISTED = 100  # file names kept per skip reason in the store's attributes


# --- extraction ------------------------------------------------------------------------


@dataclass
class ExtractionReport:
    """What ``extract_images`` did. ``skipped``: reason -> every skipped file name."""

    output: Path
    n_images: int
    skipped: dict[str, list[str]]
    seconds: float
    source_sha256: str

    @property
    def n_skipped(self) -> int:
        return sum(len(names) for names in self.skipped.values())

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


class _ImageStoreWriter:
    """Appends rows to the resizable datasets of an image store, a buffer at a time."""

    def __init__(self, handle: h5py.File, image_size: int) -> None:
        shape = (image_size, image_size, 3)
        self.buffer_rows = 4 * CHUNK_ROWS
        self.count = 0
        self.images = handle.create_dataset(
            "images", (0, *shape), np.uint8, maxshape=(None, *shape), chunks=(CHUNK_ROWS, *shape)
        )
        self.columns = {
            name: handle.create_dataset(name, (0,), dtype, maxshape=(None,), chunks=(4096,))
            for name, dtype in (
                ("ids", h5py.string_dtype()),
                ("partition", np.int8),
                ("identity", np.int32),
            )
        }
        self._pixels = np.empty((self.buffer_rows, *shape), np.uint8)
        self._rows: list[tuple[str, int, int]] = []

    def append(self, pixels: np.ndarray, image_id: str, partition: int, identity: int) -> None:
        self._pixels[len(self._rows)] = pixels
        self._rows.append((image_id, partition, identity))
        self.count += 1
        if len(self._rows) == self.buffer_rows:
            self.flush()

    def flush(self) -> None:
        n = len(self._rows)
        if n == 0:
            return
        start = self.images.shape[0]
        self.images.resize(start + n, axis=0)
        self.images[start:] = self._pixels[:n]
        for position, (name, dataset) in enumerate(self.columns.items()):
            dataset.resize(start + n, axis=0)
            values = [row[position] for row in self._rows]
            dataset[start:] = values if name == "ids" else np.asarray(values, dataset.dtype)
        self._rows.clear()


def _skipped_attr(skipped: dict[str, list[str]]) -> str:
    return json.dumps(
        {
            reason: {"count": len(names), "files": names[:MAX_LISTED]}
            for reason, names in skipped.items()
        },
        indent=None,
    )


def extract_images(
    source: PathLike,
    output: PathLike,
    *,
    partition_file: PathLike | None = None,
    identity_file: PathLike | None = None,
    crop: str = "auto",
    image_size: int = 64,
    max_images: int | None = None,
    progress: bool = True,
) -> ExtractionReport:
    """Write the image store ``output`` (layout in the module docstring) from ``source``.

    Keeps the first ``max_images`` usable images in sorted order (all when None). Raises
    ``DataError`` for a missing or empty source, or when no image could be used.
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, not {crop!r}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be positive or None, not {max_images}")
    check_data_paths(source, partition_file, identity_file)
    partitions = read_label_file(partition_file) if partition_file else None
    identities = read_label_file(identity_file) if identity_file else None
    checksum = source_checksum(source)
    skipped: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    start = time.perf_counter()

    with (
        open_source(source) as (names, read),
        atomic_path(output) as tmp,
        h5py.File(tmp, "w") as handle,
    ):
        if not names:
            raise DataError(f"{source} holds no files. {HOW_TO_GET_CELEBA}")
        writer = _ImageStoreWriter(handle, image_size)
        # The bar counts files read, skipped ones included; with max_images it may stop early.
        bar = tqdm(
            total=len(names), unit="img", desc="extract", disable=not progress, mininterval=1
        )
        for name in names:
            if max_images is not None and writer.count >= max_images:
                break
            bar.update()
            image_id = PurePosixPath(name).name
            try:
                if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    raise SkipImageError(NOT_AN_IMAGE, "file extension")
                if partitions is not None and image_id not in partitions:
                    raise SkipImageError(NO_PARTITION)
                if identities is not None and image_id not in identities:
                    raise SkipImageError(NO_IDENTITY)
                if image_id in seen:
                    raise SkipImageError(DUPLICATE, f"{image_id} was stored from an earlier file")
                pixels = crop_image(decode_image(read(name)), crop, image_size)
            except SkipImageError as skip:
                log.warning("skipped %s: %s", name, skip)
                skipped[skip.reason].append(name)
                continue
            seen.add(image_id)
            writer.append(
                pixels,
                image_id,
                -1 if partitions is None else partitions[image_id],
                -1 if identities is None else identities[image_id],
            )
        bar.close()
        writer.flush()
        if writer.count == 0:
            raise DataError(
                f"{source}: no usable image among {len(names)} files; skipped: "
                f"{_skipped_attr(skipped)}"
            )
        handle.attrs.update(
            {
                "source": str(source),
                "source_sha256": checksum,
                "crop": crop,
                "image_size": image_size,
                "n_images": writer.count,
                "n_skipped": sum(len(v) for v in skipped.values()),
                "skipped": _skipped_attr(skipped),
                "partition_file": str(partition_file) if partition_file else "none",
                "identity_file": str(identity_file) if identity_file else "none",
            }
        )
    report = ExtractionReport(
        Path(output), writer.count, dict(skipped), time.perf_counter() - start, checksum
    )
    log.info(
        "extracted %d images from %s into %s in %.1f s (%.0f images/s); skipped %d: %s",
        report.n_images,
        source,
        output,
        report.seconds,
        report.images_per_second,
        report.n_skipped,
        {reason: len(names) for reason, names in report.skipped.items()},
    )
    return report


# --- reading the store -----------------------------------------------------------------


def _as_indices(indices: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if hasattr(indices, "cpu"):  # a torch tensor, possibly on a GPU
        indices = indices.cpu().numpy()
    return np.asarray(indices, dtype=np.int64).reshape(-1)


def load_uint8(images_h5: PathLike, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Rows ``indices`` of the store, in the order given (repeats allowed): (N, 64, 64, 3) uint8.

    Reads whole chunks, each once, so scattered and dense index sets are both cheap.
    """
    idx = _as_indices(indices)
    with h5py.File(images_h5, "r") as handle:
        dataset = handle["images"]
        n = dataset.shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(
                f"{images_h5}: row indices must lie in [0, {n}), got {idx.min()}..{idx.max()}"
            )
        unique, inverse = np.unique(idx, return_inverse=True)
        rows = np.empty((unique.size, *dataset.shape[1:]), np.uint8)
        step = dataset.chunks[0] if dataset.chunks else max(n, 1)
        blocks = unique // step
        for block in np.unique(blocks):
            selected = np.flatnonzero(blocks == block)
            first = int(block) * step
            rows[selected] = dataset[first : min(first + step, n)][unique[selected] - first]
    return rows[inverse]


def load_images(images_h5: PathLike, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Rows ``indices`` as a float32 tensor (N, 3, 64, 64) in [-1, 1], in the order given."""
    from lowshot.images import to_float  # imports torch

    return to_float(load_uint8(images_h5, indices))


def load_ids(images_h5: PathLike, indices: Sequence[int] | np.ndarray) -> list[str]:
    """The ids (file names such as ``182638.jpg``) of rows ``indices``, in the order given."""
    with h5py.File(images_h5, "r") as handle:
        ids = handle["ids"].asstr()[()]
    return [str(ids[i]) for i in _as_indices(indices)]
