"""The paper's figures, drawing whatever the registries hold.

Figure 1: average PSNR against the parameter of one problem family (the compression
ratio m/n of compressed sensing, as in the paper) with 95% confidence bands; one panel
per low-shot loss (MMD left, ℓ2 right, as in the paper). Every method of the summary is
a line with its class's label and style (``RecoveryMethod.method_label``/``line_style``):
an instance with a loss (the low-shot models, colour-graded by shots) in its loss's
panel, every other method (the baselines, black/grey line styles) in every panel.
Fixed size ``FIGURE1_SIZE`` inches at ``DPI`` dots per inch (PNG 1650 x 750 pixels).
Figure 2 with 6 rows of 6 images is 1275 x 1305 pixels.

Replicates (``lowshot.replicates``): Figures 1 and 3 show replicate 1 only, the paper's
design of one model per (loss, S) (``paper_replicate``); the other replicates are rows
of the tables and enter the claims, not the figures.

Figure 2 (the paper's: colorization): a grid with one column per shown test image and rows
true image, the input (when the problem's class shows one: the grayscale image), then one
row per method (labelled on the left) with the PSNR above each reconstruction. Size
``figure2_size(n_columns, n_rows)`` at ``DPI``.

Figure 3 (beyond the paper): the average PSNR of every method on every problem at one
shot count S, as a heat map of methods (rows, the tables' order) x problems (columns) with
the PSNR written in each cell. Methods with a shot count appear at S only, the others
always. The colour is the cell's distance to the best method on its problem (a column),
so that methods compare within a problem whatever its difficulty. Size
``figure3_size(n_methods, n_problems)`` at ``DPI``.

Every figure carries its layout in the file's metadata (PNG text chunk / PDF keywords
``lowshot:panels=<n>``, ``lowshot:rows=<n>`` or ``lowshot:cells=<methods>x<problems>``)
so that tests can check it from the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from lowshot import data, methods, problems
from lowshot.io import atomic_path, read_recovery
from lowshot.tables import method_label, method_sort_key, problem_label, sort_rows

DPI = 150
# Figure 1: width x height in inches (two panels side by side, legend below).
FIGURE1_SIZE = (11.0, 5.0)
# Figure 2: every image cell is FIGURE2_CELL inches square, plus FIGURE2_TITLE inches
# above it for the PSNR, plus FIGURE2_LABEL inches on the left for the row labels.
FIGURE2_CELL = 1.2
FIGURE2_TITLE = 0.25
FIGURE2_LABEL = 1.3

# Figure 3: every cell is FIGURE3_CELL (width, height) inches; the margins around the
# grid (inches) hold the method labels (left), the tilted problem labels (bottom), the
# title (top) and the colour bar with its label (right). Each is a whole number of pixels
# at DPI (150 x 60 pixels a cell), so the PNG size has no rounding to argue about.
FIGURE3_CELL = (1.0, 0.4)
FIGURE3_LEFT = 1.9
FIGURE3_BOTTOM = 1.0
FIGURE3_TOP = 0.6
FIGURE3_RIGHT = 1.2
# The colour scale spans at most this many dB below a problem's best method (further
# cells share the darkest colour), and at least 1 dB.
FIGURE3_MAX_GAP_DB = 10.0
DIVERGED_CELL = "—"

_LOSS_TITLES = {"mmd": "MMD loss", "l2": r"$\ell_2$ loss"}
_LOSS_ORDER = ("mmd", "l2")


def _new_figure(size: tuple[float, float], layout: str | None = None) -> Figure:
    """A figure on its own Agg canvas: no pyplot state, nothing to close, no display needed."""
    fig = Figure(figsize=size, dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(
    fig: Figure, path_pdf: str | os.PathLike[str], path_png: str | os.PathLike[str], tag: str
) -> None:
    """Save ``fig`` as PDF and PNG (atomically), its layout ``tag`` in the metadata."""
    for path, fmt, metadata in (
        (path_pdf, "pdf", {"Keywords": tag, "Creator": "lowshot"}),
        (path_png, "png", {"Description": tag, "Software": "lowshot"}),
    ):
        with atomic_path(path) as tmp:
            # No bbox_inches="tight": the pixel size stays the documented one.
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata)


# --- Figure 1 ------------------------------------------------------------------------


def figure1(
    summary: pd.DataFrame,
    path_pdf: str | os.PathLike[str],
    path_png: str | os.PathLike[str],
    problem_kind: str = "compressed_sensing",
) -> Figure:
    """Draw Figure 1 from a PSNR summary (``lowshot.tables.summarize`` columns).

    Uses the rows of ``problem_kind`` only: x = ``ratio`` (the family's parameter; log
    axis, ticks at its values), y = ``psnr_mean`` with a band from ``psnr_ci_low`` to
    ``psnr_ci_high``. One panel per loss of the methods that have one (MMD, then ℓ2;
    one panel titled "all methods" when none has). Returns the figure so callers can
    inspect its axes. Low-shot replicates r >= 2 are left out (``paper_replicate``).
    """
    rows = paper_replicate(summary[summary["problem_kind"] == problem_kind])
    if rows.empty:
        raise ValueError(f"figure1: the summary has no {problem_kind} rows")
    names = sorted(rows["method"].unique(), key=method_sort_key)
    specs = [methods.parse_method(name) for name in names]
    present = {spec.loss for spec in specs if spec.loss is not None}
    losses = [loss for loss in _LOSS_ORDER if loss in present]
    losses += sorted(present - set(losses))
    ratios = sorted(rows["ratio"].unique())

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.95):
        fig = _new_figure(FIGURE1_SIZE, layout="constrained")
        axes = fig.subplots(1, max(len(losses), 1), sharey=True, squeeze=False)
        for ax, loss in zip(axes[0], losses or [None], strict=True):
            for spec in specs:
                if spec.loss is not None and spec.loss != loss:
                    continue
                cls = methods.family(spec)
                siblings = [other for other in specs if other.kind == spec.kind]
                _line(
                    ax,
                    rows[rows["method"] == spec.name],
                    label=_legend_label(spec),
                    **cls.line_style(spec, siblings),
                )
            ax.set_xscale("log")
            ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
            ax.minorticks_off()
            ax.set_xlabel(problems.PROBLEMS[problem_kind].parameter_label)
            ax.set_title(_LOSS_TITLES.get(loss, f"{loss} loss") if loss else "all methods")
        axes[0, 0].set_ylabel("average PSNR (dB)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=min(len(labels), 6),
            frameon=False,
        )
        _save(fig, path_pdf, path_png, f"lowshot:panels={axes.shape[1]}")
    return fig


def paper_replicate(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``summary`` (any table with a ``method`` column) that the figures show:
    methods fitted to no shots, and replicate 1 of those fitted to shots (the paper's one
    model per S; replicate r >= 2 of ``lowshot.replicates`` is in the tables only). The
    replicate comes from the method's name, so tables without a ``replicate`` column work."""
    keep = [methods.parse_method(str(name)).replicate in (None, 1) for name in summary["method"]]
    return summary[np.asarray(keep, dtype=bool)]


