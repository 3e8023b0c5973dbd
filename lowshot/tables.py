"""Aggregation of the per-image recovery results into the paper's tables.

``metrics_table`` flattens the recovery files (``results/recovery/{problem}/{method}/
shard{k}.h5``, layout in ``lowshot.io.RECOVERY_FIELDS``; any number of shards per job)
into one row per (problem, method, image);
``summarize`` reduces it to mean, standard deviation and a Student-t 95% confidence
interval of the PSNR over the test images of every (problem, ratio, method, loss, shots),
and to the mean paired PSNR difference to the untrained network on the same images.
A diverged image (flagged by the recovery, or with a non-finite PSNR) is left out of every
mean and counted in ``n_diverged``; it is never averaged in silently.

The ``write_summary_*`` functions render the summary as CSV (long form, every number),
Markdown (methods x problems, "mean ± CI half-width") and a booktabs LaTeX table.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lowshot import methods, problems
from lowshot.io import atomic_path, read_recovery

log = logging.getLogger(__name__)

# Identify one recovery job; ``problem`` and ``method`` alone are unique, the rest is
# carried along so that the tables can be sorted and filtered without parsing names
# (``replicate``: which draw of shots and seeds a shot-fitted method is, NA for others).
GROUP_COLUMNS: list[str] = [
    "problem",
    "problem_kind",
    "ratio",
    "method",
    "method_kind",
    "loss",
    "shots",
    "replicate",
]
METRIC_COLUMNS: list[str] = [
    *GROUP_COLUMNS,
    "image_id",
    "psnr",
    "ssim",
    "measurement_loss",
    "diverged",
    "iterations",
    "restarts",
    "seconds",
    "seed",
    "noise_std",
]
SUMMARY_COLUMNS: list[str] = [
    *GROUP_COLUMNS,
    "n",
    "n_diverged",
    "psnr_mean",
    "psnr_std",
    "psnr_ci_half",
    "psnr_ci_low",
    "psnr_ci_high",
    "ssim_mean",
    "ssim_std",
    "diff_untrained_mean",
    "diff_untrained_ci_low",
    "diff_untrained_ci_high",
    "n_paired",
]
CONFIDENCE = 0.95
# The method kind of the summary's paired differences (``diff_untrained_*``): the
# untrained network, the one baseline without a learned prior.
REFERENCE_KIND = "untrained"
# What pairs two methods' rows: the same test image of the same problem.
UNIT_COLUMNS: list[str] = ["problem", "image_id"]


# --- per-image table ---------------------------------------------------------------


def _job_columns(path: str | os.PathLike[str], attrs: dict) -> dict:
    """The (problem, method) identity of a recovery file, from its names in the attrs.

    Names are parsed by the registries so that ratio/loss/shots always agree with them;
    attrs that disagree with the name are an error (a file in the wrong place).
    """
    problem_name, method_name = attrs.get("problem"), attrs.get("method")
    if not problem_name or not method_name:
        problem_name, method_name = names_from_path(path)
    problem = problems.parse_problem(problem_name)
    method = methods.parse_method(method_name)
    ratio = attrs.get("ratio")
    if ratio is not None and problem.ratio is not None and not math.isclose(ratio, problem.ratio):
        raise ValueError(f"{path}: attr ratio={ratio} disagrees with problem {problem_name!r}")
    for key, expected in (
        ("method_kind", method.kind),
        ("loss", method.loss),
        ("replicate", method.replicate),
    ):
        if key in attrs and attrs[key] != expected:
            raise ValueError(f"{path}: attr {key}={attrs[key]!r} disagrees with {method_name!r}")
    return {
        "problem": problem.name,
        "problem_kind": problem.kind,
        "ratio": problem.ratio,
        "method": method.name,
        "method_kind": method.kind,
        "loss": method.loss,
        "shots": method.shots,
        "replicate": method.replicate,
    }


def names_from_path(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(problem, method) of ``{problem}/{method}.h5`` or ``{problem}/{method}/shardK.h5``."""
    path = Path(path)
    if path.stem.startswith("shard"):
        return path.parent.parent.name, path.parent.name
    return path.parent.name, path.stem


