"""CelebA in, HDF5 out: reading sources, cropping, the image store and the splits.

Sources
-------
``source`` is a zip file or a folder. Its files are visited in sorted order of their
path inside the source (so the order, and every row number below, is deterministic);
one file is decoded at a time, so memory stays flat for 64 or 202,599 images. An
image's id is its file name without folders (``182638.jpg``), which for CelebA is the
official id that ``list_eval_partition.txt`` and ``identity_CelebA.txt`` use.

Crop
----
``aligned``: the standard DCGAN crop of the aligned CelebA release, a centre 108x108
box (left = (w - 108) // 2, top = (h - 108) // 2; (35, 55) for 178x218 images).
``center``: the centred square of side min(w, h). ``auto``: ``aligned`` for 178x218
images, ``center`` otherwise. The crop is then resized to ``image_size`` with PIL's
Lanczos filter, which widens its kernel by the downscaling factor and so is antialiased;
a crop that already has the target size is not resampled.

Files that cannot be used are skipped, counted under a reason (``SKIP_REASONS``) and
logged by name; colour modes are converted instead (grayscale, palette, CMYK -> RGB;
an alpha channel is dropped). Decisions:

* images smaller than ``image_size`` (or than 108 px for the aligned crop) are skipped,
  not upscaled: an upscaled face is not a sample of the data distribution;
* when a partition or identity file is given, ids missing from it are skipped: the
  split could not tell which pool they belong to, nor keep their identity out of
  the other pool;
* a file whose id was already stored (same name in another folder) is skipped.

Image store (``results/data/images.h5``), rows in source order
----------------------------------------------------------------
``images``     (N, 64, 64, 3) uint8 RGB, chunked by ``CHUNK_ROWS`` rows, uncompressed
``ids``        (N,) str, file names such as ``182638.jpg``
``partition``  (N,) int8, official partition 0 train / 1 val / 2 test, -1 unknown
``identity``   (N,) int32, official identity number, -1 unknown
attrs: source, source_sha256 (see ``source_checksum``), crop, image_size, n_images,
n_skipped, skipped (JSON: reason -> {"count", "files": first ``MAX_LISTED`` names}),
partition_file, identity_file (``"none"`` when not given).

Split file (``results/data/splits.h5``): see ``choose_split`` and ``split_data``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from lowshot.io import atomic_path, read_h5, write_h5
from lowshot.seeds import derive_seed

# torch is imported inside the few functions that make tensors: the data stage and the
# Snakefile, which imports this module, do without it, and importing it takes seconds.
if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]

ALIGNED_SIZE = (178, 218)  # (width, height) of the aligned-and-cropped CelebA release
ALIGNED_CROP = 108
CROPS = ("auto", "aligned", "center")
RESAMPLE = Image.Resampling.LANCZOS
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
CHUNK_ROWS = 64  # rows per HDF5 chunk: 768 KiB, so reading a few scattered rows stays cheap
MAX_LISTED = 100  # file names kept per skip reason in the store's attributes

NOT_AN_IMAGE = "not an image file"
CORRUPT = "corrupt or truncated image"
TOO_SMALL = "smaller than the crop"
NO_PARTITION = "not in the partition file"
NO_IDENTITY = "not in the identity file"
DUPLICATE = "duplicate id"
SKIP_REASONS = (NOT_AN_IMAGE, CORRUPT, TOO_SMALL, NO_PARTITION, NO_IDENTITY, DUPLICATE)

CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


class DataError(ValueError):
    """The data cannot make the requested experiment; the message says why and what to do."""


class SkipImageError(Exception):
    """One source file cannot be used; ``reason`` is one of ``SKIP_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- sources ---------------------------------------------------------------------------


HOW_TO_GET_CELEBA = (
    "Download img_align_celeba.zip and list_eval_partition.txt (and identity_CelebA.txt) "
    f"from the CelebA site, {CELEBA_URL}, and put them in data/celeba/ of the repository, "
    "or point the config key data.source (or the environment variable LOWSHOT_DATA) at a "
    "zip or folder of images."
)


def missing_source_message(source: PathLike) -> str:
    return f"No CelebA source at {source}. {HOW_TO_GET_CELEBA}"


