"""Figure 1 and Figure 2: valid PNG/PDF files of the documented size and layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lowshot import plots, tables
from lowshot.io import write_recovery
from lowshot.problems.colorization import Colorization

RATIOS = [0.02, 0.1, 0.3]


def synthetic_summary(losses=("mmd", "l2"), shots=(5, 10)) -> pd.DataFrame:
    """A PSNR summary with every (ratio, method) of a small grid plus colorization rows."""
    rows = []

    def add(problem, kind, ratio, method, method_kind, loss, n_shots, mean):
        rows.append(
            dict(
                problem=problem,
                problem_kind=kind,
                ratio=ratio,
                method=method,
                method_kind=method_kind,
                loss=loss,
                shots=n_shots,
                n=4,
                n_diverged=0,
                psnr_mean=mean,
                psnr_std=1.0,
                psnr_ci_half=1.5,
                psnr_ci_low=mean - 1.5,
                psnr_ci_high=mean + 1.5,
                ssim_mean=0.5,
                ssim_std=0.1,
            )
        )

    for ratio in RATIOS:
        problem = f"cs-{ratio:g}"
        for loss in losses:
            for n_shots in shots:
                mean = 15 + 10 * ratio + n_shots / 10
                add(problem, "compressed_sensing", ratio, f"lowshot-{loss}-S{n_shots}",
                    "lowshot", loss, n_shots, mean)  # fmt: skip
        for j, baseline in enumerate(("untrained", "csgm", "iagan")):
            add(problem, "compressed_sensing", ratio, baseline, baseline, None, None, 16 + j)
    add("colorization", "colorization", np.nan, "csgm", "csgm", None, None, 20.0)
    summary = pd.DataFrame(rows)
    summary["shots"] = summary["shots"].astype("Int64")
    return summary


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_figure1_has_two_panels_of_the_documented_size(tmp_path):
    pdf, png = tmp_path / "f1.pdf", tmp_path / "f1.png"
    figure = plots.figure1(synthetic_summary(), pdf, png)
    assert len(figure.axes) == 2
    assert [ax.get_title() for ax in figure.axes] == ["MMD loss", r"$\ell_2$ loss"]
    for ax in figure.axes:
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["5 shots", "10 shots", "Untrained", "GAN (CSGM)", "IAGAN"]
        for line in ax.get_lines():
            assert list(line.get_xdata()) == RATIOS
        assert len(ax.collections) == 5  # one CI band per line
    # The MMD panel shows the MMD rows: at ratio 0.1 the 10-shot mean is 15 + 1 + 1.
    ten_shots = figure.axes[0].get_lines()[1]
    assert ten_shots.get_ydata()[1] == pytest.approx(17.0)
    assert png_size(png) == plots.figure1_size_px()
    assert plots.figure1_size_px() == (
        round(plots.FIGURE1_SIZE[0] * plots.DPI),
        round(plots.FIGURE1_SIZE[1] * plots.DPI),
    )
    assert plots.read_layout_tag(png) == "lowshot:panels=2"
    assert pdf.read_bytes().startswith(b"%PDF")
    legend_labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend_labels == ["5 shots", "10 shots", "Untrained", "GAN (CSGM)", "IAGAN"]


def test_figure1_with_one_loss_has_one_panel(tmp_path):
    figure = plots.figure1(
        synthetic_summary(losses=("mmd",)), tmp_path / "a.pdf", tmp_path / "a.png"
    )
    assert len(figure.axes) == 1
    assert plots.read_layout_tag(tmp_path / "a.png") == "lowshot:panels=1"
    assert png_size(tmp_path / "a.png") == plots.figure1_size_px()


def test_figure1_needs_compressed_sensing_rows(tmp_path):
    summary = synthetic_summary()
    with pytest.raises(ValueError, match="no compressed_sensing rows"):
        plots.figure1(summary[summary["problem"] == "colorization"], tmp_path / "a.pdf",
                      tmp_path / "a.png")  # fmt: skip


def test_figure2_grid_has_one_row_per_method_and_psnr_titles(tmp_path):
    k = 3
    rng = np.random.default_rng(0)
    true = rng.integers(0, 256, (k, 64, 64, 3), dtype=np.uint8)
    gray = Colorization.input_image(true)
    rows = [
        (
            name,
            rng.integers(0, 256, (k, 64, 64, 3), dtype=np.uint8),
            np.array([24.31, 18.0, np.nan]),
        )
        for name in ("GAN (CSGM)", "IAGAN", "Untrained", "10-shot (MMD)")
    ]
    pdf, png = tmp_path / "f2.pdf", tmp_path / "f2.png"
    figure = plots.figure2(true, ("Grayscale input", gray), rows, pdf, png)
    n_rows = 2 + len(rows)
    assert len(figure.axes) == n_rows * k
    grid = np.array(figure.axes).reshape(n_rows, k)
    assert [grid[r, 0].get_ylabel() for r in range(n_rows)] == [
        "True image",
        "Grayscale input",
        "GAN (CSGM)",
        "IAGAN",
        "Untrained",
        "10-shot (MMD)",
    ]
    assert all(ax.get_title() == "" for ax in grid[:2].ravel())
    assert [ax.get_title() for ax in grid[2]] == ["24.3 dB", "18.0 dB", "diverged"]
    np.testing.assert_array_equal(grid[0, 1].get_images()[0].get_array(), true[1])
    assert png_size(png) == plots.figure2_size_px(n_rows, k)
    width, height = plots.figure2_size(n_rows, k)
    assert width == pytest.approx(plots.FIGURE2_LABEL + k * plots.FIGURE2_CELL)
    assert height == pytest.approx(n_rows * (plots.FIGURE2_CELL + plots.FIGURE2_TITLE))
    assert plots.read_layout_tag(png) == f"lowshot:rows={n_rows}"
    assert pdf.read_bytes().startswith(b"%PDF")


def test_figure2_rejects_rows_of_the_wrong_length(tmp_path):
    true = np.zeros((2, 64, 64, 3), np.uint8)
    rows = [("GAN (CSGM)", np.zeros((1, 64, 64, 3), np.uint8), np.zeros(1))]
    with pytest.raises(ValueError, match="one image"):
        plots.figure2(true, None, rows, tmp_path / "a.pdf", tmp_path / "a.png")


def test_gray_is_the_itu_r_601_luma():
    pixels = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 150, 200]]]], np.uint8)
    gray = Colorization.input_image(pixels)
    expected = np.array(
        [[0.299 * 255, 0.587 * 255, 0.114 * 255, 0.299 * 100 + 0.587 * 150 + 0.114 * 200]]
    )
    np.testing.assert_allclose(gray[0], expected, atol=1)


def write_data(root: Path, n_images: int, test_rows: list[int]) -> tuple[Path, Path]:
    """images.h5 / splits.h5 in the data stage's layout (only the keys Figure 2 reads, plus
    the ones ``lowshot.data.load_split`` needs)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n_images, 64, 64, 3), dtype=np.uint8)
    ids = [f"{i:06d}.jpg" for i in range(n_images)]
    string = h5py.string_dtype()
    with h5py.File(root / "images.h5", "w") as handle:
        handle.create_dataset("images", data=images, chunks=(4, 64, 64, 3))
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
    with h5py.File(root / "splits.h5", "w") as handle:
        handle.create_dataset("test", data=np.array(test_rows, np.int64))
        handle.create_dataset(
            "test_ids", data=np.array([ids[r] for r in test_rows], dtype=object), dtype=string
        )
        handle.create_dataset("gan_corpus", data=np.array([0, 1], np.int64))
        handle.create_dataset("shots/S2", data=np.array([0, 1], np.int64))
    return root / "images.h5", root / "splits.h5"