def read_metrics(path: str | os.PathLike[str]) -> pd.DataFrame:
    """One recovery file as a DataFrame with ``METRIC_COLUMNS`` (one row per image)."""
    fields, attrs = read_recovery(path)
    frame = pd.DataFrame(
        {
            "image_id": np.asarray(fields["image_ids"]).astype(str),
            "psnr": np.asarray(fields["psnr"], dtype=np.float64),
            "ssim": np.asarray(fields["ssim"], dtype=np.float64),
            "measurement_loss": np.asarray(fields["measurement_loss"], dtype=np.float64),
            "diverged": np.asarray(fields["diverged"], dtype=bool),
            "iterations": np.asarray(fields["iterations"], dtype=np.int64),
            "restarts": np.asarray(fields["restarts"], dtype=np.int64),
            "seconds": np.asarray(fields["seconds"], dtype=np.float64),
            "seed": np.asarray(fields["seed"], dtype=np.int64),
        }
    )
    for key, value in _job_columns(path, attrs).items():
        frame[key] = value
    frame["noise_std"] = attrs.get("noise_std", np.nan)
    return frame


def metrics_table(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Concatenate recovery files into one row per (problem, method, image).

    Columns ``METRIC_COLUMNS``: ``ratio`` is NaN for colorization, ``loss``/``shots`` are
    missing (None/<NA>) for the baselines; ``shots`` is a nullable integer, and so is
    ``replicate`` (``lowshot.replicates``: 1, 2, ... for the methods fitted to shots, 1
    the paper's single model per S; <NA> for the others). Raises
    ``ValueError`` when an image appears twice for the same problem and method, or when
    no file is given.
    """
    frames = [read_metrics(path) for path in paths]
    if not frames:
        raise ValueError("metrics_table: no recovery files given")
    table = pd.concat(frames, ignore_index=True)[METRIC_COLUMNS]
    table["ratio"] = table["ratio"].astype("float64")
    table["shots"] = table["shots"].astype("Int64")
    table["replicate"] = table["replicate"].astype("Int64")
    table["loss"] = table["loss"].astype("object").where(table["loss"].notna(), None)
    duplicated = table.duplicated(["problem", "method", "image_id"], keep=False)
    if duplicated.any():
        rows = table.loc[duplicated, ["problem", "method", "image_id"]].drop_duplicates()
        raise ValueError(f"images recovered more than once:\n{rows.to_string(index=False)}")
    return sort_rows(table, extra=["image_id"])


def sort_rows(frame: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Sort by problem (``problem_sort_key``), then method (``method_sort_key``)."""
    problem_keys = frame["problem"].map(problem_sort_key)
    method_keys = frame["method"].map(method_sort_key)
    order = sorted(
        range(len(frame)),
        key=lambda i: (
            problem_keys.iat[i],
            method_keys.iat[i],
            *(str(frame[c].iat[i]) for c in extra),
        ),
    )
    return frame.iloc[order].reset_index(drop=True)


def problem_sort_key(name: str) -> tuple:
    """Problem families in their registered ``order``, then by their parameter (m/n)."""
    return problems.sort_key(problems.parse_problem(name))


def method_sort_key(name: str) -> tuple:
    """Methods in their registered ``order`` (low-shot models, MMD then ℓ2 by shots, then
    untrained, CSGM, IAGAN for the built-in ones)."""
    return methods.sort_key(methods.parse_method(name))


# --- summary -------------------------------------------------------------------------


def excluded(metrics: pd.DataFrame) -> pd.Series:
    """Rows left out of the means: flagged diverged, or a non-finite PSNR.

    A non-finite PSNR without the flag is a recovery bug; it is excluded all the same
    (and logged) rather than poisoning a mean.
    """
    finite = np.isfinite(metrics["psnr"].to_numpy(dtype=np.float64))
    unflagged = ~finite & ~metrics["diverged"].to_numpy(dtype=bool)
    if unflagged.any():
        log.warning(
            "%d image(s) with non-finite PSNR not flagged as diverged; excluded as diverged",
            int(unflagged.sum()),
        )
    return pd.Series(metrics["diverged"].to_numpy(dtype=bool) | ~finite, index=metrics.index)


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, std, half-width) of a Student-t confidence interval of the mean.

    ``std`` uses ddof=1; with fewer than two values std and half-width are NaN (and the
    mean is NaN for no values).
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n))
    return mean, std, half


