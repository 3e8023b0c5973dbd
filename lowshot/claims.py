"""The paper's claims (Leong & Sakla, §3), and two beyond it, as paired tests over the
test images.

``CLAIMS`` is the claims table: the only place in the package that names the paper's
methods, losses and problems, and the methods of the claims beyond the paper (low-shot
against learned regularisation at the same S, and against the Deep Decoder, on every
problem the metrics hold). Each entry turns the per-image metrics table
(``lowshot.tables.metrics_table``, one row per problem, method and image) into
``Comparison`` rows: one value per test image (a paired PSNR difference in dB, or for a
trend the image's least-squares slope of PSNR against log2 S). ``check_claims`` tests
every row (one-sided Wilcoxon signed-rank, or TOST for "comparable"), adjusts the
p-values with Holm's method over every tested row and gives each a verdict:

- "holds": Holm-adjusted p < alpha and the mean effect in the claimed direction;
- "does not hold": measured, but not significant, the wrong direction, or untestable
  (fewer than two pairs, no spread): ``detail`` says which;
- "not measured": the metrics lack a method, loss, shot count or problem the row needs
  (those rows have no p-value and do not count in the correction).

Images are paired on (problem, image); a diverged image (``lowshot.tables.excluded``) is
left out of every comparison it takes part in, on both sides.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from lowshot.io import atomic_path
from lowshot.tables import (
    GROUP_COLUMNS,
    excluded,
    method_sort_key,
    paired_differences,
    problem_sort_key,
    read_metrics_csv,
    t_interval,
    unit_psnr,
    write_text,
)

log = logging.getLogger(__name__)

# ``check_claims``' columns, one row per (claim, scope): what is compared, over ``n`` paired
# images, the mean effect (dB) with its 95% Student-t interval, the test, its p-value and
# Holm-adjusted p-value, the verdict and why.
CLAIM_COLUMNS: list[str] = [
    "claim", "statement", "scope", "comparison", "n", "effect_db", "ci_low", "ci_high",
    "test", "p_value", "p_adjusted", "verdict", "detail",
]  # fmt: skip
REQUIRED_COLUMNS: tuple[str, ...] = (*GROUP_COLUMNS, "image_id", "psnr", "diverged")
HOLDS, DOES_NOT_HOLD, NOT_MEASURED = "holds", "does not hold", "not measured"
WILCOXON = "Wilcoxon signed-rank, one-sided (> 0)"
TOST = "TOST: two one-sided paired t-tests"
Test = Literal["wilcoxon", "tost"]


@dataclass(frozen=True)
class Comparison:
    """One row of the claims table before its test.

    ``values``: (n,) float64, one per paired test image (dB, or dB per doubling of S for a
    trend); None when the row cannot be measured (``detail`` says why). ``left_out``:
    test images of the compared methods not in ``values`` (diverged or unpaired).
    """

    scope: str
    comparison: str
    values: np.ndarray | None
    detail: str = ""
    left_out: int = 0


@dataclass(frozen=True)
class PairedClaim:
    """``treatment`` minus ``control`` (method kinds) on ``problem_kind``'s test images.

    One row per treatment method (e.g. per loss and shot count). ``test="wilcoxon"``:
    the difference is > 0; ``"tost"``: it lies within ± the equivalence margin.
    ``min_shots``/``max_shots``: keep the treatment methods whose shot count is in that
    range; ``lowest_ratio``: only the problem of the kind with the smallest ratio.
    ``expected_losses``: losses the claim is made for; one with no treatment method
    gives a "not measured" row.
    """

    letter: str
    statement: str
    treatment: str
    control: str
    problem_kind: str
    test: Test = "wilcoxon"
    min_shots: int | None = None
    max_shots: int | None = None
    lowest_ratio: bool = False
    expected_losses: tuple[str, ...] = ()

    def comparisons(self, metrics: pd.DataFrame) -> list[Comparison]:
        """The claim's rows on ``metrics`` (a metrics table with normalised flags)."""
        problems = problem_rows(metrics, self.problem_kind, self.lowest_ratio)
        where = problems_label(problems, self.problem_kind)
        treatment = select_shots(
            problems[problems["method_kind"] == self.treatment], self.min_shots, self.max_shots
        )
        control = problems[problems["method_kind"] == self.control]
        methods = sorted(treatment["method"].unique(), key=method_sort_key)
        rows = [
            paired_row(treatment[treatment["method"] == method], control, self.control, where)
            for method in methods
        ]
        present = set(treatment["loss"].dropna())
        if self.expected_losses:
            missing = [loss for loss in self.expected_losses if loss not in present]
        else:
            missing = [None] if treatment.empty else []
        return rows + [self.not_measured(loss, where, not problems.empty) for loss in missing]

    def not_measured(self, loss: str | None, where: str, has_problem: bool) -> Comparison:
        """The "not measured" row of an expected loss (None: of the kind) with no method."""
        model = self.treatment + ("" if loss is None else f"-{loss}")
        shots = shots_phrase(self.min_shots, self.max_shots)
        if has_problem:
            why = f"the metrics have no {model} rows{shots} on {where}"
        else:
            why = f"the metrics have no {self.problem_kind} problem"
        return Comparison(scope_label(loss, None, where), f"{model} − {self.control}", None, why)