def write_colorization(
    path: Path, method: str, ids: list[str], fill: int, psnr: list[float]
) -> None:
    n = len(ids)
    write_recovery(
        path,
        {
            "image_ids": ids,
            "recovered": np.full((n, 64, 64, 3), fill, np.uint8),
            "z": np.zeros((n, 128), np.float32),
            "psnr": np.asarray(psnr, np.float64),
            "ssim": np.full(n, 0.5),
            "measurement_loss": np.zeros(n),
            "iterations": np.ones(n, np.int64),
            "restarts": np.ones(n, np.int64),
            "diverged": np.zeros(n, bool),
            "seed": np.zeros(n, np.int64),
            "seconds": np.ones(n),
        },
        {"problem": "colorization", "method": method},
    )


def test_figure2_from_files_follows_the_test_split_order_across_shards(tmp_path):
    test_rows = [9, 2, 5, 7]
    images_h5, splits_h5 = write_data(tmp_path, 12, test_rows)
    test_ids = [f"{r:06d}.jpg" for r in test_rows]
    # Shards in reverse order and with the images shuffled inside them.
    paths = []
    for name, fill in (("csgm", 10), ("lowshot-mmd-S10", 200)):
        second = tmp_path / name / "shard1.h5"
        first = tmp_path / name / "shard0.h5"
        write_colorization(second, name, [test_ids[3], test_ids[2]], fill + 1, [23.0, 22.0])
        write_colorization(first, name, [test_ids[1], test_ids[0]], fill, [21.0, 20.0])
        paths += [second, first]
    figure = plots.figure2_from_files(
        images_h5, splits_h5, paths, "colorization", ["lowshot-mmd-S10", "csgm"], 3,
        tmp_path / "f.pdf", tmp_path / "f.png",
    )  # fmt: skip
    grid = np.array(figure.axes).reshape(4, 3)
    with h5py.File(images_h5) as handle:
        for c, r in enumerate(test_rows[:3]):
            np.testing.assert_array_equal(
                grid[0, c].get_images()[0].get_array(), handle["images"][r]
            )
    assert [grid[r, 0].get_ylabel() for r in (2, 3)] == ["10-shot (MMD)", "GAN (CSGM)"]
    assert [ax.get_title() for ax in grid[3]] == ["20.0 dB", "21.0 dB", "22.0 dB"]
    assert grid[2, 2].get_images()[0].get_array()[0, 0, 0] == 201
    assert png_size(tmp_path / "f.png") == plots.figure2_size_px(4, 3)