def paired_differences(treatment: pd.DataFrame, control: pd.DataFrame) -> pd.Series:
    """PSNR of ``treatment`` minus ``control`` (dB) on every image both recovered.

    ``treatment``, ``control``: metrics rows (``METRIC_COLUMNS``), typically one method
    each. Rows are paired on ``UNIT_COLUMNS`` (problem, image); a pair with an
    ``excluded`` row on either side is left out (pairwise exclusion). Returns a float
    Series indexed by (problem, image_id), sorted; empty when nothing pairs. Raises
    ``ValueError`` when one side has the same image of a problem twice.
    """
    joined = pd.concat(
        {"treatment": unit_psnr(treatment), "control": unit_psnr(control)},
        axis=1,
        join="inner",
    )
    return (joined["treatment"] - joined["control"]).sort_index().rename("psnr_difference")


def unit_psnr(rows: pd.DataFrame) -> pd.Series:
    """PSNR (dB) of the rows not ``excluded``, indexed by ``UNIT_COLUMNS``.

    Raises ``ValueError`` naming the rows when a (problem, image) appears twice.
    """
    keep = ~(rows["diverged"].to_numpy(dtype=bool) | ~np.isfinite(rows["psnr"].to_numpy(float)))
    kept = rows.loc[keep]
    repeated = kept.duplicated(UNIT_COLUMNS, keep=False)
    if repeated.any():
        units = kept.loc[repeated, [*UNIT_COLUMNS, "method"]].to_string(index=False)
        raise ValueError(f"cannot pair images that appear more than once:\n{units}")
    return kept.set_index(UNIT_COLUMNS)["psnr"].astype(np.float64)


def reference_interval(
    group: pd.DataFrame, reference: pd.DataFrame | None, confidence: float = CONFIDENCE
) -> dict[str, float | int]:
    """``diff_untrained_*`` and ``n_paired`` of one job against its problem's reference.

    ``group``: one job's metrics rows; ``reference``: the reference method's rows of the
    same problem, or None when the problem has none (then NaN and ``n_paired`` 0).
    The interval is ``t_interval`` of the paired differences (``paired_differences``).
    """
    differences = (
        paired_differences(group, reference).to_numpy() if reference is not None else np.empty(0)
    )
    mean, _, half = t_interval(differences, confidence)
    return {
        "diff_untrained_mean": mean,
        "diff_untrained_ci_low": mean - half,
        "diff_untrained_ci_high": mean + half,
        "n_paired": len(differences),
    }


