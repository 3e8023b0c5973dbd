"""lowshot.data: reading, cropping, bad input, the image store and the splits."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from lowshot import data, images
from lowshot.data import sources

OFFICIAL_FIRST = "182638.jpg"


def official_bytes(shared: Path, name: str = OFFICIAL_FIRST) -> bytes:
    with zipfile.ZipFile(shared / "img_align_celeba.zip") as archive:
        return archive.read(f"img_align_celeba/{name}")


def labels(path: Path, ids: list[str]) -> list[int]:
    table = dict(line.split() for line in path.read_text().splitlines() if line.strip())
    return [int(table[i]) for i in ids]


def save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def noise_image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (height, width) if channels is None else (height, width, channels)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


@pytest.fixture(scope="module")
def official_store(shared_celeba: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("official") / "images.h5"
    data.extract_images(
        shared_celeba / "img_align_celeba.zip",
        output,
        partition_file=shared_celeba / "list_eval_partition.txt",
        identity_file=shared_celeba / "identity_CelebA.txt",
        progress=False,
    )
    return output


# --- crop ------------------------------------------------------------------------------


def test_aligned_crop_matches_a_crop_by_hand(shared_celeba: Path, official_store: Path) -> None:
    raw = official_bytes(shared_celeba)
    pixels = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    assert pixels.shape == (218, 178, 3)
    # The DCGAN crop: rows 55..163, columns 35..143, then an antialiased resize to 64.
    by_hand = Image.fromarray(pixels[55:163, 35:143]).resize((64, 64), Image.Resampling.LANCZOS)
    expected = np.asarray(by_hand)
    assert data.crop_box((178, 218)) == (35, 55, 143, 163)
    np.testing.assert_array_equal(data.crop_image(data.decode_image(raw)), expected)
    np.testing.assert_array_equal(data.load_uint8(official_store, [0])[0], expected)


def test_center_crop_of_other_sizes() -> None:
    image = noise_image(100, 80)
    assert data.crop_box(image.size) == (10, 0, 90, 80)
    assert data.crop_box((178, 218), "center") == (0, 20, 178, 198)
    expected = np.asarray(image.crop((10, 0, 90, 80)).resize((64, 64), data.RESAMPLE))
    np.testing.assert_array_equal(data.crop_image(image), expected)
    # A 64x64 image is stored as it is, without resampling.
    small = noise_image(64, 64, seed=1)
    np.testing.assert_array_equal(data.crop_image(small), np.asarray(small))


# --- extraction of the shared data -----------------------------------------------------


def test_extract_official_zip(shared_celeba: Path, official_store: Path) -> None:
    with h5py.File(official_store, "r") as handle:
        ids = list(handle["ids"].asstr()[()])
        assert handle["images"].shape == (64, 64, 64, 3)
        assert handle["images"].dtype == np.uint8
        partition = handle["partition"][()]
        identity = handle["identity"][()]
        attrs = dict(handle.attrs)
    assert ids == [f"{number}.jpg" for number in range(182638, 182702)]
    assert (partition == 2).all()
    assert identity.tolist() == labels(shared_celeba / "identity_CelebA.txt", ids)
    digest = hashlib.sha256((shared_celeba / "img_align_celeba.zip").read_bytes()).hexdigest()
    assert attrs["source_sha256"] == digest
    assert attrs["n_images"] == 64 and attrs["n_skipped"] == 0
    assert attrs["crop"] == "auto" and json.loads(attrs["skipped"]) == {}


def test_extract_subset_of_test_faces(shared_celeba: Path, tmp_path: Path) -> None:
    source = shared_celeba / "celeba-test-faces-64.zip"
    report = data.extract_images(
        source,
        tmp_path / "images.h5",
        partition_file=shared_celeba / "list_eval_partition.txt",
        max_images=40,
        progress=False,
    )
    with zipfile.ZipFile(source) as archive:
        names = sorted(archive.namelist())[:40]
        first = np.asarray(Image.open(io.BytesIO(archive.read(names[0]))).convert("RGB"))
    assert report.n_images == 40 and report.n_skipped == 0
    assert data.load_ids(tmp_path / "images.h5", range(40)) == [Path(n).name for n in names]
    # 64x64 faces are stored unchanged (no resampling).
    np.testing.assert_array_equal(data.load_uint8(tmp_path / "images.h5", [0])[0], first)
    with h5py.File(tmp_path / "images.h5", "r") as handle:
        assert (handle["partition"][()] == 2).all()
        assert (handle["identity"][()] == -1).all()
        assert handle.attrs["identity_file"] == "none"


# --- bad input -------------------------------------------------------------------------


@pytest.fixture
def messy_folder(shared_celeba: Path, tmp_path: Path) -> Path:
    """A folder with one file for every bad-input case, beside two good images."""
    folder = tmp_path / "messy"
    raw = official_bytes(shared_celeba)
    folder.mkdir()
    (folder / "a_good.jpg").write_bytes(raw)
    (folder / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    corrupt = bytearray(raw)
    corrupt[600:-2:7] = b"\xff" * len(corrupt[600:-2:7])
    (folder / "corrupt.jpg").write_bytes(bytes(corrupt))
    (folder / "README.txt").write_text("not a face\n")
    (folder / "text_named.jpg").write_text("not a face either\n")
    save(noise_image(70, 70).convert("L"), folder / "gray.png")
    save(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), folder / "cmyk.jpg", quality=95)
    save(noise_image(64, 64, seed=2, mode="RGBA"), folder / "rgba.png")
    save(noise_image(64, 64, seed=3).convert("P"), folder / "palette.png")
    save(noise_image(60, 90, seed=4), folder / "small.png")
    (folder / "sub").mkdir()
    (folder / "sub" / "a_good.jpg").write_bytes(raw)  # same id as the first file
    return folder


def test_bad_input_is_converted_or_skipped_and_logged(
    messy_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "images.h5"
    with caplog.at_level(logging.WARNING, logger="lowshot.data"):
        report = data.extract_images(messy_folder, output, progress=False)
    assert report.skipped == {
        data.CORRUPT: ["corrupt.jpg", "truncated.jpg"],
        data.NOT_AN_IMAGE: ["README.txt", "text_named.jpg"],
        data.TOO_SMALL: ["small.png"],
        data.DUPLICATE: ["sub/a_good.jpg"],
    }
    for names in report.skipped.values():
        for name in names:
            assert name in caplog.text
    ids = data.load_ids(output, range(report.n_images))
    assert ids == ["a_good.jpg", "cmyk.jpg", "gray.png", "palette.png", "rgba.png"]
    stored = data.load_uint8(output, range(report.n_images))
    gray = np.asarray(Image.open(messy_folder / "gray.png").resize((64, 64), data.RESAMPLE))
    np.testing.assert_array_equal(stored[2], np.stack([gray] * 3, axis=-1))
    assert np.abs(stored[1].astype(int) - [255, 0, 0]).max() <= 8  # CMYK (0,255,255,0) is red
    np.testing.assert_array_equal(
        stored[3], np.asarray(Image.open(messy_folder / "palette.png").convert("RGB"))
    )
    np.testing.assert_array_equal(
        stored[4], np.asarray(Image.open(messy_folder / "rgba.png"))[..., :3]
    )
    with h5py.File(output, "r") as handle:
        assert handle.attrs["n_skipped"] == 6
        assert json.loads(handle.attrs["skipped"])[data.CORRUPT] == {
            "count": 2,
            "files": ["corrupt.jpg", "truncated.jpg"],
        }


def test_ids_missing_from_the_label_files_are_skipped(shared_celeba: Path, tmp_path: Path) -> None:
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / OFFICIAL_FIRST).write_bytes(official_bytes(shared_celeba))
    (folder / "999999.jpg").write_bytes(official_bytes(shared_celeba, "182639.jpg"))
    (folder / "182640.jpg").write_bytes(official_bytes(shared_celeba, "182640.jpg"))
    identities = tmp_path / "identity.txt"
    identities.write_text("182638.jpg 7\n999999.jpg 8\n")
    report = data.extract_images(
        folder,
        tmp_path / "images.h5",
        partition_file=shared_celeba / "list_eval_partition.txt",
        identity_file=identities,
        progress=False,
    )
    assert report.skipped == {data.NO_PARTITION: ["999999.jpg"], data.NO_IDENTITY: ["182640.jpg"]}
    with h5py.File(tmp_path / "images.h5", "r") as handle:
        assert handle["identity"][()].tolist() == [7]
        assert handle["partition"][()].tolist() == [2]


# --- damaged archives and unusual pixel formats ------------------------------------------


def bmp_bytes(seed: int) -> bytes:
    """A 64x64 BMP of 8-level noise: it deflates to Huffman-coded blocks (not stored ones)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 8, (64, 64, 3), dtype=np.uint8) * 32).save(buffer, "BMP")
    return buffer.getvalue()