def _legend_label(spec: methods.MethodSpec) -> str:
    """A method's legend entry: its label, without the loss that the panel title gives."""
    if spec.loss is not None and spec.shots is not None:
        return f"{spec.shots} shots"
    return methods.family(spec).method_label(spec)


def _line(ax: Axes, rows: pd.DataFrame, label: str, **style: object) -> None:
    """One method's mean PSNR against the ratio, with its CI as a band."""
    if rows.empty:
        return
    rows = rows.sort_values("ratio")
    x = rows["ratio"].to_numpy(dtype=float)
    (line,) = ax.plot(
        x, rows["psnr_mean"].to_numpy(dtype=float), label=label, lw=1.6, ms=4, **style
    )
    low = rows["psnr_ci_low"].to_numpy(dtype=float)
    high = rows["psnr_ci_high"].to_numpy(dtype=float)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, lw=0)


# --- Figure 2 ------------------------------------------------------------------------


def figure1_size_px() -> tuple[int, int]:
    """Figure 1's PNG (width, height) in pixels."""
    return round(FIGURE1_SIZE[0] * DPI), round(FIGURE1_SIZE[1] * DPI)


def figure2_size(n_rows: int, n_columns: int) -> tuple[float, float]:
    """Figure 2's (width, height) in inches for ``n_rows`` rows of ``n_columns`` images."""
    return (
        FIGURE2_LABEL + n_columns * FIGURE2_CELL,
        n_rows * (FIGURE2_CELL + FIGURE2_TITLE),
    )


