"""Reading CelebA sources: files, checksums, label files, decoding and cropping.

Sources
-------
``source`` is a zip file or a folder. Its files are visited in sorted order of their
path inside the source (so the order, and every row number of the image store, is
deterministic); one file is decoded at a time, so memory stays flat for 64 or 202,599
images. An image's id is its file name without folders (``182638.jpg``), which for
CelebA is the official id that ``list_eval_partition.txt`` and ``identity_CelebA.txt``
use.

Crop
----
``aligned``: the standard DCGAN crop of the aligned CelebA release, a centre 108x108
box (left = (w - 108) // 2, top = (h - 108) // 2; (35, 55) for 178x218 images).
``center``: the centred square of side min(w, h). ``auto``: ``aligned`` for 178x218
images, ``center`` otherwise. The crop is then resized to ``image_size`` with PIL's
Lanczos filter, which widens its kernel by the downscaling factor and so is antialiased;
a crop that already has the target size is not resampled.

Skipped files
-------------
Files that cannot be used are skipped, counted under a reason (``SKIP_REASONS``) and
logged by name; colour modes are converted instead (grayscale, palette, CMYK -> RGB;
an alpha channel is dropped). Decisions:

* a zip member that cannot be read back intact (bad CRC-32, corrupt deflate stream,
  damaged header) is skipped as a ``damaged archive member``; the other members are
  still read;
* images smaller than ``image_size`` (or than 108 px for the aligned crop) are skipped,
  not upscaled: an upscaled face is not a sample of the data distribution;
* when a partition or identity file is given, ids missing from it are skipped: the
  split could not tell which pool they belong to, nor keep their identity out of
  the other pool;
* a file whose id was already stored (same name in another folder) is skipped.

Pixel formats
-------------
The store holds 8 bits per channel. Images with more bits are scaled or skipped, never
clipped:

* 16-bit images (PIL modes ``I;16*``) map their full range 0..65535 linearly onto
  0..255, ``round(v / 257)``, so 65535 -> 255 and a gradient stays a gradient;
* 32-bit integer images (mode ``I``, which PIL also uses for 16-bit data) are scaled
  the same way when every value lies in 0..65535; with values outside it they have no
  range this code could know (a 32-bit TIFF may use any part of 0..2**31), so they
  are skipped as an ``unsupported pixel format``;
* floating-point images (mode ``F``) are skipped as an ``unsupported pixel format``:
  their values have no defined range (0..1, 0..255 and raw sensor units all occur), and
  guessing one, e.g. from the image's own minimum and maximum, would change its contrast.
  Convert them to 8 or 16 bits before extraction;
* a mode PIL cannot convert to RGB (such as ``La``) is skipped under the same reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import lzma
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# PIL is imported by the functions that decode images (the extraction job): the torch
# jobs import this package to read the image store and need no PIL.
if TYPE_CHECKING:
    from PIL import Image

PathLike = str | os.PathLike[str]

ALIGNED_SIZE = (178, 218)  # (width, height) of the aligned-and-cropped CelebA release
ALIGNED_CROP = 108
CROPS = ("auto", "aligned", "center")
# PIL's Image.Resampling.LANCZOS, an IntEnum; PIL takes the plain number.
RESAMPLE = 1
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

NOT_AN_IMAGE = "not an image file"
CORRUPT = "corrupt or truncated image"
TOO_SMALL = "smaller than the crop"
NO_PARTITION = "not in the partition file"
NO_IDENTITY = "not in the identity file"
DUPLICATE = "duplicate id"
DAMAGED_MEMBER = "damaged archive member"
UNSUPPORTED_PIXELS = "unsupported pixel format"
SKIP_REASONS = (
    NOT_AN_IMAGE,
    CORRUPT,
    TOO_SMALL,
    NO_PARTITION,
    NO_IDENTITY,
    DUPLICATE,
    DAMAGED_MEMBER,
    UNSUPPORTED_PIXELS,
)

# What reading a damaged zip member raises: a bad CRC-32 or header (BadZipFile), a corrupt
# deflate or LZMA stream, or compressed data that ends before the member does (EOFError).
DAMAGED_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError)

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
    """Yield (sorted file names inside ``source``, function reading one file's bytes).

    Reading a damaged zip member raises ``SkipImageError`` (``DAMAGED_MEMBER``).
    """
    source = Path(source)
    if not source.exists():
        raise DataError(missing_source_message(source))
    if source.is_dir():
        names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        yield names, lambda name: (source / name).read_bytes()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = sorted(info.filename for info in archive.infolist() if not info.is_dir())

            def read_member(name: str) -> bytes:
                try:
                    return archive.read(name)
                except DAMAGED_MEMBER_ERRORS as error:
                    raise SkipImageError(
                        DAMAGED_MEMBER, f"{type(error).__name__}: {error}"
                    ) from error

            yield names, read_member
    else:
        raise DataError(f"{source}: not a zip file nor a folder of images")


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_checksum(source: PathLike) -> str:
    """SHA-256 of a zip file's bytes; for a folder, of its sorted "relative name<TAB>size" lines.

    The folder checksum is a cheap fingerprint (it does not read the images): it changes
    when a file is added, removed, renamed or changes size.
    """
    source = Path(source)
    if not source.is_dir():
        return file_sha256(source)
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*")):
        if path.is_file():
            digest.update(
                f"{path.relative_to(source).as_posix()}\t{path.stat().st_size}\n".encode()
            )
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
    """Decode image bytes to an RGB PIL image (EXIF rotation applied); raises ``SkipImageError``.

    Pixel formats with more than 8 bits are scaled or skipped (module docstring).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

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
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: 16-bit values scaled, floating point skipped (module docstring).

    Raises ``SkipImageError`` (``UNSUPPORTED_PIXELS``) for a format without a known range.
    """
    if image.mode == "RGB":
        return image
    if image.mode == "F":
        raise SkipImageError(
            UNSUPPORTED_PIXELS, "floating point (PIL mode F) has no defined range to scale"
        )
    if image.mode == "I" or image.mode.startswith("I;"):
        image = _scale_16_bit(image)
    try:
        return image.convert("RGB")
    except ValueError as error:  # a mode PIL has no conversion to RGB for
        raise SkipImageError(UNSUPPORTED_PIXELS, f"PIL mode {image.mode}: {error}") from error


def _scale_16_bit(image: Image.Image) -> Image.Image:
    """An integer image (mode ``I`` or ``I;16*``) with values in 0..65535 -> 8-bit ``L``."""
    from PIL import Image

    values = np.asarray(image)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high > 65535:
        raise SkipImageError(
            UNSUPPORTED_PIXELS,
            f"integer values {low}..{high} (PIL mode {image.mode}) lie outside 0..65535, "
            "so their range is unknown",
        )
    return Image.fromarray(np.rint(values / 257).astype(np.uint8))


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