@dataclass(frozen=True)
class TrendClaim:
    """PSNR of ``method_kind``'s models rises with their shot count, per loss.

    Per (problem, image) of ``problem_kind``: the least-squares slope of PSNR against
    log2 S over that loss's shot counts (``log2_slopes``); the test is that the mean
    slope is > 0. ``expected_losses`` as in ``PairedClaim``.
    """

    letter: str
    statement: str
    method_kind: str
    problem_kind: str
    expected_losses: tuple[str, ...] = ()
    test: Test = "wilcoxon"

    def comparisons(self, metrics: pd.DataFrame) -> list[Comparison]:
        """One row per loss (the expected ones, then any other in ``metrics``)."""
        problems = problem_rows(metrics, self.problem_kind, lowest_ratio=False)
        where = problems_label(problems, self.problem_kind)
        models = problems[problems["method_kind"] == self.method_kind]
        losses = list(self.expected_losses)
        losses += [loss for loss in models["loss"].dropna().unique() if loss not in losses]
        return [
            trend_row(models[models["loss"] == loss], f"{self.method_kind}-{loss}", loss, where)
            for loss in losses
        ]


@dataclass(frozen=True)
class PerProblemClaim:
    """``treatment`` minus ``control`` (method kinds) on every problem of the metrics,
    whatever its kind: one row per problem and treatment method (per loss and shot count).

    ``same_shots``: each treatment method is paired with the control method of its own
    shot count (lowshot-mmd-S10 with learned_reg-S10); a shot count the control lacks on
    a problem gives a "not measured" row. Otherwise every control method of the problem
    is the control (a kind without shot counts has one). A kind absent from the whole
    metrics (a method the config does not run) gives one "not measured" row, scope
    "every problem"; otherwise the problems without treatment or control rows share one
    "not measured" row per missing kind.
    """

    letter: str
    statement: str
    treatment: str
    control: str
    same_shots: bool = False
    test: Test = "wilcoxon"

    def comparisons(self, metrics: pd.DataFrame) -> list[Comparison]:
        """The claim's rows on ``metrics`` (a metrics table with normalised flags), problem
        by problem in the tables' order, then the "not measured" rows."""
        absent = [
            k for k in (self.treatment, self.control) if not metrics["method_kind"].eq(k).any()
        ]
        if absent:
            detail = f"the metrics have no {' and '.join(absent)} rows"
            return [Comparison("every problem", self.label, None, detail)]
        names = sorted(metrics["problem"].unique(), key=problem_sort_key)
        rows: list[Comparison] = []
        lacking: dict[str, list[str]] = {}
        for problem in names:
            here = metrics[metrics["problem"] == problem]
            treatment = here[here["method_kind"] == self.treatment]
            control = here[here["method_kind"] == self.control]
            sides = {self.treatment: treatment, self.control: control}
            missing = [kind for kind, kept in sides.items() if kept.empty]
            if missing:
                lacking.setdefault(" and ".join(missing), []).append(problem)
                continue
            for method in sorted(treatment["method"].unique(), key=method_sort_key):
                rows.append(self.row(treatment[treatment["method"] == method], control, problem))
        for kinds, where in lacking.items():
            scope = ", ".join(where)
            detail = f"the metrics have no {kinds} rows on {scope}"
            rows.append(Comparison(scope, self.label, None, detail))
        return rows

    @property
    def label(self) -> str:
        """The comparison of the "not measured" rows, e.g. "lowshot − deep_decoder"."""
        return f"{self.treatment} − {self.control}" + (" (same S)" if self.same_shots else "")

    def row(self, treatment: pd.DataFrame, control: pd.DataFrame, problem: str) -> Comparison:
        """One treatment method's rows against ``control`` on ``problem``."""
        if not self.same_shots:
            return paired_row(treatment, control, self.control, problem)
        first = treatment.iloc[0]
        shots = first["shots"]
        matched = control[control["shots"].astype("Float64").eq(shots).fillna(False).to_numpy()]
        if matched.empty:
            at = "no shot count" if _missing(shots) else f"S={int(shots)}"
            return Comparison(
                scope_label(first["loss"], shots, problem),
                f"{first['method']} − {self.control} ({at})",
                None,
                f"the metrics have no {self.control} rows with {at} on {problem}",
            )
        return paired_row(treatment, matched, self.control, problem)