def summarize(metrics: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Mean, std and Student-t CI of PSNR (mean/std of SSIM) per job, diverged excluded.

    ``metrics``: a ``metrics_table``. Returns ``SUMMARY_COLUMNS``, one row per (problem,
    ratio, method, loss, shots, replicate), i.e. per job: replicates of a (loss, S) are
    rows of their own (their method names differ), never pooled; ``n`` images
    recovered, ``n_diverged`` of them left out, the statistics over the remaining
    ``n - n_diverged``; ``psnr_ci_low/high`` = mean ∓ half-width.
    ``diff_untrained_mean/ci_low/ci_high``: mean PSNR difference (dB) to the untrained
    network (``REFERENCE_KIND``) over the ``n_paired`` images both recovered without
    diverging, with its Student-t interval (0 for the untrained network itself; NaN with
    ``n_paired`` 0 where the problem has no untrained rows).
    """
    drop = excluded(metrics)
    # The flag now covers non-finite PSNRs too, so pairing never warns about them again.
    flagged = metrics.assign(diverged=drop.to_numpy())
    is_reference = flagged["method_kind"] == REFERENCE_KIND
    references = dict(tuple(flagged.loc[is_reference].groupby("problem", sort=False)))
    rows = []
    # dropna=False: ratio is NaN for colorization, loss/shots missing for baselines.
    for keys, group in flagged.groupby(GROUP_COLUMNS, dropna=False, sort=False):
        kept = group.loc[~drop.loc[group.index]]
        psnr_mean, psnr_std, psnr_half = t_interval(kept["psnr"].to_numpy(), confidence)
        ssim = kept["ssim"].to_numpy(dtype=np.float64)
        problem = dict(zip(GROUP_COLUMNS, keys, strict=True))["problem"]
        rows.append(
            {
                **dict(zip(GROUP_COLUMNS, keys, strict=True)),
                "n": len(group),
                "n_diverged": len(group) - len(kept),
                "psnr_mean": psnr_mean,
                "psnr_std": psnr_std,
                "psnr_ci_half": psnr_half,
                "psnr_ci_low": psnr_mean - psnr_half,
                "psnr_ci_high": psnr_mean + psnr_half,
                "ssim_mean": float(ssim.mean()) if ssim.size else math.nan,
                "ssim_std": float(ssim.std(ddof=1)) if ssim.size > 1 else math.nan,
                **reference_interval(group, references.get(problem), confidence),
            }
        )
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["shots"] = summary["shots"].astype("Int64")
    summary["replicate"] = summary["replicate"].astype("Int64")
    summary["loss"] = summary["loss"].astype("object").where(summary["loss"].notna(), None)
    return sort_rows(summary)


# --- rendering -----------------------------------------------------------------------


def method_label(name: str) -> str:
    """Readable method name from its class, e.g. ``lowshot-mmd-S10`` -> ``10-shot (MMD)``."""
    spec = methods.parse_method(name)
    return methods.family(spec).method_label(spec)


def problem_label(name: str) -> str:
    """Readable problem name from its class, e.g. ``cs-0.1`` -> ``m/n = 0.1``."""
    spec = problems.parse_problem(name)
    return problems.family(spec).label(spec)


def _cell(row: pd.Series, pm: str) -> str:
    if not np.isfinite(row["psnr_mean"]):
        text = "—"
    elif np.isfinite(row["psnr_ci_half"]):
        text = f"{row['psnr_mean']:.2f} {pm} {row['psnr_ci_half']:.2f}"
    else:
        text = f"{row['psnr_mean']:.2f}"
    if row["n_diverged"]:
        text += f" ({row['n_diverged']}/{row['n']} div.)"
    return text


def summary_grid(summary: pd.DataFrame, pm: str = "±") -> pd.DataFrame:
    """Methods (rows) x problems (columns) of "mean ± CI half-width" strings.

    Cells name the diverged images ("(1/50 div.)"); a job with every image diverged
    shows "—". Rows and columns follow ``sort_rows``.
    """
    ordered = sort_rows(summary)
    problems = list(dict.fromkeys(ordered["problem"]))
    methods = sorted(dict.fromkeys(ordered["method"]), key=method_sort_key)
    grid = pd.DataFrame("", index=methods, columns=problems)
    for _, row in ordered.iterrows():
        grid.loc[row["method"], row["problem"]] = _cell(row, pm)
    return grid


def summary_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table: one row per method, one column per problem, PSNR in dB."""
    grid = summary_grid(summary)
    n_images = int(summary["n"].max()) if len(summary) else 0
    header = ["method", *(problem_label(p) for p in grid.columns)]
    lines = [
        f"PSNR (dB): mean ± 95% CI half-width (Student t) over up to {n_images} test images;",
        "diverged images are excluded from the mean and counted as (k/n div.).",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * len(grid.columns)) + " |",
    ]
    for method, cells in grid.iterrows():
        lines.append("| " + " | ".join([method_label(str(method)), *cells.tolist()]) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def _latex_label(text: str) -> str:
    return latex_escape(text).replace("ℓ2", r"$\ell_2$").replace("—", "---")


def summary_latex(summary: pd.DataFrame) -> str:
    """A booktabs ``table`` (needs ``\\usepackage{booktabs}``): methods x problems."""
    grid = summary_grid(summary, pm=r"$\pm$")
    n_cols = len(grid.columns)
    header = " & ".join(["Method", *(_latex_label(problem_label(p)) for p in grid.columns)])
    body = [
        " & ".join([_latex_label(method_label(str(method))), *map(_latex_cell, cells)]) + r" \\"
        for method, cells in grid.iterrows()
    ]
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"  \centering",
            r"  \caption{PSNR (dB) of the recovered test images: mean $\pm$ 95\% confidence"
            r" interval half-width (Student $t$); diverged images are excluded and counted.}",
            r"  \label{tab:psnr-summary}",
            r"  \begin{tabular}{l" + "r" * n_cols + "}",
            r"    \toprule",
            f"    {header} \\\\",
            r"    \midrule",
            *(f"    {line}" for line in body),
            r"    \bottomrule",
            r"  \end{tabular}",
            r"\end{table}",
        ]
    )