def member_data(archive: bytes, name: str) -> slice:
    """Where the (compressed) bytes of member ``name`` lie in the zip file ``archive``."""
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        info = opened.getinfo(name)
    start = info.header_offset
    name_length, extra_length = struct.unpack("<HH", archive[start + 26 : start + 30])
    first = start + 30 + name_length + extra_length
    return slice(first, first + info.compress_size)


@pytest.mark.parametrize(
    ("compression", "flipped", "error"),
    [
        (zipfile.ZIP_STORED, 1, zipfile.BadZipFile),  # stored bytes altered: bad CRC-32
        (zipfile.ZIP_DEFLATED, 128, zlib.error),  # deflate stream corrupted in its middle
    ],
    ids=["bad-crc", "corrupt-deflate"],
)
def test_a_damaged_zip_member_is_skipped_and_the_others_stored(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    compression: int,
    flipped: int,
    error: type[Exception],
) -> None:
    members = {
        "a_good.bmp": bmp_bytes(0),
        "b_damaged.bmp": bmp_bytes(1),
        "c_good.bmp": bmp_bytes(2),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    raw = bytearray(buffer.getvalue())
    span = member_data(bytes(raw), "b_damaged.bmp")
    middle = (span.start + span.stop - flipped) // 2
    raw[middle : middle + flipped] = bytes(byte ^ 0xFF for byte in raw[middle : middle + flipped])
    source = tmp_path / "damaged.zip"
    source.write_bytes(bytes(raw))
    with zipfile.ZipFile(source) as archive, pytest.raises(error):
        archive.read("b_damaged.bmp")  # the damage this test is about

    output = tmp_path / "images.h5"
    with caplog.at_level(logging.WARNING, logger="lowshot.data"):
        report = data.extract_images(source, output, progress=False)
    assert report.skipped == {data.DAMAGED_MEMBER: ["b_damaged.bmp"]}
    assert data.DAMAGED_MEMBER in data.SKIP_REASONS
    assert "b_damaged.bmp" in caplog.text and data.DAMAGED_MEMBER in caplog.text
    assert data.load_ids(output, range(report.n_images)) == ["a_good.bmp", "c_good.bmp"]
    for row, name in enumerate(["a_good.bmp", "c_good.bmp"]):
        expected = np.asarray(Image.open(io.BytesIO(members[name])).convert("RGB"))
        np.testing.assert_array_equal(data.load_uint8(output, [row])[0], expected)
    with h5py.File(output, "r") as handle:
        assert json.loads(handle.attrs["skipped"]) == {
            data.DAMAGED_MEMBER: {"count": 1, "files": ["b_damaged.bmp"]}
        }


def test_16_bit_images_are_scaled_to_8_bits(tmp_path: Path) -> None:
    gradient = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    path = save(Image.fromarray(gradient), tmp_path / "source" / "gradient16.png")
    assert Image.open(path).mode == "I;16"
    report = data.extract_images(tmp_path / "source", tmp_path / "images.h5", progress=False)
    assert report.n_images == 1 and report.skipped == {}
    expected = np.rint(gradient / 257).astype(np.uint8)  # 0..65535 -> 0..255
    assert expected.min() == 0 and expected.max() == 255
    stored = data.load_uint8(tmp_path / "images.h5", [0])[0]
    np.testing.assert_array_equal(stored, np.stack([expected] * 3, axis=-1))


def test_32_bit_integer_images_are_scaled_when_in_the_16_bit_range() -> None:
    def tiff(values: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(values).save(buffer, "TIFF")
        return buffer.getvalue()

    values = np.linspace(0, 65535, 64 * 64).round().astype(np.int32).reshape(64, 64)
    image = data.decode_image(tiff(values))
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image)[..., 1], np.rint(values / 257))
    with pytest.raises(data.SkipImageError, match=r"outside 0\.\.65535") as skip:
        data.decode_image(tiff(values * 4))
    assert skip.value.reason == "unsupported pixel format"