# --- the claims table: the paper's §3 and beyond it, the only place naming methods --

PAPER_LOSSES: tuple[str, ...] = ("mmd", "l2")  # Figure 1's two panels
CLAIMS: tuple[PairedClaim | TrendClaim | PerProblemClaim, ...] = (
    TrendClaim(
        "a",
        "PSNR rises with the number of shots S",
        method_kind="lowshot",
        problem_kind="compressed_sensing",
        expected_losses=PAPER_LOSSES,
    ),
    PairedClaim(
        "b",
        "every S ≥ 5 beats the untrained network at the lowest compression ratio",
        treatment="lowshot",
        control="untrained",
        problem_kind="compressed_sensing",
        min_shots=5,
        lowest_ratio=True,
        expected_losses=PAPER_LOSSES,
    ),
    PairedClaim(
        "c",
        "100 shots is comparable to CSGM",
        treatment="lowshot",
        control="csgm",
        problem_kind="compressed_sensing",
        test="tost",
        min_shots=100,
        max_shots=100,
        expected_losses=PAPER_LOSSES,
    ),
    *(
        PairedClaim(
            "d",
            "IAGAN is at least as good as CSGM",
            treatment="iagan",
            control="csgm",
            problem_kind=kind,
        )
        for kind in ("compressed_sensing", "colorization")
    ),
    PairedClaim(
        "e",
        "colorization: the low-shot models beat the untrained network",
        treatment="lowshot",
        control="untrained",
        problem_kind="colorization",
        expected_losses=PAPER_LOSSES,
    ),
    # Beyond the paper: every problem, every low-shot model (loss and S).
    PerProblemClaim(
        "f",
        "beyond the paper: low-shot beats learned regularisation (CS-DIP) at the same S",
        treatment="lowshot",
        control="learned_reg",
        same_shots=True,
    ),
    PerProblemClaim(
        "g",
        "beyond the paper: low-shot beats the Deep Decoder",
        treatment="lowshot",
        control="deep_decoder",
    ),
)


# --- building the rows ---------------------------------------------------------------


def problem_rows(metrics: pd.DataFrame, problem_kind: str, lowest_ratio: bool) -> pd.DataFrame:
    """Rows of ``problem_kind``'s problems; only the smallest-ratio one if ``lowest_ratio``."""
    rows = metrics[metrics["problem_kind"] == problem_kind]
    if lowest_ratio and not rows.empty:
        rows = rows[rows["ratio"] == rows["ratio"].min()]
    return rows


def select_shots(rows: pd.DataFrame, low: int | None, high: int | None) -> pd.DataFrame:
    """Rows whose ``shots`` lie in [low, high] (either bound None: open on that side)."""
    shots = rows["shots"].astype("Float64")
    keep = pd.Series(True, index=rows.index)
    if low is not None:
        keep &= (shots >= low).fillna(False)
    if high is not None:
        keep &= (shots <= high).fillna(False)
    return rows[keep.astype(bool)]


def shots_phrase(low: int | None, high: int | None) -> str:
    """The shot range of a "not measured" detail: " with S=100", " with S ≥ 5" or ""."""
    if low is not None and low == high:
        return f" with S={low}"
    bounds = [f"S ≥ {low}" if low is not None else "", f"S ≤ {high}" if high is not None else ""]
    text = " and ".join(bound for bound in bounds if bound)
    return f" with {text}" if text else ""


def problems_label(rows: pd.DataFrame, problem_kind: str) -> str:
    """The problem a row covers ("cs-0.01"), or "k <kind> problems" when it pools k."""
    names = list(dict.fromkeys(rows["problem"]))
    if len(names) == 1:
        return str(names[0])
    return f"{len(names)} {problem_kind} problems" if names else problem_kind