def check_data_paths(
    source: PathLike, partition_file: PathLike | None = None, identity_file: PathLike | None = None
) -> None:
    """Raise ``DataError`` with a helpful message when a configured data path is missing."""
    if not Path(source).exists():
        raise DataError(missing_source_message(source))
    for key, path in (("partition_file", partition_file), ("identity_file", identity_file)):
        if path is not None and not Path(path).is_file():
            raise DataError(
                f"data.{key}: {path} does not exist; give the official CelebA file "
                f"(from {CELEBA_URL}) or null"
            )


@contextlib.contextmanager
def open_source(source: PathLike) -> Iterator[tuple[list[str], Callable[[str], bytes]]]:
    """Yield (sorted file names inside ``source``, function reading one file's bytes)."""
    source = Path(source)
    if not source.exists():
        raise DataError(missing_source_message(source))
    if source.is_dir():
        names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        yield names, lambda name: (source / name).read_bytes()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = sorted(info.filename for info in archive.infolist() if not info.is_dir())
            yield names, archive.read
    else:
        raise DataError(f"{source}: not a zip file nor a folder of images")


def source_checksum(source: PathLike) -> str:
    """SHA-256 of a zip file's bytes; for a folder, of its sorted "relative name<TAB>size" lines.

    The folder checksum is a cheap fingerprint (it does not read the images): it changes
    when a file is added, removed, renamed or changes size.
    """
    source = Path(source)
    digest = hashlib.sha256()
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file():
                digest.update(
                    f"{path.relative_to(source).as_posix()}\t{path.stat().st_size}\n".encode()
                )
    else:
        with open(source, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_label_file(path: PathLike) -> dict[str, int]:
    """Read an official ``<file name> <integer>`` list (partition or identity file)."""
    labels: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(f"{path}:{number}: expected '<file name> <integer>', got {line!r}")
            labels[parts[0]] = int(parts[1])
    return labels


# --- one image -------------------------------------------------------------------------


def decode_image(data: bytes) -> Image.Image:
    """Decode image bytes to an RGB PIL image (EXIF rotation applied); raises ``SkipImageError``."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    except UnidentifiedImageError as error:
        raise SkipImageError(NOT_AN_IMAGE, "no image format recognised") from error
    # Decoders of damaged files fail with many exception types (OSError, ValueError,
    # SyntaxError, struct.error, ...); every one of them means "this file is unusable".
    except Exception as error:
        raise SkipImageError(CORRUPT, f"{type(error).__name__}: {error}") from error
    return image if image.mode == "RGB" else image.convert("RGB")


def resolve_crop(size: tuple[int, int], crop: str = "auto") -> str:
    """``aligned`` or ``center`` for an image of ``size`` = (width, height)."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, not {crop!r}")
    if crop == "auto":
        return "aligned" if tuple(size) == ALIGNED_SIZE else "center"
    return crop


def crop_box(size: tuple[int, int], crop: str = "auto") -> tuple[int, int, int, int]:
    """The PIL box (left, top, right, bottom) of the square crop of an image of ``size``."""
    width, height = size
    side = ALIGNED_CROP if resolve_crop(size, crop) == "aligned" else min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def crop_image(image: Image.Image, crop: str = "auto", image_size: int = 64) -> np.ndarray:
    """Crop and resize an RGB PIL image; returns (image_size, image_size, 3) uint8.

    Raises ``SkipImageError`` when the image is smaller than ``image_size`` or the crop box.
    """
    left, top, right, bottom = crop_box(image.size, crop)
    side = right - left
    if min(image.size) < max(image_size, side):
        raise SkipImageError(
            TOO_SMALL, f"{image.size[0]}x{image.size[1]} px, need {max(image_size, side)} px"
        )
    image = image.crop((left, top, right, bottom))
    if side != image_size:
        image = image.resize((image_size, image_size), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)


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
    return uint8_to_tensor(load_uint8(images_h5, indices))


def load_ids(images_h5: PathLike, indices: Sequence[int] | np.ndarray) -> list[str]:
    """The ids (file names such as ``182638.jpg``) of rows ``indices``, in the order given."""
    with h5py.File(images_h5, "r") as handle:
        ids = handle["ids"].asstr()[()]
    return [str(ids[i]) for i in _as_indices(indices)]


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 in [0, 255] -> (N, 3, H, W) float32 in [-1, 1]: x / 127.5 - 1."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float()
    return tensor / 127.5 - 1.0