def test_figure2_from_files_names_a_missing_method(tmp_path):
    images_h5, splits_h5 = write_data(tmp_path, 4, [0, 1])
    path = tmp_path / "csgm.h5"
    write_colorization(path, "csgm", ["000000.jpg", "000001.jpg"], 0, [20.0, 21.0])
    with pytest.raises(ValueError, match="iagan"):
        plots.figure2_from_files(
            images_h5,
            splits_h5,
            [path],
            "colorization",
            ["csgm", "iagan"],
            2,
            tmp_path / "f.pdf",
            tmp_path / "f.png",
        )


def test_summary_tables_feed_figure1(tmp_path):
    """The CSV written by the tables module reads back into a drawable Figure 1."""
    summary = synthetic_summary()
    tables.write_summary_csv(summary, tmp_path / "s.csv")
    figure = plots.figure1(tables.read_summary_csv(tmp_path / "s.csv"), tmp_path / "f.pdf",
                           tmp_path / "f.png")  # fmt: skip
    assert len(figure.axes) == 2
    assert [len(ax.get_lines()) for ax in figure.axes] == [5, 5]


# --- Figure 3 ------------------------------------------------------------------------


def figure3_summary() -> pd.DataFrame:
    """``synthetic_summary`` (low-shot S=5 and S=10, baselines, colorization with CSGM
    only) with IAGAN diverged on every image of cs-0.3."""
    summary = synthetic_summary()
    diverged = (summary["problem"] == "cs-0.3") & (summary["method"] == "iagan")
    summary.loc[diverged, ["psnr_mean", "psnr_ci_low", "psnr_ci_high"]] = np.nan
    summary.loc[diverged, "n_diverged"] = 4
    return summary


FIGURE3_METHODS = ["lowshot-mmd-S10", "lowshot-l2-S10", "untrained", "csgm", "iagan"]
FIGURE3_PROBLEMS = ["cs-0.02", "cs-0.1", "cs-0.3", "colorization"]


def cell_texts(figure) -> dict[tuple[int, int], tuple[str, str]]:
    """(row, column) -> (text, font weight) of the texts written in Figure 3's cells."""
    return {
        (int(text.get_position()[1] - 0.5), int(text.get_position()[0] - 0.5)): (
            text.get_text(),
            text.get_fontweight(),
        )
        for text in figure.axes[0].texts
    }


def test_figure3_grid_keeps_the_chosen_shots_and_every_method_without_shots():
    psnr, text = plots.figure3_grid(figure3_summary(), shots=10)
    assert list(psnr.index) == FIGURE3_METHODS
    assert list(psnr.columns) == FIGURE3_PROBLEMS
    # 10-shot MMD at cs-0.1: 15 + 10 * 0.1 + 10 / 10; the baselines are 16, 17, 18 dB.
    assert psnr.loc["lowshot-mmd-S10", "cs-0.1"] == pytest.approx(17.0)
    assert text.loc["lowshot-mmd-S10", "cs-0.1"] == "17.0"
    assert list(psnr.loc[["untrained", "csgm", "iagan"], "cs-0.02"]) == [16.0, 17.0, 18.0]
    assert text.loc["iagan", "cs-0.3"] == plots.DIVERGED_CELL
    assert np.isnan(psnr.loc["iagan", "cs-0.3"])
    # Colorization has CSGM only: the other cells are empty, not diverged.
    assert text.loc["csgm", "colorization"] == "20.0"
    assert text.loc["untrained", "colorization"] == ""
    assert np.isnan(psnr.loc["untrained", "colorization"])
    five, _ = plots.figure3_grid(figure3_summary(), shots=5)
    assert list(five.index) == ["lowshot-mmd-S5", "lowshot-l2-S5", "untrained", "csgm", "iagan"]
    assert five.loc["lowshot-l2-S5", "cs-0.3"] == pytest.approx(15 + 3 + 0.5)