def figure2_size_px(n_rows: int, n_columns: int) -> tuple[int, int]:
    """Figure 2's PNG (width, height) in pixels; rows count the true and grayscale rows."""
    width, height = figure2_size(n_rows, n_columns)
    return round(width * DPI), round(height * DPI)


def figure2(
    true_uint8: np.ndarray,
    input_row: tuple[str, np.ndarray] | None,
    rows: Sequence[tuple[str, np.ndarray, np.ndarray]],
    path_pdf: str | os.PathLike[str],
    path_png: str | os.PathLike[str],
) -> Figure:
    """Draw Figure 2: the grid of recovered test images.

    ``true_uint8``: (K, 64, 64, 3) uint8 test images; ``input_row``: (label, (K, 64, 64)
    or (K, 64, 64, 3) uint8 inputs), e.g. the grayscale images of colorization, or None;
    ``rows``: (label, (K, 64, 64, 3) uint8 reconstructions, (K,) PSNR in dB) per method,
    drawn top to bottom under the true and input rows with "<psnr> dB" above each image.
    Returns the figure.
    """
    k = len(true_uint8)
    inputs = [] if input_row is None else [(input_row[0], input_row[1], None)]
    if any(len(images) != k for _, images, _ in inputs) or any(
        len(images) != k or len(psnr) != k for _, images, psnr in rows
    ):
        raise ValueError("figure2: every row needs one image (and PSNR) per column")
    grid = [("True image", true_uint8, None), *inputs, *rows]
    n_rows = len(grid)
    width, height = figure2_size(n_rows, k)
    fig = _new_figure((width, height))
    axes = fig.subplots(n_rows, k, squeeze=False)
    fig.subplots_adjust(
        left=FIGURE2_LABEL / width,
        right=1 - 0.1 / width,
        bottom=0.05 / height,
        top=1 - FIGURE2_TITLE / height,
        wspace=0.05,
        hspace=FIGURE2_TITLE / FIGURE2_CELL,
    )
    for r, (label, images, psnr) in enumerate(grid):
        for c in range(k):
            ax = axes[r, c]
            image = np.asarray(images[c])
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if psnr is not None:
                value = float(psnr[c])
                text = f"{value:.1f} dB" if np.isfinite(value) else "diverged"
                ax.set_title(text, fontsize=9, pad=2)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10, labelpad=8)
    _save(fig, path_pdf, path_png, f"lowshot:rows={n_rows}")
    return fig


def load_test_images(
    images_h5: str | os.PathLike[str], splits_h5: str | os.PathLike[str], n: int
) -> tuple[list[str], np.ndarray]:
    """The first ``n`` test images of the split: (ids, (n, 64, 64, 3) uint8)."""
    split = data.load_split(splits_h5)
    rows = split.test[:n]
    ids = [str(i) for i in split.test_ids[:n]]
    if data.load_ids(images_h5, rows) != ids:
        raise ValueError(f"{splits_h5}: test_ids do not match the ids of {images_h5}")
    return ids, data.load_uint8(images_h5, rows)


def group_by_method(
    paths: Sequence[str | os.PathLike[str]],
) -> dict[str, list[str | os.PathLike[str]]]:
    """Recovery files (every shard of every job) grouped by the ``method`` attr."""
    groups: dict[str, list[str | os.PathLike[str]]] = {}
    for path in paths:
        with h5py.File(path, "r") as handle:
            method = handle.attrs["method"]
        groups.setdefault(method.decode() if isinstance(method, bytes) else str(method), []).append(
            path
        )
    return groups