def tensor_to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] -> (N, H, W, 3) uint8.

    Values are clamped to [-1, 1], mapped by (x + 1) * 127.5 and rounded to the nearest
    integer (ties to even), so ``tensor_to_uint8(uint8_to_tensor(a)) == a`` exactly.
    """
    import torch

    scaled = (tensor.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# --- splits ----------------------------------------------------------------------------


@dataclass
class Split:
    """Row indices into the image store. ``shots[S]`` is nested: shots[5] == shots[10][:5]."""

    test: np.ndarray
    test_ids: list[str]
    shots: dict[int, np.ndarray]
    gan_corpus: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SplitReport:
    output: Path
    strategy: str
    n_test: int
    n_train_pool: int
    gan_corpus_size: int
    shots: list[int]
    how: str


def _identities_known(identity: np.ndarray) -> bool:
    known = identity >= 0
    if known.any() and not known.all():
        raise DataError(
            f"{int((~known).sum())} of {known.size} images have no identity; the split "
            "needs identities for all images or for none"
        )
    return bool(known.all()) and known.size > 0


def _one_per_identity(
    pool: np.ndarray, identity: np.ndarray, n_test: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_test`` rows of ``pool``, one for each of ``n_test`` identities drawn at random."""
    candidates = np.unique(identity[pool])
    if candidates.size < n_test:
        raise DataError(
            f"split.n_test needs {n_test} test images of distinct identities but the test "
            f"pool holds {candidates.size} identities"
        )
    chosen = rng.permutation(candidates)[:n_test]
    return np.array([rng.choice(pool[identity[pool] == person]) for person in chosen])


def choose_split(
    partition: np.ndarray,
    identity: np.ndarray,
    *,
    n_test: int,
    shots: Sequence[int],
    gan_corpus_size: int | None,
    seed: int,
) -> dict[str, Any]:
    """Choose test rows, the training pool's GAN corpus and the nested low-shot subsets.

    Strategy ``official`` when the store holds both partition 0 (train) and partition 2
    (test) images: test images come from partition 2 and the training pool from
    partition 0. Otherwise ``disjoint-pools``: every image is a candidate for both.

    Test images: when identities are known, ``n_test`` identities are drawn at random
    from the test candidates and one image of each (so the test faces are of distinct
    people); the training pool then drops every image of those identities. Without
    identities, ``n_test`` rows are drawn and removed from the training pool.

    Training: the pool is shuffled once; the GAN corpus is its first ``gan_corpus_size``
    rows (all when None) and ``shots[S]`` its first S rows, so S5 ⊂ S10 ⊂ ... ⊂ corpus.
    Draws use ``derive_seed(seed, "split", "test" | "train")``: the test images do not
    depend on the shots or corpus size, nor the shots on the corpus size.

    Returns {"test" (sorted rows), "shots" {S: rows in draw order}, "gan_corpus" (sorted
    rows), "strategy", "identities_known", "n_train_pool", "how"}.
    """
    partition = np.asarray(partition)
    identity = np.asarray(identity)
    shots = sorted(int(s) for s in shots)
    if n_test < 1 or not shots or shots[0] < 1:
        raise ValueError(f"need n_test >= 1 and positive shots, got {n_test}, {shots}")
    if gan_corpus_size is not None and shots[-1] > gan_corpus_size:
        raise DataError(
            f"lowshot.shots: {shots[-1]} shots exceed split.gan_corpus_size={gan_corpus_size}; "
            "the low-shot subsets are drawn from the GAN corpus"
        )
    known = _identities_known(identity)
    rows = np.arange(partition.size)
    official = bool((partition == 0).any() and (partition == 2).any())
    test_pool = rows[partition == 2] if official else rows
    train_candidates = rows[partition == 0] if official else rows

    rng = np.random.default_rng(derive_seed(seed, "split", "test"))
    if known:
        test = _one_per_identity(test_pool, identity, n_test, rng)
        train_pool = train_candidates[~np.isin(identity[train_candidates], identity[test])]
    else:
        if test_pool.size < n_test:
            raise DataError(
                f"split.n_test needs {n_test} test images but the test pool holds {test_pool.size}"
            )
        test = rng.choice(test_pool, n_test, replace=False)
        train_pool = np.setdiff1d(train_candidates, test)

    needed = [("lowshot.shots", shots[-1]), ("split.gan_corpus_size", gan_corpus_size or 0)]
    for key, count in needed:
        if count > train_pool.size:
            raise DataError(
                f"{key} needs {count} training images but the training pool holds "
                f"{train_pool.size} (of {partition.size} images in the store)"
            )
    order = np.random.default_rng(derive_seed(seed, "split", "train")).permutation(train_pool)
    corpus = order[: train_pool.size if gan_corpus_size is None else gan_corpus_size]

    strategy = "official" if official else "disjoint-pools"
    source = (
        "test images from official partition 2, training pool from partition 0"
        if official
        else "no official training partition in the store, so its images were split into "
        "disjoint test and training pools"
    )
    person = (
        "one image from each of n_test randomly drawn identities, and no image of those "
        "identities in the training pool"
        if known
        else "identities unknown, so the pools are disjoint in images only"
    )
    how = (
        f"{strategy}: {source}; {n_test} test images, {person}; training pool of "
        f"{train_pool.size} images, GAN corpus of {corpus.size} of them, low-shot subsets "
        f"S{' ⊂ S'.join(map(str, shots))} nested inside it; seed {seed}."
    )
    return {
        "test": np.sort(test).astype(np.int64),
        "shots": {s: corpus[:s].astype(np.int64) for s in shots},
        "gan_corpus": np.sort(corpus).astype(np.int64),
        "strategy": strategy,
        "identities_known": known,
        "n_train_pool": int(train_pool.size),
        "how": how,
    }