def _latex_cell(text: str) -> str:
    # Cells carry their own math ($\pm$); only the free text around it needs escaping.
    return text.replace("—", "---").replace("%", r"\%")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, ending in a newline) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def write_metrics_csv(metrics: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write the per-image table (atomically)."""
    with atomic_path(path) as tmp:
        metrics.to_csv(tmp, index=False)


def write_summary_csv(summary: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write the summary in long form with every number (atomically)."""
    with atomic_path(path) as tmp:
        summary.to_csv(tmp, index=False)


def write_summary_markdown(summary: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    write_text(path, summary_markdown(summary))


def write_summary_latex(summary: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    write_text(path, summary_latex(summary))


def read_summary_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``psnr_summary.csv`` back with the dtypes ``summarize`` produced."""
    return _read_table(path)


def read_metrics_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``metrics.csv`` back with the dtypes ``metrics_table`` produced (ids as text)."""
    return _read_table(path, image_id=str)


def _read_table(path: str | os.PathLike[str], **dtypes: type) -> pd.DataFrame:
    """A table CSV with text names, nullable-integer ``shots`` and ``replicate``, and None
    for no ``loss``. A table written before replicates existed (no ``replicate`` column)
    gets one: 1 where ``shots`` is given (every such model was replicate 1), <NA> elsewhere.
    """
    table = pd.read_csv(path, dtype={"problem": str, "method": str, "loss": object, **dtypes})
    table["shots"] = table["shots"].astype("Int64")
    if "replicate" in table:
        table["replicate"] = table["replicate"].astype("Int64")
    else:
        replicate = pd.array([1] * len(table), dtype="Int64")
        replicate[table["shots"].isna().to_numpy()] = pd.NA
        table.insert(table.columns.get_loc("shots") + 1, "replicate", replicate)
    table["loss"] = table["loss"].where(table["loss"].notna(), None)
    return table


def collect(
    recovery_paths: Iterable[str | os.PathLike[str]],
    metrics_csv: str | os.PathLike[str],
    summary_csv: str | os.PathLike[str],
    summary_md: str | os.PathLike[str],
    summary_tex: str | os.PathLike[str],
) -> pd.DataFrame:
    """Rule collect_metrics: read every recovery file, write the four tables; return the summary."""
    metrics = metrics_table(recovery_paths)
    summary = summarize(metrics)
    write_metrics_csv(metrics, metrics_csv)
    write_summary_csv(summary, summary_csv)
    write_summary_markdown(summary, summary_md)
    write_summary_latex(summary, summary_tex)
    n_diverged = int(summary["n_diverged"].sum())
    log.info(
        "%d images over %d (problem, method) jobs; %d diverged and left out of the means",
        len(metrics),
        len(summary),
        n_diverged,
    )
    if n_diverged:
        bad = summary.loc[summary["n_diverged"] > 0, ["problem", "method", "n_diverged", "n"]]
        log.warning("diverged images:\n%s", bad.to_string(index=False))
    return summary