def scope_label(loss: object, shots: object, where: str) -> str:
    """The scope of a row, e.g. "loss=l2, S=10, cs-0.01" (only the parts that apply)."""
    parts = [] if _missing(loss) else [f"loss={loss}"]
    parts += [] if _missing(shots) else [f"S={int(shots)}"]
    return ", ".join([*parts, where])


def _missing(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def image_count(*frames: pd.DataFrame) -> int:
    """Distinct test images over ``frames``, diverged rows included."""
    return int(pd.concat([frame["image_id"] for frame in frames]).nunique())


def paired_row(
    treatment: pd.DataFrame, control: pd.DataFrame, control_kind: str, where: str
) -> Comparison:
    """Treatment (one method's rows) minus control (``control_kind``'s rows) per image."""
    first = treatment.iloc[0]
    scope = scope_label(first["loss"], first["shots"], where)
    if control.empty:
        why = f"the metrics have no {control_kind} rows on {where}"
        return Comparison(scope, f"{first['method']} − {control_kind}", None, why)
    differences = per_image(paired_differences(treatment, control))
    controls = " + ".join(sorted(control["method"].unique(), key=method_sort_key))
    return Comparison(
        scope,
        f"{first['method']} − {controls}",
        differences,
        left_out=image_count(treatment, control) - differences.size,
    )


def per_image(values: pd.Series) -> np.ndarray:
    """One value per test image: the mean over the problems that pool it (the same image
    recovered at several ratios is one unit, not several independent ones)."""
    return values.groupby(level="image_id").mean().to_numpy(dtype=np.float64)


def log2_slopes(psnr: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``psnr`` against log2 ``shots``.

    psnr: (N, K) dB, one row per image; shots: (K,) distinct positive shot counts, K ≥ 2.
    Returns (N,) dB per doubling of S.
    """
    x = np.log2(np.asarray(shots, dtype=np.float64))
    if x.size < 2 or np.unique(x).size != x.size:
        raise ValueError(f"log2_slopes needs at least two distinct shot counts, got {shots}")
    centred = x - x.mean()
    return np.asarray(psnr, dtype=np.float64) @ centred / float(centred @ centred)


def trend_row(models: pd.DataFrame, family: str, loss: str, where: str) -> Comparison:
    """A trend row of one loss's models (``family``, e.g. "lowshot-mmd", names them):
    per-image slopes over the images that every shot count recovered."""
    shots = sorted(int(s) for s in models["shots"].dropna().unique())
    comparison = "slope of PSNR vs log2 S" + (
        f" (S = {', '.join(map(str, shots))})" if shots else ""
    )
    scope = scope_label(loss, None, where)
    if len(shots) < 2:
        have = f"only S={shots[0]}" if shots else "no rows"
        detail = f"the metrics have {have} of {family} on {where}; a trend needs ≥ 2 shot counts"
        return Comparison(scope, comparison, None, detail)
    by_shots = [unit_psnr(models[models["shots"] == s]) for s in shots]
    table = pd.concat(by_shots, axis=1, join="inner", keys=shots)
    slopes = pd.Series(log2_slopes(table.to_numpy(), np.asarray(shots)), index=table.index)
    values = per_image(slopes)
    return Comparison(scope, comparison, values, left_out=image_count(models) - values.size)


# --- tests ---------------------------------------------------------------------------


def untestable(values: np.ndarray, test: Test) -> str:
    """Why ``values`` cannot be tested by ``test`` ("" when they can): fewer than two,
    all zero (Wilcoxon: no signed ranks), or all equal (TOST: the t statistics are
    undefined)."""
    if values.size < 2:
        return f"too few paired images to test (n={values.size})"
    if test == "wilcoxon" and np.all(values == 0):
        return "every paired difference is 0: no signed ranks to test"
    if test == "tost" and np.all(values == values[0]):
        return f"every paired difference is {values[0]:+.3g} dB: no spread for the t-tests"
    return ""


def wilcoxon_greater(values: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value for values located above 0 (zeros dropped).

    Call only on testable values (``untestable`` is empty).
    """
    return float(stats.wilcoxon(values, alternative="greater").pvalue)


def tost_paired(values: np.ndarray, margin: float) -> float:
    """TOST p-value that the mean of ``values`` lies within (-margin, margin).

    Two one-sided one-sample t-tests (mean > -margin, mean < margin); the p-value is the
    larger of the two. Call only on testable values.
    """
    above = stats.ttest_1samp(values, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(values, margin, alternative="less").pvalue
    return float(max(above, below))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m finite p-values sorted p_(1) ≤ ... ≤ p_(m): adjusted p_(i) =
    max over j ≤ i of min(1, (m - j + 1) p_(j)). NaN entries (untested rows) stay NaN and
    do not count in m.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (order.size - np.arange(order.size)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def run_test(comparison: Comparison, test: Test, margin_db: float) -> dict[str, object]:
    """One comparison's columns (scope ... p_value, detail), with ``measured`` and
    ``left_out`` for ``judge``: effect and CI from ``t_interval``, p from ``test``."""
    name = TOST + f" (±{margin_db:g} dB)" if test == "tost" else WILCOXON
    row: dict[str, object] = {
        "scope": comparison.scope,
        "comparison": comparison.comparison,
        "test": name,
        "n": 0,
        "effect_db": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "detail": comparison.detail,
        "measured": comparison.values is not None,
        "left_out": comparison.left_out,
    }
    values = comparison.values
    if values is None:
        return row
    mean, _, half = t_interval(values)
    row.update(n=values.size, effect_db=mean, ci_low=mean - half, ci_high=mean + half)
    reason = untestable(values, test)
    if reason:
        row["detail"] = reason
    elif test == "tost":
        row["p_value"] = tost_paired(values, margin_db)
    else:
        row["p_value"] = wilcoxon_greater(values)
    return row


def judge(row: pd.Series, test: Test, alpha: float, margin_db: float) -> tuple[str, str]:
    """(verdict, detail) of a tested row from its adjusted p-value and effect."""
    if not row["measured"]:
        return NOT_MEASURED, str(row["detail"])
    if not np.isfinite(row["p_value"]):
        return DOES_NOT_HOLD, str(row["detail"])
    effect, n, p_adjusted = row["effect_db"], int(row["n"]), row["p_adjusted"]
    if test == "tost":
        direction = abs(effect) < margin_db
        wrong = f"mean difference {effect:+.2f} dB lies outside ±{margin_db:g} dB"
    else:
        direction = effect > 0
        wrong = f"mean effect {effect:+.2f} is not above 0"
    if not direction:
        return DOES_NOT_HOLD, wrong
    if p_adjusted < alpha:
        return HOLDS, f"Holm-adjusted p = {p_adjusted:.3g} < α = {alpha:g} at n={n}"
    detail = f"not significant at n={n} (Holm-adjusted p = {p_adjusted:.3g} ≥ α = {alpha:g})"
    if test == "wilcoxon" and 0.5**n >= alpha:
        detail += f"; a one-sided Wilcoxon test of {n} pairs cannot go below p = {0.5**n:.3g}"
    return DOES_NOT_HOLD, detail


def normalised(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` with every ``excluded`` row flagged ``diverged``; checks the columns."""
    missing = [column for column in REQUIRED_COLUMNS if column not in metrics.columns]
    if missing:
        raise ValueError(f"check_claims: the metrics table lacks the columns {missing}")
    return metrics.assign(diverged=excluded(metrics).to_numpy())


def check_claims(
    metrics: pd.DataFrame,
    *,
    alpha: float,
    margin_db: float,
    claims: Sequence[PairedClaim | TrendClaim | PerProblemClaim] = CLAIMS,
) -> pd.DataFrame:
    """Test ``claims`` (default: ``CLAIMS``) on a per-image metrics table.

    metrics: ``lowshot.tables.metrics_table`` (or ``read_metrics_csv``); alpha in (0, 1):
    the level after Holm's correction; margin_db > 0: the equivalence margin of TOST
    claims. Returns ``CLAIM_COLUMNS``, one row per (claim, scope), in ``claims`` order;
    ``attrs`` holds alpha and margin_db (``claims_markdown`` reads them).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"check_claims: alpha must lie in (0, 1), got {alpha}")
    if not margin_db > 0:
        raise ValueError(f"check_claims: margin_db must be > 0, got {margin_db}")
    flagged = normalised(metrics)
    rows, tests = [], []
    for claim in claims:
        for comparison in claim.comparisons(flagged):
            rows.append(
                {
                    "claim": claim.letter,
                    "statement": claim.statement,
                    **run_test(comparison, claim.test, margin_db),
                }
            )
            tests.append(claim.test)
    table = pd.DataFrame(rows, columns=[*CLAIM_COLUMNS, "measured", "left_out"])
    table["p_adjusted"] = holm(table["p_value"].to_numpy(dtype=np.float64))
    judged = [
        judge(row, test, alpha, margin_db)
        for (_, row), test in zip(table.iterrows(), tests, strict=True)
    ]
    table["verdict"] = [verdict for verdict, _ in judged]
    table["detail"] = [
        detail + (f"; {left} image(s) left out (diverged or unpaired)" if left else "")
        for (_, detail), left in zip(judged, table["left_out"], strict=True)
    ]
    table = table[CLAIM_COLUMNS].astype({"n": "int64"})
    table.attrs.update(alpha=alpha, margin_db=margin_db)
    return table


# --- rendering -----------------------------------------------------------------------


def effect_cell(row: pd.Series) -> str:
    """ "+1.23 ± 0.45" (mean ± 95% CI half-width), "+1.23" without a CI, "—" without a mean."""
    if not np.isfinite(row["effect_db"]):
        return "—"
    half = (row["ci_high"] - row["ci_low"]) / 2
    return f"{row['effect_db']:+.2f}" + (f" ± {half:.2f}" if np.isfinite(half) else "")


def p_cell(value: float) -> str:
    """A p-value to three significant digits, "—" when there is none."""
    return f"{value:.3g}" if np.isfinite(value) else "—"


def claims_markdown(
    claims: pd.DataFrame, *, alpha: float | None = None, margin_db: float | None = None
) -> str:
    """A Markdown report: a header line (alpha, margin, correction), the statements, then
    one table row per row of ``claims`` (``check_claims``' output).

    alpha/margin_db default to ``claims.attrs`` (set by ``check_claims``).
    """
    alpha = claims.attrs.get("alpha") if alpha is None else alpha
    margin_db = claims.attrs.get("margin_db") if margin_db is None else margin_db
    if alpha is None or margin_db is None:
        raise ValueError("claims_markdown: pass alpha and margin_db (no check_claims attrs)")
    n_tested = int(np.isfinite(claims["p_adjusted"].to_numpy(dtype=np.float64)).sum())
    statements = dict(zip(claims["claim"], claims["statement"], strict=True))
    header = ["claim", "scope", "comparison", "n", "effect (dB)", "p", "p (Holm)", "verdict"]
    lines = [
        f"Claims (the paper's §3, and beyond it) as paired tests over the test images:"
        f" α = {alpha:g} after Holm's"
        f' correction over the {n_tested} tested rows; "comparable" = mean paired'
        f" difference within ±{margin_db:g} dB (TOST).",
        "Effect: mean paired PSNR difference in dB (claim a: mean per-image slope in dB per"
        " doubling of S) ± 95% Student-t CI half-width; n = paired test images.",
        "",
        *(f"- ({letter}) {statement}" for letter, statement in statements.items()),
        "",
        "| " + " | ".join([*header, "test", "detail"]) + " |",
        "| "
        + " | ".join(["---", "---", "---", "---:", "---:", "---:", "---:"])
        + " | --- | --- | --- |",
    ]
    for _, row in claims.iterrows():
        cells = [
            f"({row['claim']})",
            row["scope"],
            row["comparison"],
            str(row["n"]),
            effect_cell(row),
            p_cell(row["p_value"]),
            p_cell(row["p_adjusted"]),
            f"**{row['verdict']}**" if row["verdict"] == HOLDS else row["verdict"],
            row["test"],
            row["detail"],
        ]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def write_claims_csv(claims: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write the claims table with every number (atomically)."""
    with atomic_path(path) as tmp:
        claims.to_csv(tmp, index=False)


def write_claims_markdown(claims: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``claims_markdown`` (atomically)."""
    write_text(path, claims_markdown(claims))


def check_claims_files(
    metrics_csv: str | os.PathLike[str],
    claims_csv: str | os.PathLike[str],
    claims_md: str | os.PathLike[str],
    *,
    alpha: float,
    margin_db: float,
) -> pd.DataFrame:
    """Rule check_claims: metrics.csv -> claims.csv and claims.md; return the table."""
    claims = check_claims(read_metrics_csv(metrics_csv), alpha=alpha, margin_db=margin_db)
    write_claims_csv(claims, claims_csv)
    write_claims_markdown(claims, claims_md)
    counts = claims["verdict"].value_counts()
    log.info(
        "%d claim rows: %s",
        len(claims),
        ", ".join(f"{count} {verdict}" for verdict, count in counts.items()),
    )
    return claims