def split_data(
    images_h5: PathLike,
    output: PathLike,
    *,
    n_test: int,
    shots: Sequence[int],
    gan_corpus_size: int | None,
    seed: int,
) -> SplitReport:
    """Write the split file ``output`` for the image store ``images_h5``.

    Datasets: ``test`` (n_test,) int64 rows (ascending), ``test_ids`` (n_test,) str,
    ``shots/S<n>`` (n,) int64 rows (nested prefixes), ``gan_corpus`` int64 rows
    (ascending). Attrs: strategy, how, seed, n_test, shots, gan_corpus_size,
    n_train_pool, identities_known, images (path), images_source_sha256. See
    ``choose_split`` for the design; raises ``DataError`` when a pool is too small.
    """
    with h5py.File(images_h5, "r") as handle:
        partition = handle["partition"][()]
        identity = handle["identity"][()]
        ids = handle["ids"].asstr()[()]
        source_sha = handle.attrs.get("source_sha256", "")
    chosen = choose_split(
        partition, identity, n_test=n_test, shots=shots, gan_corpus_size=gan_corpus_size, seed=seed
    )
    datasets: dict[str, Any] = {
        "test": chosen["test"],
        "test_ids": [str(ids[i]) for i in chosen["test"]],
        "gan_corpus": chosen["gan_corpus"],
    }
    datasets.update({f"shots/S{s}": rows for s, rows in chosen["shots"].items()})
    shot_list = sorted(chosen["shots"])
    write_h5(
        output,
        datasets,
        {
            "strategy": chosen["strategy"],
            "how": chosen["how"],
            "seed": int(seed),
            "n_test": int(n_test),
            "shots": np.asarray(shot_list, np.int64),
            "gan_corpus_size": int(chosen["gan_corpus"].size),
            "n_train_pool": chosen["n_train_pool"],
            "identities_known": chosen["identities_known"],
            "images": str(images_h5),
            "images_source_sha256": source_sha,
        },
    )
    log.info("wrote %s: %s", output, chosen["how"])
    return SplitReport(
        Path(output),
        chosen["strategy"],
        int(n_test),
        chosen["n_train_pool"],
        int(chosen["gan_corpus"].size),
        shot_list,
        chosen["how"],
    )


def load_split(path: PathLike) -> Split:
    """Read a split file written by ``split_data``."""
    datasets, attrs = read_h5(path)
    shots = {
        int(name.split("/S", 1)[1]): np.asarray(rows, np.int64)
        for name, rows in datasets.items()
        if name.startswith("shots/S")
    }
    return Split(
        test=np.asarray(datasets["test"], np.int64),
        test_ids=[str(i) for i in datasets["test_ids"]],
        shots=dict(sorted(shots.items())),
        gan_corpus=np.asarray(datasets["gan_corpus"], np.int64),
        attrs=attrs,
    )