def test_figure3_needs_a_shot_count_the_summary_has():
    with pytest.raises(ValueError, match=r"no method has S=7; the summary has S = 5, 10"):
        plots.figure3_grid(figure3_summary(), shots=7)
    baselines = figure3_summary()
    baselines = baselines[baselines["shots"].isna()]
    psnr, _ = plots.figure3_grid(baselines, shots=7)  # no method has a shot count: fine
    assert list(psnr.index) == ["untrained", "csgm", "iagan"]
    with pytest.raises(ValueError, match="no rows"):
        plots.figure3_grid(baselines.iloc[:0], shots=10)


def test_figure3_writes_the_numbers_labels_and_colours_of_the_grid(tmp_path):
    pdf, png = tmp_path / "f3.pdf", tmp_path / "f3.png"
    figure = plots.figure3(figure3_summary(), pdf, png, shots=10)
    grid = figure.axes[0]
    assert [label.get_text() for label in grid.get_yticklabels()] == [
        "10-shot (MMD)",
        "10-shot (ℓ2)",
        "Untrained",
        "GAN (CSGM)",
        "IAGAN",
    ]
    assert [label.get_text() for label in grid.get_xticklabels()] == [
        tables.problem_label(name) for name in FIGURE3_PROBLEMS
    ]
    assert [label.get_text() for label in grid.get_xticklabels()][:2] == [
        "m/n = 0.02",
        "m/n = 0.1",
    ]
    cells = cell_texts(figure)
    # Row 0 = 10-shot MMD, column 1 = cs-0.1: 17.0 dB, below IAGAN's 18 dB there.
    assert cells[(0, 1)] == ("17.0", "normal")
    assert cells[(4, 1)] == ("18.0", "bold")  # the best on cs-0.1
    assert cells[(0, 2)] == ("19.0", "bold")  # cs-0.3: 15 + 3 + 1 beats 16 and 17
    assert cells[(4, 2)][0] == plots.DIVERGED_CELL
    assert cells[(3, 3)] == ("20.0", "bold")  # CSGM, the only method on colorization
    assert (0, 3) not in cells and (2, 3) not in cells  # no row: no text
    assert len(cells) == 5 * 3 + 1
    # The colour is the distance to the problem's best: 17 - 18 at cs-0.1 for 10-shot MMD.
    colours = grid.collections[0].get_array().reshape(5, 4)
    assert colours[0, 1] == pytest.approx(-1.0)
    assert colours[4, 1] == 0.0 and colours[3, 3] == 0.0
    assert np.ma.is_masked(colours[4, 2]) and np.ma.is_masked(colours[0, 3])


def test_figure3_size_and_layout_tag_follow_the_grid(tmp_path):
    pdf, png = tmp_path / "f3.pdf", tmp_path / "f3.png"
    plots.figure3(figure3_summary(), pdf, png, shots=10)
    assert plots.read_layout_tag(png) == "lowshot:cells=5x4"
    assert png_size(png) == plots.figure3_size_px(5, 4)
    assert pdf.read_bytes().startswith(b"%PDF")
    width, height = plots.figure3_size(5, 4)
    assert width == pytest.approx(
        plots.FIGURE3_LEFT + 4 * plots.FIGURE3_CELL[0] + plots.FIGURE3_RIGHT
    )
    assert height == pytest.approx(
        plots.FIGURE3_TOP + 5 * plots.FIGURE3_CELL[1] + plots.FIGURE3_BOTTOM
    )
    wider, taller = plots.figure3_size(6, 5)
    assert wider > width and taller > height
    # One loss only: fewer rows, a shorter figure of the same width.
    one_loss = figure3_summary()
    one_loss = one_loss[one_loss["loss"].fillna("mmd") == "mmd"]
    plots.figure3(one_loss, pdf, png, shots=10)
    assert plots.read_layout_tag(png) == "lowshot:cells=4x4"
    assert png_size(png) == plots.figure3_size_px(4, 4)


def test_summary_tables_feed_figure3(tmp_path):
    """The CSV written by the tables module reads back into the same Figure 3 grid."""
    tables.write_summary_csv(figure3_summary(), tmp_path / "s.csv")
    summary = tables.read_summary_csv(tmp_path / "s.csv")
    psnr, text = plots.figure3_grid(summary, shots=10)
    expected_psnr, expected_text = plots.figure3_grid(figure3_summary(), shots=10)
    pd.testing.assert_frame_equal(psnr, expected_psnr)
    pd.testing.assert_frame_equal(text, expected_text)
    figure = plots.figure3(summary, tmp_path / "f.pdf", tmp_path / "f.png", shots=10)
    assert len(cell_texts(figure)) == 5 * 3 + 1