def test_modes_without_an_rgb_conversion_are_skipped() -> None:
    # PIL cannot convert "La" (premultiplied alpha) to RGB: convert() raised ValueError.
    with pytest.raises(data.SkipImageError, match="PIL mode La") as skip:
        sources.to_rgb(Image.new("La", (64, 64)))
    assert skip.value.reason == data.UNSUPPORTED_PIXELS


def test_float_images_are_skipped_with_their_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "source"
    ramp = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    path = save(Image.fromarray(ramp), folder / "float.tif")
    assert Image.open(path).mode == "F"
    save(noise_image(64, 64), folder / "good.png")
    with caplog.at_level(logging.WARNING, logger="lowshot.data"):
        report = data.extract_images(folder, tmp_path / "images.h5", progress=False)
    assert report.skipped == {"unsupported pixel format": ["float.tif"]}
    assert "unsupported pixel format" in data.SKIP_REASONS
    assert "float.tif" in caplog.text and "floating point" in caplog.text
    assert data.load_ids(tmp_path / "images.h5", [0]) == ["good.png"]


def test_empty_and_missing_sources_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="holds no files"):
        data.extract_images(tmp_path / "empty", tmp_path / "a.h5", progress=False)
    zipfile.ZipFile(tmp_path / "empty.zip", "w").close()
    with pytest.raises(data.DataError, match="holds no files"):
        data.extract_images(tmp_path / "empty.zip", tmp_path / "a.h5", progress=False)
    with pytest.raises(data.DataError) as error:
        data.extract_images(tmp_path / "nowhere.zip", tmp_path / "a.h5", progress=False)
    for hint in ("nowhere.zip", "CelebA", "data/celeba/", "data.source", "LOWSHOT_DATA"):
        assert hint in str(error.value)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(data.DataError, match="no usable image"):
        data.extract_images(tmp_path / "junk", tmp_path / "a.h5", progress=False)
    assert not (tmp_path / "a.h5").exists()  # a failed extraction leaves no output
    assert list(tmp_path.glob(".a.h5*")) == []