def recovered_for(
    paths: Sequence[str | os.PathLike[str]], image_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(reconstructions (K, 64, 64, 3) uint8, PSNR (K,)) of ``image_ids`` from one method's
    recovery files (its shards, in any order).

    A diverged image's PSNR is returned as NaN (Figure 2 prints "diverged").
    """
    found: dict[str, tuple[np.ndarray, float]] = {}
    for path in paths:
        fields, _ = read_recovery(path)
        for j, image_id in enumerate(fields["image_ids"]):
            psnr = np.nan if fields["diverged"][j] else float(fields["psnr"][j])
            found[str(image_id)] = (np.asarray(fields["recovered"][j], dtype=np.uint8), psnr)
    missing = [i for i in image_ids if i not in found]
    if missing:
        raise ValueError(f"{[str(p) for p in paths]}: no recovery of test image(s) {missing}")
    images = np.stack([found[i][0] for i in image_ids])
    return images, np.array([found[i][1] for i in image_ids], dtype=np.float64)


def figure2_from_files(
    images_h5: str | os.PathLike[str],
    splits_h5: str | os.PathLike[str],
    recovery_paths: Sequence[str | os.PathLike[str]],
    problem: str,
    methods: Sequence[str],
    n_images: int,
    path_pdf: str | os.PathLike[str],
    path_png: str | os.PathLike[str],
) -> Figure:
    """Figure 2 for the first ``n_images`` test images from the data stage's files.

    ``recovery_paths``: the recovery files (all shards) of ``methods`` on ``problem``,
    which give the rows top to bottom, labelled with ``lowshot.tables.method_label``; the
    input row is the problem class's ``input_image`` (none when it has none).
    """
    ids, true = load_test_images(images_h5, splits_h5, n_images)
    by_method = group_by_method(recovery_paths)
    rows = []
    for name in methods:
        if name not in by_method:
            raise ValueError(f"figure2: no recovery file of method {name!r} given")
        images, psnr = recovered_for(by_method[name], ids)
        rows.append((method_label(name), images, psnr))
    cls = problems.family(problem)
    shown = cls.input_image(true)
    input_row = None if shown is None or cls.input_label is None else (cls.input_label, shown)
    return figure2(true, input_row, rows, path_pdf, path_png)


# --- Figure 3 ------------------------------------------------------------------------


def figure3_size(n_methods: int, n_problems: int) -> tuple[float, float]:
    """Figure 3's (width, height) in inches for ``n_methods`` rows of ``n_problems`` cells."""
    return (
        FIGURE3_LEFT + n_problems * FIGURE3_CELL[0] + FIGURE3_RIGHT,
        FIGURE3_TOP + n_methods * FIGURE3_CELL[1] + FIGURE3_BOTTOM,
    )


def figure3_size_px(n_methods: int, n_problems: int) -> tuple[int, int]:
    """Figure 3's PNG (width, height) in pixels (every ``FIGURE3_*`` length is a whole
    number of pixels at ``DPI``, so rounding only undoes floating-point error)."""
    width, height = figure3_size(n_methods, n_problems)
    return round(width * DPI), round(height * DPI)


def at_shots(summary: pd.DataFrame, shots: int) -> pd.DataFrame:
    """The summary rows Figure 3 shows: methods with a shot count at ``shots`` only (of
    replicate 1, ``paper_replicate``), the methods without one (``shots`` missing) always.

    Raises ``ValueError`` when some method has a shot count but none has ``shots`` (the
    figure would silently lose every such method), naming the shot counts there are.
    """
    summary = paper_replicate(summary)
    counts = summary["shots"].astype("Float64")
    present = sorted({int(s) for s in counts.dropna()})
    if present and shots not in present:
        raise ValueError(
            f"figure3: no method has S={shots}; the summary has S = "
            f"{', '.join(map(str, present))} (set report.figure3_shots to one of them)"
        )
    keep = (counts.isna() | (counts == shots)).fillna(False).to_numpy(dtype=bool)
    return summary[keep]


def figure3_grid(summary: pd.DataFrame, shots: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figure 3's cells: (mean PSNR in dB, cell text), both methods x problems.

    Rows are method names, columns problem names, both in the tables' order
    (``lowshot.tables.sort_rows``), of the rows ``at_shots`` keeps. The PSNR is NaN where
    a method has no row on a problem or every image diverged; the text is the PSNR to one
    decimal, ``DIVERGED_CELL`` where every image diverged and "" where there is no row.
    Raises ``ValueError`` when no row is left to show.
    """
    rows = sort_rows(at_shots(summary, shots))
    if rows.empty:
        raise ValueError(f"figure3: the summary has no rows to show at S={shots}")
    problem_names = list(dict.fromkeys(rows["problem"]))
    method_names = sorted(dict.fromkeys(rows["method"]), key=method_sort_key)
    psnr = pd.DataFrame(np.nan, index=method_names, columns=problem_names, dtype=np.float64)
    text = pd.DataFrame("", index=method_names, columns=problem_names, dtype=object)
    for method, problem, mean in zip(
        rows["method"], rows["problem"], rows["psnr_mean"], strict=True
    ):
        value = float(mean)
        psnr.loc[method, problem] = value
        text.loc[method, problem] = f"{value:.1f}" if np.isfinite(value) else DIVERGED_CELL
    return psnr, text


def figure3(
    summary: pd.DataFrame,
    path_pdf: str | os.PathLike[str],
    path_png: str | os.PathLike[str],
    shots: int = 10,
) -> Figure:
    """Draw Figure 3 ("beyond the paper") from a PSNR summary (``summarize`` columns).

    A heat map of ``figure3_grid(summary, shots)``: one row per method (labelled with
    ``lowshot.tables.method_label``), one column per problem (``problem_label``), the mean
    PSNR written in every cell (bold: the best on its problem; "—": every image
    diverged; empty: the method has no row on the problem). The colour is the cell's PSNR
    minus the best PSNR on its problem (0 dB brightest, down to ``FIGURE3_MAX_GAP_DB``
    below). Returns the figure; its first axes is the grid, the second the colour bar.
    """
    psnr, text = figure3_grid(summary, shots)
    n_methods, n_problems = psnr.shape
    gap = psnr - psnr.max(axis=0, skipna=True)
    finite = np.isfinite(gap.to_numpy())
    lowest = float(np.nanmin(gap.to_numpy())) if finite.any() else 0.0
    vmin = -min(max(-lowest, 1.0), FIGURE3_MAX_GAP_DB)
    cmap = sns.color_palette("rocket", as_cmap=True)

    width, height = figure3_size(n_methods, n_problems)
    grid_width, grid_height = n_problems * FIGURE3_CELL[0], n_methods * FIGURE3_CELL[1]
    fig = _new_figure((width, height))
    ax = fig.add_axes(
        (FIGURE3_LEFT / width, FIGURE3_BOTTOM / height, grid_width / width, grid_height / height)
    )
    cax = fig.add_axes(
        (
            (FIGURE3_LEFT + grid_width + 0.15) / width,
            FIGURE3_BOTTOM / height,
            0.15 / width,
            grid_height / height,
        )
    )
    ax.set_facecolor("0.93")
    sns.heatmap(
        gap,
        mask=~finite,
        cmap=cmap,
        vmin=vmin,
        vmax=0.0,
        ax=ax,
        cbar_ax=cax,
        cbar_kws={
            "label": "dB below the best\non the problem",
            "extend": "min" if -lowest > FIGURE3_MAX_GAP_DB else "neither",
        },
        linewidths=1.0,
        linecolor="white",
        xticklabels=[problem_label(str(p)) for p in psnr.columns],
        yticklabels=[method_label(str(m)) for m in psnr.index],
        square=False,
    )
    best = psnr.eq(psnr.max(axis=0, skipna=True), axis=1).to_numpy()
    for r in range(n_methods):
        for c in range(n_problems):
            label = str(text.iat[r, c])
            if not label:
                continue
            if finite[r, c]:
                shade = cmap((gap.iat[r, c] - vmin) / -vmin)
                luminance = 0.2126 * shade[0] + 0.7152 * shade[1] + 0.0722 * shade[2]
                colour = "black" if luminance > 0.45 else "white"
            else:
                colour = "0.35"
            weight = "bold" if best[r, c] else "normal"
            ax.text(
                c + 0.5,
                r + 0.5,
                label,
                ha="center",
                va="center",
                fontsize=8.5,
                color=colour,
                fontweight=weight,
            )
    ax.tick_params(axis="both", length=0, labelsize=9)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    ax.set_xlabel("")
    ax.set_ylabel("")
    cax.tick_params(labelsize=8)
    title = "Average PSNR (dB)"
    if summary["shots"].notna().any():
        title += f", methods with shots at S = {shots}"
    fig.suptitle(title, x=0.15 / width, y=1 - 0.12 / height, ha="left", va="top", fontsize=11)
    _save(fig, path_pdf, path_png, f"lowshot:cells={n_methods}x{n_problems}")
    return fig


def read_layout_tag(path: str | os.PathLike[str]) -> str:
    """The ``lowshot:...`` layout tag written into a figure PNG by this module."""
    with Image.open(Path(path)) as image:
        return image.text.get("Description", "")  # type: ignore[attr-defined]
