"""CelebA in, HDF5 out: ``sources`` reads and crops images, ``store`` writes and reads the
HDF5 image store, ``split`` draws the test images and low-shot subsets.

The names below are re-exported so ``from lowshot import data; data.load_split(...)``
works; torch is imported only by the functions that make tensors (``load_images``).
"""

from lowshot.data.sources import (
    CORRUPT,
    CROPS,
    DAMAGED_MEMBER,
    DUPLICATE,
    NO_IDENTITY,
    NO_PARTITION,
    NOT_AN_IMAGE,
    RESAMPLE,
    SKIP_REASONS,
    TOO_SMALL,
    UNSUPPORTED_PIXELS,
    DataError,
    SkipImageError,
    check_data_paths,
    crop_box,
    crop_image,
    decode_image,
    resolve_crop,
)
from lowshot.data.split import (
    Split,
    SplitReport,
    choose_split,
    load_split,
    load_validation,
    replicate_shots,
    split_data,
)
from lowshot.data.store import ExtractionReport, extract_images, load_ids, load_images, load_uint8

__all__ = [
    "CORRUPT",
    "CROPS",
    "DAMAGED_MEMBER",
    "DUPLICATE",
    "NOT_AN_IMAGE",
    "NO_IDENTITY",
    "NO_PARTITION",
    "RESAMPLE",
    "SKIP_REASONS",
    "TOO_SMALL",
    "UNSUPPORTED_PIXELS",
    "DataError",
    "ExtractionReport",
    "SkipImageError",
    "Split",
    "SplitReport",
    "check_data_paths",
    "choose_split",
    "crop_box",
    "crop_image",
    "decode_image",
    "extract_images",
    "load_ids",
    "load_images",
    "load_split",
    "load_uint8",
    "load_validation",
    "replicate_shots",
    "resolve_crop",
    "split_data",
]