# --- reading the store -----------------------------------------------------------------


def test_load_images_order_range_and_round_trip(official_store: Path) -> None:
    rows = data.load_uint8(official_store, [5, 0, 5, 63])
    with h5py.File(official_store, "r") as handle:
        np.testing.assert_array_equal(rows, handle["images"][()][[5, 0, 5, 63]])
    tensor = data.load_images(official_store, [5, 0, 5, 63])
    assert tensor.shape == (4, 3, 64, 64) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    np.testing.assert_array_equal(images.to_uint8(tensor), rows)
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    np.testing.assert_array_equal(images.to_uint8(images.to_float(every_value)), every_value)
    assert images.to_float(every_value)[0, 0, 0, 0] == -1.0
    assert images.to_float(every_value)[0, 0, -1, -1] == 1.0
    assert data.load_ids(official_store, [1, 0]) == ["182639.jpg", "182638.jpg"]
    with pytest.raises(IndexError, match="64"):
        data.load_uint8(official_store, [64])


def test_the_data_stage_does_not_import_torch() -> None:
    # The Snakefile imports lowshot.data, and the data stage runs without torch's import.
    code = (
        "import sys, lowshot.data, lowshot.data.sources, lowshot.data.store, lowshot.data.split; "
        "sys.exit('torch' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- splits ----------------------------------------------------------------------------


def people(n_people: int, per_person: int) -> np.ndarray:
    return np.repeat(np.arange(n_people, dtype=np.int32), per_person)


def check_split(chosen: dict, identity: np.ndarray | None, shots: list[int]) -> None:
    test, validation, corpus = chosen["test"], chosen["validation"], chosen["gan_corpus"]
    assert not set(test) & set(corpus)
    assert not set(validation) & (set(test) | set(corpus))
    assert not set(validation) & set(np.concatenate(list(chosen["shots"].values())))
    if identity is not None:
        assert len(set(identity[test])) == len(test)
        assert not set(identity[test]) & set(identity[corpus])
        assert len(set(identity[validation])) == len(validation)
        assert not set(identity[validation]) & (set(identity[test]) | set(identity[corpus]))
    for small, large in itertools.pairwise(shots):
        np.testing.assert_array_equal(chosen["shots"][large][:small], chosen["shots"][small])
    assert set(chosen["shots"][shots[-1]]) <= set(corpus)
    assert all(len(chosen["shots"][s]) == s for s in shots)


def test_split_with_identities_is_identity_disjoint_nested_and_seeded() -> None:
    identity = people(40, 5)
    partition = np.full(identity.size, 2, np.int8)
    args = {"n_test": 10, "shots": [5, 10, 25], "gan_corpus_size": 100}
    chosen = data.choose_split(partition, identity, seed=3, **args)
    assert chosen["strategy"] == "disjoint-pools" and chosen["identities_known"]
    assert chosen["n_train_pool"] == 150  # 200 images less the 10 test people's 50
    check_split(chosen, identity, [5, 10, 25])
    again = data.choose_split(partition, identity, seed=3, **args)
    other = data.choose_split(partition, identity, seed=4, **args)
    for key in ("test", "gan_corpus"):
        np.testing.assert_array_equal(chosen[key], again[key])
        assert not np.array_equal(chosen[key], other[key])
    np.testing.assert_array_equal(chosen["shots"][25], again["shots"][25])
    whole = data.choose_split(partition, identity, seed=3, **{**args, "gan_corpus_size": None})
    assert whole["gan_corpus"].size == 150
    np.testing.assert_array_equal(whole["test"], chosen["test"])


def test_split_without_identities_and_official_partitions() -> None:
    partition = np.full(60, -1, np.int8)
    chosen = data.choose_split(
        partition, np.full(60, -1), n_test=10, shots=[5, 10], gan_corpus_size=None, seed=0
    )
    check_split(chosen, None, [5, 10])
    assert chosen["gan_corpus"].size == 50 and "images only" in chosen["how"]

    partition = np.array([0] * 30 + [1] * 10 + [2] * 20, np.int8)
    identity = np.concatenate([people(10, 3), people(10, 1) + 10, people(20, 1) + 100])
    identity[5] = 100  # a training image of a test-partition person
    chosen = data.choose_split(
        partition, identity, n_test=20, shots=[5], gan_corpus_size=None, seed=0
    )
    assert chosen["strategy"] == "official"
    assert (partition[chosen["test"]] == 2).all()
    assert (partition[chosen["gan_corpus"]] == 0).all()
    assert 5 not in chosen["gan_corpus"] and chosen["gan_corpus"].size == 29
    check_split(chosen, identity, [5])


def test_validation_rows_are_held_out_of_test_shots_and_corpus() -> None:
    identity = people(60, 4)
    partition = np.full(identity.size, 2, np.int8)
    args = {"n_test": 10, "shots": [5, 10, 25], "gan_corpus_size": 100}
    chosen = data.choose_split(partition, identity, seed=3, n_validation=8, **args)
    assert chosen["validation"].size == 8 and chosen["validation"].dtype == np.int64
    assert list(chosen["validation"]) == sorted(chosen["validation"])
    check_split(chosen, identity, [5, 10, 25])
    # 240 images less the 10 test people's 40 and the 8 validation people's 32.
    assert chosen["n_train_pool"] == 168
    assert "8 validation images" in chosen["how"]
    # Seeded: the same seed gives the same rows, another seed others.
    again = data.choose_split(partition, identity, seed=3, n_validation=8, **args)
    other = data.choose_split(partition, identity, seed=4, n_validation=8, **args)
    np.testing.assert_array_equal(chosen["validation"], again["validation"])
    np.testing.assert_array_equal(chosen["shots"][25], again["shots"][25])
    assert not np.array_equal(chosen["validation"], other["validation"])
    # The test rows do not depend on n_validation; the validation rows not on the shots.
    without = data.choose_split(partition, identity, seed=3, n_validation=0, **args)
    np.testing.assert_array_equal(without["test"], chosen["test"])
    fewer_shots = {**args, "shots": [5], "gan_corpus_size": None}
    np.testing.assert_array_equal(
        data.choose_split(partition, identity, seed=3, n_validation=8, **fewer_shots)["validation"],
        chosen["validation"],
    )


def test_no_validation_rows_is_the_split_of_before() -> None:
    identity = people(40, 5)
    partition = np.full(identity.size, 2, np.int8)
    args = {"n_test": 10, "shots": [5, 10], "gan_corpus_size": 100, "seed": 3}
    chosen = data.choose_split(partition, identity, n_validation=0, **args)
    default = data.choose_split(partition, identity, **args)
    assert chosen["validation"].shape == (0,) and chosen["validation"].dtype == np.int64
    assert chosen["n_train_pool"] == 150 and "no validation images" in chosen["how"]
    for key in ("test", "gan_corpus"):
        np.testing.assert_array_equal(chosen[key], default[key])
    np.testing.assert_array_equal(chosen["shots"][10], default["shots"][10])
    with pytest.raises(ValueError, match="n_validation >= 0"):
        data.choose_split(partition, identity, n_validation=-1, **args)


def test_validation_without_identities_is_disjoint_in_images() -> None:
    partition = np.full(60, -1, np.int8)
    chosen = data.choose_split(
        partition,
        np.full(60, -1),
        n_test=10,
        shots=[5, 10],
        gan_corpus_size=None,
        seed=0,
        n_validation=6,
    )
    check_split(chosen, None, [5, 10])
    assert chosen["validation"].size == 6
    # Every image is test, validation or training: 60 = 10 + 6 + 44.
    assert chosen["gan_corpus"].size == chosen["n_train_pool"] == 44
    assert "never trained on" in chosen["how"]


def test_split_data_writes_and_loads(official_store: Path, tmp_path: Path) -> None:
    report = data.split_data(
        official_store, tmp_path / "splits.h5", n_test=4, shots=[10, 5], gan_corpus_size=20, seed=0
    )
    split = data.load_split(tmp_path / "splits.h5")
    assert report.strategy == split.attrs["strategy"] == "disjoint-pools"
    assert split.test.size == 4 and split.test_ids == data.load_ids(official_store, split.test)
    assert sorted(split.shots) == [5, 10] and split.gan_corpus.size == 20
    np.testing.assert_array_equal(split.shots[10][:5], split.shots[5])
    with h5py.File(official_store, "r") as handle:
        identity = handle["identity"][()]
    assert not set(identity[split.test]) & set(identity[split.gan_corpus])
    assert split.attrs["seed"] == 0 and list(split.attrs["shots"]) == [5, 10]
    assert split.attrs["how"] == report.how and "seed 0" in report.how
    # No validation rows asked for: empty arrays in the file and in the Split.
    assert split.validation.shape == (0,) and split.validation.dtype == np.int64
    assert split.validation_ids == [] and split.attrs["n_validation"] == 0
    with h5py.File(tmp_path / "splits.h5", "r") as handle:
        assert handle["validation"].shape == (0,) and handle["validation_ids"].shape == (0,)


def test_split_data_writes_and_loads_validation(official_store: Path, tmp_path: Path) -> None:
    kwargs = {"n_test": 4, "shots": [5, 10], "gan_corpus_size": 20, "seed": 0}
    report = data.split_data(official_store, tmp_path / "a.h5", n_validation=6, **kwargs)
    split = data.load_split(tmp_path / "a.h5")
    assert report.n_validation == split.attrs["n_validation"] == split.validation.size == 6
    assert split.validation_ids == data.load_ids(official_store, split.validation)
    with h5py.File(official_store, "r") as handle:
        identity = handle["identity"][()]
    trained = set(split.gan_corpus) | set(np.concatenate(list(split.shots.values())))
    assert not set(split.validation) & (trained | set(split.test))
    assert not set(identity[split.validation]) & set(identity[split.test])
    # The test rows are those of the split without validation rows.
    data.split_data(official_store, tmp_path / "b.h5", n_validation=0, **kwargs)
    np.testing.assert_array_equal(data.load_split(tmp_path / "b.h5").test, split.test)


def test_split_files_without_validation_rows_still_load(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "old.h5", "w") as handle:  # the layout before validation rows
        handle["test"] = np.array([3, 1], np.int64)
        handle.create_dataset(
            "test_ids", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype()
        )
        handle["gan_corpus"] = np.array([0, 2], np.int64)
        handle["shots/S2"] = np.array([2, 0], np.int64)
    split = data.load_split(tmp_path / "old.h5")
    assert split.validation.shape == (0,) and split.validation.dtype == np.int64
    assert split.validation_ids == [] and split.test_ids == ["a", "b"]


def test_too_small_pools_name_the_numbers() -> None:
    identity = people(30, 2)
    partition = np.full(60, 2, np.int8)
    with pytest.raises(
        data.DataError,
        match=r"lowshot\.shots needs 100 training images but the training pool holds 50",
    ):
        data.choose_split(
            partition, identity, n_test=5, shots=[5, 100], gan_corpus_size=None, seed=0
        )
    with pytest.raises(data.DataError, match=r"split\.gan_corpus_size needs 55 training images"):
        data.choose_split(partition, identity, n_test=5, shots=[5], gan_corpus_size=55, seed=0)
    with pytest.raises(data.DataError, match=r"n_test needs 31 test images .* 30 identities"):
        data.choose_split(partition, identity, n_test=31, shots=[5], gan_corpus_size=None, seed=0)
    with pytest.raises(
        data.DataError, match=r"lowshot\.shots: 25 shots exceed split\.gan_corpus_size=20"
    ):
        data.choose_split(partition, identity, n_test=5, shots=[25], gan_corpus_size=20, seed=0)


def test_too_small_pools_for_validation_name_the_numbers() -> None:
    identity = people(30, 2)
    partition = np.full(60, 2, np.int8)
    # 5 test people leave 50 images: 45 shots fit, 45 plus 10 validation images do not.
    with pytest.raises(
        data.DataError,
        match=r"split\.n_validation=10 validation images plus the 45 training images of "
        r"lowshot\.shots need 55 images, but the training pool holds 50",
    ):
        data.choose_split(
            partition,
            identity,
            n_test=5,
            shots=[45],
            gan_corpus_size=None,
            seed=0,
            n_validation=10,
        )
    with pytest.raises(data.DataError, match=r"n_validation=3 .* split\.gan_corpus_size need 51"):
        data.choose_split(
            partition, identity, n_test=5, shots=[5], gan_corpus_size=48, seed=0, n_validation=3
        )
    # 10 + 40 = 50 images fit by count, but the validation people's other images go too.
    with pytest.raises(
        data.DataError,
        match=r"lowshot\.shots needs 40 training images but the training pool holds 30 once "
        r"the 10 validation images and every other image of their people are set aside",
    ):
        data.choose_split(
            partition,
            identity,
            n_test=5,
            shots=[40],
            gan_corpus_size=None,
            seed=0,
            n_validation=10,
        )
    with pytest.raises(
        data.DataError,
        match=r"split\.n_validation needs 26 validation images .* training pool \(less the test "
        r"people\) holds 20 identities",
    ):
        data.choose_split(
            np.full(100, 2, np.int8),
            people(30, 4)[:100],
            n_test=5,
            shots=[5],
            gan_corpus_size=None,
            seed=0,
            n_validation=26,
        )


def test_load_validation_gives_the_first_validation_faces_or_says_there_are_none(
    tmp_path: Path,
) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    ids = [f"{i:06d}.jpg" for i in range(4)]
    string = h5py.string_dtype()
    with h5py.File(tmp_path / "images.h5", "w") as handle:
        handle["images"] = pixels
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
    for name, validation in (("with.h5", [3, 1]), ("without.h5", [])):
        with h5py.File(tmp_path / name, "w") as handle:
            handle["test"] = np.array([0], np.int64)
            handle.create_dataset("test_ids", data=np.array(ids[:1], dtype=object), dtype=string)
            handle["gan_corpus"] = np.array([2], np.int64)
            handle["validation"] = np.array(validation, np.int64)
            chosen = np.array([ids[i] for i in validation], dtype=object)
            handle.create_dataset("validation_ids", data=chosen, dtype=string)
    faces, names = data.load_validation(tmp_path / "images.h5", tmp_path / "with.h5", 1)
    assert names == ["000003.jpg"] and faces.shape == (1, 3, 64, 64)
    assert torch.equal(faces, images.to_float(pixels[3:4]))
    _, names = data.load_validation(tmp_path / "images.h5", tmp_path / "with.h5", 5)
    assert names == ["000003.jpg", "000001.jpg"]  # fewer than asked: all of them
    with pytest.raises(ValueError, match="holds no validation faces"):
        data.load_validation(tmp_path / "images.h5", tmp_path / "without.h5", 2)


def test_the_resampling_filter_is_pils_lanczos() -> None:
    """lowshot.data keeps PIL's filter as a number, so that importing it imports no PIL."""
    assert data.RESAMPLE == Image.Resampling.LANCZOS
