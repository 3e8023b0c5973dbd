"""The paper's claims, each tested as the paper words it, and a few beyond it.

``CLAIMS`` is the claims table: the only place in the package that names the paper's
methods, losses and problems. A claim is a declarative row (``Claim``): the paper's
sentence verbatim with its section, our operational reading (``statement``), what is
compared (``Arm``s), the test its wording asks for, the margin (a key of the config's
``claims`` section), its family and its scope (problems, ratios, losses, shot counts).
One engine (``check_claims``) reads every row the same way, so a new claim is a new row.

**Words to tests.** "superior", "improves", "beats", "surpasses", "does not fall prey"
→ superiority (``greater``: one-sided Wilcoxon signed-rank test that the pseudo-median of
the paired differences is > 0, and their mean > 0); "slightly better" → superiority and
an upper bound (``below``: mean < the equivalence margin); "not far behind" →
non-inferiority (``not_below``: mean > −margin); "comparable", "on par" → equivalence
(``within``: TOST, two one-sided t-tests, mean within ±margin); "clearly fail" → the
others beat it by more than a margin (``greater_by``: mean > margin); "continues to
improve" → ``steps``: every step S_k → S_k+1 of the shot grid non-inferior (mean >
−step margin) and the last step superior; "more steadily and consistently" →
``steadier``: each image's Kendall τ_a between S and PSNR is higher for MMD than for ℓ2
(superiority of τ_MMD − τ_ℓ2), and τ_MMD > 0. The t-based tests get the matching
(1 − 2α) two-sided interval (90 % at α = 0.05): its ends are the one-sided bounds.

**Rows, claims, families.** A claim expands into rows, one per compared unit (ratio,
loss, shot count, step): nothing is pooled over ratios or problems. A paper claim is an
intersection–union test over its rows: it holds only if every row passes, and its
p-value is the largest of its rows'. Holm's method runs over the claims of one family at
a time: the paper's claims are one family, the claims beyond the paper another (where
each row is a claim of its own), so optional methods never change a paper verdict. A row
passes when its own p-value, scaled by its claim's Holm step (``holm_rows``), is below α
and its effect (mean, and every replicate's mean) lies on the claimed side. A claim:

- "holds": every row passes;
- "does not hold": a measured row fails (not significant, the wrong side, or untestable:
  fewer than two pairs, no spread), whatever the other rows;
- "not measured": no row failed, but a row the claim needs lacks its method, loss, shot
  count or problem in the metrics (such a claim's measured rows still count in Holm's m).

**Units, replicates, divergence.** Values are paired on the test image of one problem.
With ``lowshot.replicates`` R ≥ 2 (column ``replicate`` of the metrics: R independent
shot subsets and seeds per (loss, S), methods fitted to no shots having none), a
difference is formed within each replicate (two fitted sides replicate by replicate, an
unfitted side against every replicate), the test runs over images on the per-image mean
over replicates, and a row passes only if every replicate's mean effect lies on the
claimed side as well. With R = 1 (or no ``replicate`` column) the verdicts are
conditional on one trained model per (loss, S), and ``claims_markdown`` says so. A
diverged image keeps the PSNR the recovery stored (its last finite iterate) and is
paired on it; a non-finite PSNR (never written by the recovery) counts as 0 dB, the
lowest PSNR an image in [0, 1] can have, so it ranks worst. ``n`` counts the pairs used.

**Wilcoxon, pinned.** Differences are rounded to 1e-6 (so float round-off neither splits
ties nor hides zeros); zeros stay in the ranking (Pratt). Without ties or zeros and n ≤
``EXACT_MAX`` (200): scipy's exact null distribution; otherwise, for n ≤
``PERMUTATION_MAX`` (16), the exact sign-flip distribution of Pratt's statistic
(``sign_flip_p``); else the normal approximation with tie correction (no continuity
correction). The ``test`` column names the one used.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from lowshot.io import atomic_path
from lowshot.tables import GROUP_COLUMNS, problem_sort_key, read_metrics_csv, write_text

log = logging.getLogger(__name__)

# ``check_claims``' columns, one row per compared unit of a claim: the claim (key, family,
# the paper's section and sentence, our operational statement), what the row compares and
# over how many model replicates and paired images, the mean effect with its (1 − 2α)
# t interval, the test, its p-value and Holm-adjusted p-value, whether the row passes,
# the claim's verdict and why.
CLAIM_COLUMNS: list[str] = [
    "claim", "family", "section", "sentence", "statement", "scope", "comparison",
    "replicates", "n", "effect_db", "ci_low", "ci_high", "ci_level", "test", "p_value",
    "p_adjusted", "row_result", "verdict", "detail",
]  # fmt: skip
# ``replicate`` is optional: a table written before replicates existed has none (every
# shot-fitted row is then replicate 1, ``replicate_column``).
REQUIRED_COLUMNS: tuple[str, ...] = (
    *(column for column in GROUP_COLUMNS if column != "replicate"),
    "image_id",
    "psnr",
    "diverged",
)
HOLDS, DOES_NOT_HOLD, NOT_MEASURED = "holds", "does not hold", "not measured"
PASSES, FAILS = "passes", "fails"
PAPER, BEYOND = "paper", "beyond the paper"
FAMILIES: tuple[str, ...] = (PAPER, BEYOND)
# The lowest PSNR an image in [0, 1] can have (MSE ≤ 1): a non-finite PSNR counts as it.
PSNR_FLOOR_DB = 0.0
# Differences are rounded to this before ranking (dB, or τ units).
RANK_RESOLUTION = 1e-6
# Largest n for scipy's exact Wilcoxon distribution (< 0.01 s at n = 200, 0.4 s at 500 on
# the 2-core dev machine), and for the exact sign-flip distribution with ties or zeros
# (2^n sign vectors: 8 MB at 16).
EXACT_MAX = 200
PERMUTATION_MAX = 16
# Replicate label of methods fitted to no shots (one result, paired with every replicate).
UNREPLICATED = 0

Test = Literal["greater", "greater_by", "not_below", "below", "within"]
Design = Literal["paired", "steps", "steadier"]
Ratios = Literal["all", "low", "high"]


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a method kind, with a fixed ``loss``/``shots`` or (None)
    the loss and shot count the claim's row enumerates, where the kind has them."""

    kind: str
    loss: str | None = None
    shots: int | None = None


@dataclass(frozen=True)
class Claim:
    """One claim: a declarative row that ``check_claims`` expands and tests.

    ``design``: "paired" (each arm of ``treatments`` minus ``control``, tested by each of
    ``tests``), "steps" (consecutive shot counts of ``treatments[0]``: "continues to
    improve") or "steadier" (Kendall τ of S and PSNR, ``losses[0]`` against
    ``losses[1]``). ``margin``: the key of the config's ``claims`` section whose value
    the margin tests use. Scope: ``problem_kind`` (None: every problem of the metrics),
    ``ratios`` ("low": m/n < ``high_ratio_min``, "high": ≥ it), ``losses`` (None: every
    loss the treatment has on the problem), shot counts in [``min_shots``,
    ``max_shots``] (an int, or a settings key) present in the metrics, plus the
    ``required_shots`` the sentence names. ``each_row``: every row is a claim of its
    own (a survey beyond the paper) instead of one intersection–union test.
    """

    key: str
    family: str
    section: str
    sentence: str
    statement: str
    design: Design = "paired"
    treatments: tuple[Arm, ...] = ()
    control: Arm | None = None
    tests: tuple[Test, ...] = ("greater",)
    margin: str | None = None
    problem_kind: str | None = None
    ratios: Ratios = "all"
    losses: tuple[str, ...] | None = ()
    min_shots: int | None = None
    max_shots: int | str | None = None
    required_shots: tuple[int, ...] = ()
    each_row: bool = False


# --- the claims table: the only place naming methods, losses and problems -----------

PAPER_LOSSES: tuple[str, ...] = ("mmd", "l2")  # Figure 1's two panels
CS, COLOR = "compressed_sensing", "colorization"
S3_CS = "§3 Experiments, Compressed Sensing"
S3_COLOR = "§3 Experiments, Colorization"
S1 = "§1 Introduction, Our contributions"
ABSTRACT = "Abstract"
LOWSHOT = Arm("lowshot")
MMD10, MMD100 = Arm("lowshot", "mmd", 10), Arm("lowshot", "mmd", 100)
UNTRAINED, CSGM, IAGAN = Arm("untrained"), Arm("csgm"), Arm("iagan")

SENTENCE_A = (
    "We note that as the number of shots increases, our method continues to improve and we"
    " see comparable performance between our method with only 100 shots and optimizing over"
    " the latent code space of a fully trained GAN."
)
SENTENCE_H = (
    "While the ℓ2 trained nets perform slightly better than the MMD trained nets for low"
    " numbers of shots, the MMD trained nets improve more steadily and consistently as the"
    " number of shots increases."
)
SENTENCE_J = (
    "While we expect IAGAN to be superior due to being trained with over 200,000 images, the"
    " MMD trained model’s performance with 100 images is not far behind."
)
SENTENCE_B = (
    "We show that our approach improves upon untrained neural networks in compressed sensing"
    " even with as few as 5 examples from the data distribution and exhibits improvements as"
    " the number of examples increases."
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        key="b",
        family=PAPER,
        section=S1,
        sentence=SENTENCE_B,
        statement=(
            "every low-shot model (MMD, ℓ2; S = 5 and every larger S) beats the untrained"
            " network at every m/n below {high_ratio_min:g}"
        ),
        treatments=(LOWSHOT,),
        control=UNTRAINED,
        problem_kind=CS,
        ratios="low",
        losses=PAPER_LOSSES,
        min_shots=5,
        required_shots=(5,),
    ),
    Claim(
        key="a",
        family=PAPER,
        section=S3_CS,
        sentence=SENTENCE_A,
        statement=(
            "at every m/n and for each loss, no step S_k → S_k+1 of the shot grid loses"
            " {step_margin_db:g} dB or more, and the last step gains"
        ),
        design="steps",
        treatments=(LOWSHOT,),
        margin="step_margin_db",
        problem_kind=CS,
        losses=PAPER_LOSSES,
    ),
    Claim(
        key="c",
        family=PAPER,
        section=S3_CS,
        sentence=SENTENCE_A,
        statement=(
            "each 100-shot model (MMD, ℓ2) is within ±{equivalence_margin_db:g} dB of CSGM (the"
            " trained GAN's latent space) at every m/n"
        ),
        treatments=(Arm("lowshot", shots=100),),
        control=CSGM,
        tests=("within",),
        margin="equivalence_margin_db",
        problem_kind=CS,
        losses=PAPER_LOSSES,
    ),
    Claim(
        key="h",
        family=PAPER,
        section=S3_CS,
        sentence=SENTENCE_H,
        statement=(
            "at every S ≤ {low_shots_max} and every m/n, ℓ2 − MMD (same S) is > 0 and below"
            ' {equivalence_margin_db:g} dB ("slightly")'
        ),
        treatments=(Arm("lowshot", "l2"),),
        control=Arm("lowshot", "mmd"),
        tests=("greater", "below"),
        margin="equivalence_margin_db",
        problem_kind=CS,
        max_shots="low_shots_max",
    ),
    Claim(
        key="i",
        family=PAPER,
        section=S3_CS,
        sentence=SENTENCE_H,
        statement=(
            "at every m/n, each image's Kendall τ between S and PSNR is higher for MMD than for"
            " ℓ2, and above 0 for MMD"
        ),
        design="steadier",
        treatments=(LOWSHOT,),
        problem_kind=CS,
        losses=("mmd", "l2"),
    ),
    Claim(
        key="j",
        family=PAPER,
        section=S3_CS,
        sentence=SENTENCE_J,
        statement="IAGAN beats the 100-shot MMD model at every m/n",
        treatments=(IAGAN,),
        control=MMD100,
        problem_kind=CS,
    ),
    Claim(
        key="k",
        family=PAPER,
        section=S3_CS,
        sentence=SENTENCE_J,
        statement=(
            "the 100-shot MMD model is less than {non_inferiority_margin_db:g} dB below IAGAN"
            " at every m/n"
        ),
        treatments=(MMD100,),
        control=IAGAN,
        tests=("not_below",),
        margin="non_inferiority_margin_db",
        problem_kind=CS,
    ),
    Claim(
        key="l",
        family=PAPER,
        section=S3_CS,
        sentence=(
            "We note that for higher numbers of measurements, the untrained neural network’s"
            " performance surpasses that of our 5 shot models."
        ),
        statement=(
            "the untrained network beats each 5-shot model (MMD, ℓ2) at every m/n ≥"
            " {high_ratio_min:g}"
        ),
        treatments=(UNTRAINED,),
        control=Arm("lowshot", shots=5),
        problem_kind=CS,
        ratios="high",
        losses=PAPER_LOSSES,
    ),
    Claim(
        key="m",
        family=PAPER,
        section=S3_COLOR,
        sentence=(
            "Untrained neural networks clearly fail in solving this type of problem since they"
            " have no prior information regarding the data distribution."
        ),
        statement=(
            "each method of Figure 2 with a learned prior (CSGM, IAGAN, 10-shot MMD) beats the"
            " untrained network by more than {clear_margin_db:g} dB"
        ),
        treatments=(CSGM, IAGAN, MMD10),
        control=UNTRAINED,
        tests=("greater_by",),
        margin="clear_margin_db",
        problem_kind=COLOR,
    ),
    Claim(
        key="e",
        family=PAPER,
        section=S3_COLOR,
        sentence=(
            "Note that even with only 10 previous examples, our model does not fall prey to the"
            " usual issues with using untrained neural networks for colorization."
        ),
        statement="the 10-shot MMD model beats the untrained network",
        treatments=(MMD10,),
        control=UNTRAINED,
        problem_kind=COLOR,
    ),
    Claim(
        key="n",
        family=PAPER,
        section=S3_COLOR,
        sentence=(
            "Our algorithm provides faithful image reconstructions that are even on par with a"
            " trained GAN."
        ),
        statement=(
            "the 10-shot MMD model is within ±{equivalence_margin_db:g} dB of CSGM (the trained"
            " GAN)"
        ),
        treatments=(MMD10,),
        control=CSGM,
        tests=("within",),
        margin="equivalence_margin_db",
        problem_kind=COLOR,
    ),
    # Beyond the paper: every problem, every low-shot model (loss and S), a claim per row.
    Claim(
        key="f",
        family=BEYOND,
        section="beyond the paper",
        sentence="",
        statement="each low-shot model beats learned regularisation (CS-DIP) at the same S",
        treatments=(LOWSHOT,),
        control=Arm("learned_reg"),
        losses=None,
        each_row=True,
    ),
    Claim(
        key="g",
        family=BEYOND,
        section="beyond the paper",
        sentence="",
        statement="each low-shot model beats the Deep Decoder",
        treatments=(LOWSHOT,),
        control=Arm("deep_decoder"),
        losses=None,
        each_row=True,
    ),
    Claim(
        key="o",
        family=BEYOND,
        section="beyond the paper",
        sentence="",
        statement="each low-shot model beats the untrained network",
        treatments=(LOWSHOT,),
        control=UNTRAINED,
        losses=None,
        each_row=True,
    ),
)

# The other sentences of the paper's results (§3) that compare, or describe a comparison,
# with why no row tests them; and the abstract's and §1's statements of results, with the
# rows that test them.
NOT_TESTED: tuple[tuple[str, str, str], ...] = (
    (
        S3_CS,
        "Figure 1 compares the average PSNR for each method at various compression ratios"
        " over 50 different test images and different loss functions.",
        "describes the figure; states no result",
    ),
    (
        S3_CS,
        "This is mainly due to the fact that we optimized the untrained neural network’s"
        " parameters for a longer period of time and with a higher learning rate than our"
        " low shot models in this easier setting.",
        "a cause, not a comparison of results: testing it needs the untrained network rerun"
        " with the low-shot models' steps and learning rate, which the pipeline does not do",
    ),
    (
        S3_COLOR,
        "We compare our model trained with 10 shots using the MMD loss to the various"
        " baselines in Figure 2.",
        "describes the figure; its comparisons are rows (e), (m), (n)",
    ),
    (
        S3_COLOR,
        "Our algorithm provides faithful image reconstructions that are even on par with a"
        " trained GAN.",
        '"faithful" is a judgement of the images, not a number: row (n) tests "on par"',
    ),
)
RESTATED: tuple[tuple[str, str, str], ...] = (
    (
        ABSTRACT,
        "Comparing to untrained neural networks that use no data, we show how one can"
        " pre-train a neural network with a few given examples to improve reconstruction"
        " results in compressed sensing and semantic image recovery problems such as"
        " colorization.",
        "(b), (e)",
    ),
    (
        ABSTRACT,
        "Our approach leads to improved reconstruction as the amount of available data"
        " increases and is on par with fully trained generative models, while requiring"
        " less than 1% of the data needed to train a generative model.",
        "(a), (c), (n); 100 of 200,000 images is the design, not a result",
    ),
    (S1, SENTENCE_B, '(b); "exhibits improvements as the number of examples increases": (a)'),
    (
        S1,
        "We also show that semantics can be learned from these few examples in problems such"
        " as colorization where untrained neural networks fail.",
        "(e), (m)",
    ),
    (
        S1,
        "With only 100 examples, our model’s performance is competitive with fully trained"
        " generative models.",
        "(c)",
    ),
)


# --- settings ------------------------------------------------------------------------


@functools.cache
def _defaults() -> tuple[tuple[str, Any], ...]:
    from lowshot.config import schema_defaults

    return tuple(schema_defaults("claims").items())


def default_settings() -> dict[str, Any]:
    """The schema's defaults of the config's ``claims`` section (read once)."""
    return dict(_defaults())


def claim_settings(
    settings: Mapping[str, Any] | None = None,
    *,
    alpha: float | None = None,
    margin_db: float | None = None,
) -> dict[str, Any]:
    """The config's ``claims`` section completed with the schema's defaults.

    ``alpha``/``margin_db`` (the equivalence margin), when given, override ``settings``.
    Raises ``ValueError`` for alpha outside (0, 1), a margin ≤ 0, a ratio outside (0, 1]
    or a shot count < 1.
    """
    resolved = {**default_settings(), **dict(settings or {})}
    if alpha is not None:
        resolved["alpha"] = alpha
    if margin_db is not None:
        resolved["equivalence_margin_db"] = margin_db
    if not 0 < resolved["alpha"] < 1:
        raise ValueError(f"check_claims: alpha must lie in (0, 1), got {resolved['alpha']}")
    margins = [key for key in resolved if key.endswith("_margin_db")]
    for key in margins:
        if not resolved[key] > 0:
            name = "margin_db" if key == "equivalence_margin_db" else key
            raise ValueError(f"check_claims: {name} must be > 0, got {resolved[key]}")
    if not 0 < resolved["high_ratio_min"] <= 1:
        raise ValueError(f"check_claims: high_ratio_min must lie in (0, 1], got {resolved}")
    if not resolved["low_shots_max"] >= 1:
        raise ValueError(f"check_claims: low_shots_max must be ≥ 1, got {resolved}")
    return resolved


# --- the metrics, indexed by job -----------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One model's results on one problem, as arrays over images × replicates.

    ``images``: (I,) sorted image ids; ``replicates``: (R,) labels (``UNREPLICATED``
    alone for a method fitted to no shots); ``psnr``: (I, R) dB, NaN where that
    replicate lacks the image, a non-finite PSNR replaced by ``PSNR_FLOOR_DB``;
    ``diverged``, ``floored``: (I, R) bool.
    """

    name: str
    images: np.ndarray
    replicates: tuple[int, ...]
    psnr: np.ndarray
    diverged: np.ndarray
    floored: np.ndarray


JobKey = tuple[str, str, "str | None", "int | None"]  # problem, kind, loss, shots


def replicate_column(metrics: pd.DataFrame) -> np.ndarray:
    """Each row's replicate label: the ``replicate`` column where it has one, else 1 for
    a method fitted to shots and ``UNREPLICATED`` for one fitted to none (an old metrics
    table without the column)."""
    fitted = metrics["shots"].notna().to_numpy()
    default = np.where(fitted, 1, UNREPLICATED)
    if "replicate" not in metrics.columns:
        return default
    given = pd.to_numeric(metrics["replicate"], errors="raise").to_numpy(dtype=np.float64)
    labels = np.where(np.isnan(given), default, given)
    if (labels[fitted] < 1).any():
        raise ValueError("check_claims: replicate labels must be ≥ 1")
    return np.where(fitted, labels, UNREPLICATED).astype(np.int64)


def index_jobs(metrics: pd.DataFrame) -> dict[JobKey, Job]:
    """``metrics`` grouped into ``Job``s by (problem, method kind, loss, shots).

    Raises ``ValueError`` naming the rows when a (problem, model, replicate, image)
    appears twice.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in metrics.columns]
    if missing:
        raise ValueError(f"check_claims: the metrics table lacks the columns {missing}")
    psnr = metrics["psnr"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame(
        {
            "problem": metrics["problem"].astype(str).to_numpy(),
            "kind": metrics["method_kind"].astype(str).to_numpy(),
            "loss": metrics["loss"].astype(object).where(metrics["loss"].notna(), "").to_numpy(),
            "shots": metrics["shots"].astype("Float64").fillna(-1).astype(np.int64).to_numpy(),
            "replicate": replicate_column(metrics),
            "method": metrics["method"].astype(str).to_numpy(),
            "image_id": metrics["image_id"].astype(str).to_numpy(),
            "psnr": np.where(np.isfinite(psnr), psnr, PSNR_FLOOR_DB),
            "floored": ~np.isfinite(psnr),
            "diverged": metrics["diverged"].to_numpy(dtype=bool) | ~np.isfinite(psnr),
        }
    )
    keys = ["problem", "kind", "loss", "shots"]
    repeated = frame.duplicated([*keys, "replicate", "image_id"], keep=False)
    if repeated.any():
        units = frame.loc[repeated, ["problem", "method", "image_id"]].to_string(index=False)
        raise ValueError(f"cannot pair images that appear more than once:\n{units}")
    jobs: dict[JobKey, Job] = {}
    for (problem, kind, loss, shots), rows in frame.groupby(keys, sort=False):
        images, row_of = np.unique(rows["image_id"].to_numpy(), return_inverse=True)
        replicates, col_of = np.unique(rows["replicate"].to_numpy(), return_inverse=True)
        tables = {}
        for column, empty in (("psnr", np.nan), ("diverged", False), ("floored", False)):
            table = np.full((images.size, replicates.size), empty)
            table[row_of, col_of] = rows[column].to_numpy()
            tables[column] = table
        name = str(rows["method"].to_numpy()[np.argmin(rows["replicate"].to_numpy())])
        key = (problem, kind, loss or None, None if shots < 0 else int(shots))
        jobs[key] = Job(name, images, tuple(int(r) for r in replicates), **tables)
    return jobs


@dataclass(frozen=True)
class Metrics:
    """The indexed metrics: jobs, and each problem's kind and ratio (NaN: none)."""

    jobs: dict[JobKey, Job]
    problems: dict[str, tuple[str, float]]

    @classmethod
    def build(cls, metrics: pd.DataFrame) -> Metrics:
        jobs = index_jobs(metrics)
        firsts = metrics.drop_duplicates("problem")
        problems = {
            str(row["problem"]): (str(row["problem_kind"]), float(row["ratio"]))
            for _, row in firsts.iterrows()
        }
        ordered = sorted(problems, key=problem_sort_key)
        return cls(jobs, {name: problems[name] for name in ordered})

    def kinds(self) -> set[str]:
        return {kind for _, kind, _, _ in self.jobs}

    def has_losses(self, kind: str) -> bool:
        return any(k == kind and loss is not None for _, k, loss, _ in self.jobs)

    def has_shots(self, kind: str) -> bool:
        return any(k == kind and shots is not None for _, k, _, shots in self.jobs)

    def models(self, problem: str, kind: str) -> list[tuple[str | None, int | None]]:
        """(loss, shots) of ``kind``'s jobs on ``problem``, sorted (loss order of
        ``PAPER_LOSSES`` first, then by S)."""
        found = {(loss, shots) for p, k, loss, shots in self.jobs if p == problem and k == kind}
        return sorted(found, key=lambda m: (loss_key(m[0]), m[1] or 0))

    def replicates(self) -> int:
        """The most replicates any job has (1 without replicated jobs)."""
        counts = [
            len(job.replicates) for job in self.jobs.values() if UNREPLICATED not in job.replicates
        ]
        return max(counts, default=1)


def loss_key(loss: str | None) -> tuple[int, str]:
    order = {name: i for i, name in enumerate(PAPER_LOSSES)}
    return (order.get(loss or "", len(order)), loss or "")


# --- pairing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Paired:
    """A row's values: ``values`` (n,) one per paired image, the mean over ``replicates``
    of the per-replicate differences (dB, or τ units); ``replicate_means`` (R,) the mean
    over the images of each replicate's difference; ``left_out``: images of either side
    not paired (missing on the other side or in a replicate); ``diverged``/``floored``:
    pairs with a diverged image (paired on its stored PSNR) / a non-finite PSNR counted
    as ``PSNR_FLOOR_DB``."""

    values: np.ndarray
    replicate_means: np.ndarray
    replicates: tuple[int, ...]
    left_out: int = 0
    diverged: int = 0
    floored: int = 0


def align(treatment: Job, control: Job | None) -> tuple[list[int], list[int]] | None:
    """Replicate labels of ``treatment`` and ``control`` to difference, position by
    position: replicate by replicate where both are fitted to shots (those both have),
    an unreplicated side against every replicate of the other. None: none in common."""
    t_reps = list(treatment.replicates)
    if control is None:
        return t_reps, []
    c_reps = list(control.replicates)
    if c_reps == [UNREPLICATED]:
        return t_reps, [UNREPLICATED] * len(t_reps)
    if t_reps == [UNREPLICATED]:
        return [UNREPLICATED] * len(c_reps), c_reps
    common = [r for r in t_reps if r in c_reps]
    return (common, common) if common else None


def pair(treatment: Job, control: Job | None) -> Paired | str:
    """``treatment`` − ``control`` per image and replicate (``control`` None: the
    treatment's values themselves); a str says why nothing pairs."""
    columns = align(treatment, control)
    if columns is None:
        return (
            f"{treatment.name} (replicates {list(treatment.replicates)}) and {control.name}"
            f" (replicates {list(control.replicates)}) share no replicate"
        )
    sides = [treatment] if control is None else [treatment, control]
    if control is None:
        union = treatment.images.size
        rows = [np.arange(treatment.images.size)]
    else:
        union = np.union1d(treatment.images, control.images).size
        _, t_rows, c_rows = np.intersect1d(
            treatment.images, control.images, assume_unique=True, return_indices=True
        )
        rows = [t_rows, c_rows]
    cols = [
        [job.replicates.index(r) for r in labels]
        for job, labels in zip(sides, columns, strict=False)
    ]
    psnr = [job.psnr[np.ix_(r, c)] for job, r, c in zip(sides, rows, cols, strict=True)]
    complete = np.logical_and.reduce([~np.isnan(table).any(axis=1) for table in psnr])
    difference = psnr[0][complete] - (psnr[1][complete] if control is not None else 0.0)
    flags = {
        name: np.logical_or.reduce(
            [
                getattr(job, name)[np.ix_(r, c)][complete].any(axis=1)
                for job, r, c in zip(sides, rows, cols, strict=True)
            ]
        )
        for name in ("diverged", "floored")
    }
    t_cols, c_cols = columns
    replicates = tuple(t_cols) if t_cols[0] != UNREPLICATED else tuple(c_cols or t_cols)
    used = int(complete.sum())
    return Paired(
        values=difference.mean(axis=1) if used else np.empty(0),
        replicate_means=difference.mean(axis=0) if used else np.full(len(t_cols), np.nan),
        replicates=replicates,
        left_out=union - used,
        diverged=int(flags["diverged"].sum()),
        floored=int(flags["floored"].sum()),
    )


def kendall_tau(psnr: np.ndarray) -> np.ndarray:
    """Kendall's τ_a between the column order (S ascending) and each row's PSNR.

    psnr: (N, K), K ≥ 2 -> (N,) in [−1, 1]: the mean over the K(K−1)/2 pairs of shot
    counts S_i < S_j of sign(PSNR_j − PSNR_i); 1 when PSNR rises at every step.
    """
    k = psnr.shape[1]
    i, j = np.triu_indices(k, 1)
    return np.sign(psnr[:, j] - psnr[:, i]).mean(axis=1)


def tau_job(jobs: Sequence[Job], name: str) -> Job | str:
    """A ``Job`` whose "PSNR" is each image's Kendall τ over ``jobs`` (one per shot count,
    ascending), per replicate (those every shot count has; NaN where an image lacks a
    shot count); a str says why not."""
    replicates = [r for r in jobs[0].replicates if all(r in job.replicates for job in jobs)]
    if not replicates:
        return f"the shot counts of {name} share no replicate"
    images = jobs[0].images
    for job in jobs[1:]:
        images = np.intersect1d(images, job.images, assume_unique=True)
    stacks = {}
    for column in ("psnr", "diverged", "floored"):
        stacks[column] = np.stack(
            [
                getattr(job, column)[np.ix_(np.searchsorted(job.images, images), cols)]
                for job, cols in ((j, [j.replicates.index(r) for r in replicates]) for j in jobs)
            ],
            axis=-1,
        )  # (I, R, K)
    psnr = stacks["psnr"]
    taus = kendall_tau(psnr.reshape(-1, psnr.shape[-1])).reshape(psnr.shape[:2])
    taus[np.isnan(psnr).any(axis=-1)] = np.nan
    return Job(
        name,
        images,
        tuple(replicates),
        taus,
        stacks["diverged"].astype(bool).any(axis=-1),
        stacks["floored"].astype(bool).any(axis=-1),
    )


# --- expanding a claim into rows -----------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One compared unit of a claim before its test: ``values`` None when not measured
    (``detail`` says why)."""

    scope: str
    comparison: str
    test: Test
    values: Paired | None
    detail: str = ""
    margin: float | None = None


def scope_label(loss: object = None, shots: object = None, where: str = "") -> str:
    """The scope of a row, e.g. "loss=l2, S=10, cs-0.01" (only the parts that apply)."""
    parts = [] if loss is None else [f"loss={loss}"]
    parts += [] if shots is None else [f"S={int(shots)}"]
    return ", ".join([*parts, where] if where else parts)


def model_name(kind: str, loss: str | None, shots: int | None) -> str:
    """The name a model of the claims has when the metrics lack it, e.g. lowshot-mmd-S10."""
    return "-".join([kind, *([loss] if loss else []), *([f"S{shots}"] if shots else [])])


def problems_in_scope(claim: Claim, data: Metrics, settings: Mapping[str, Any]) -> list[str]:
    """The metrics' problems a claim covers, in the tables' order."""
    high = settings["high_ratio_min"]
    kept = []
    for name, (kind, ratio) in data.problems.items():
        if claim.problem_kind is not None and kind != claim.problem_kind:
            continue
        if claim.ratios == "low" and not ratio < high:
            continue
        if claim.ratios == "high" and not ratio >= high:
            continue
        kept.append(name)
    return kept


def no_problem_detail(claim: Claim, settings: Mapping[str, Any]) -> str:
    ratios = {"all": "", "low": " with m/n < {:g}", "high": " with m/n ≥ {:g}"}[claim.ratios]
    return f"the metrics have no {claim.problem_kind} problem" + ratios.format(
        settings["high_ratio_min"]
    )


def shot_bounds(claim: Claim, settings: Mapping[str, Any]) -> tuple[int | None, int | None]:
    high = claim.max_shots
    return claim.min_shots, settings[high] if isinstance(high, str) else high


def rows_of(claim: Claim, data: Metrics, settings: Mapping[str, Any]) -> list[Row]:
    """The claim's rows on ``data``, problem by problem in the tables' order."""
    margin = settings[claim.margin] if claim.margin else None
    kinds = [arm.kind for arm in (*claim.treatments, claim.control) if arm is not None]
    absent = [kind for kind in dict.fromkeys(kinds) if kind not in data.kinds()]
    if absent and claim.problem_kind is None:
        detail = f"the metrics have no {' and '.join(absent)} rows"
        return [Row("every problem", label(claim), claim.tests[0], None, detail, margin)]
    problems = problems_in_scope(claim, data, settings)
    if not problems:
        detail = no_problem_detail(claim, settings)
        return [Row(str(claim.problem_kind), label(claim), claim.tests[0], None, detail, margin)]
    build = {"paired": paired_rows, "steps": step_rows, "steadier": steadier_rows}[claim.design]
    return [row for problem in problems for row in build(claim, data, problem, settings)]


def label(claim: Claim) -> str:
    """A claim's comparison in words, for its rows that cannot name a model."""
    if claim.design == "steps":
        return "consecutive shot counts"
    if claim.design == "steadier":
        return "Kendall τ of S and PSNR"
    treated = " / ".join(model_name(a.kind, a.loss, a.shots) for a in claim.treatments)
    return f"{treated} − {model_name(claim.control.kind, claim.control.loss, claim.control.shots)}"


def enumerated_models(
    claim: Claim, data: Metrics, problem: str, settings: Mapping[str, Any]
) -> list[tuple[str | None, int | None]]:
    """The (loss, S) the claim's rows enumerate on ``problem``: the losses it names (or
    every loss of the arm it enumerates), each with the shot counts in its bounds that
    the metrics have, plus ``required_shots``; [(None, None)] when no arm enumerates."""
    arms = [a for a in (*claim.treatments, claim.control) if a is not None]
    source = next((a for a in arms if a.loss is None and data.has_losses(a.kind)), None)
    shot_source = next((a for a in arms if a.shots is None and data.has_shots(a.kind)), None)
    if source is None and shot_source is None:
        return [(None, None)]
    low, high = shot_bounds(claim, settings)
    present = data.models(problem, (source or shot_source).kind)
    losses: list[str | None]
    if source is None:
        losses = [None]
    elif claim.losses is None:
        losses = list(dict.fromkeys(loss for loss, _ in present)) or [None]
    else:
        losses = list(claim.losses)
    models = []
    for loss in losses:
        if shot_source is None:
            models.append((loss, None))
            continue
        shots = {
            s
            for m_loss, s in present
            if s is not None
            and (source is None or m_loss == loss)
            and (low is None or s >= low)
            and (high is None or s <= high)
        }
        shots |= set(claim.required_shots)
        models += [(loss, s) for s in sorted(shots)] or [(loss, None)]
    return models


def resolve(
    arm: Arm, data: Metrics, loss: str | None, shots: int | None
) -> tuple[str, str | None, int | None]:
    """The (kind, loss, shots) of ``arm`` at an enumerated (loss, shots): its own where it
    fixes them, the enumerated ones where its kind has losses / shot counts."""
    return (
        arm.kind,
        arm.loss if arm.loss is not None else (loss if data.has_losses(arm.kind) else None),
        arm.shots if arm.shots is not None else (shots if data.has_shots(arm.kind) else None),
    )


def paired_rows(
    claim: Claim, data: Metrics, problem: str, settings: Mapping[str, Any]
) -> list[Row]:
    """Each treatment arm minus the control, at each enumerated (loss, S), by each test.

    A kind with no rows on ``problem`` gives one "not measured" row for the problem (for
    the control: the whole claim there; for a treatment arm: that arm)."""
    margin = settings[claim.margin] if claim.margin else None
    on_problem = {kind for p, kind, _, _ in data.jobs if p == problem}
    arms = [arm for arm in claim.treatments if arm.kind in on_problem]
    lacking = [arm.kind for arm in claim.treatments if arm.kind not in on_problem]
    if claim.control.kind not in on_problem or not arms:
        kinds = [claim.control.kind] if claim.control.kind not in on_problem else lacking
        detail = f"the metrics have no {' and '.join(dict.fromkeys(kinds))} rows on {problem}"
        return [Row(problem, label(claim), claim.tests[0], None, detail, margin)]
    rows = [
        Row(
            problem,
            f"{kind} − {claim.control.kind}",
            claim.tests[0],
            None,
            f"the metrics have no {kind} rows on {problem}",
            margin,
        )
        for kind in dict.fromkeys(lacking)
    ]
    for loss, shots in enumerated_models(claim, data, problem, settings):
        for arm in arms:
            keys = [(problem, *resolve(side, data, loss, shots)) for side in (arm, claim.control)]
            jobs = [data.jobs.get(key) for key in keys]
            names = [
                job.name if job is not None else model_name(*key[1:])
                for job, key in zip(jobs, keys, strict=True)
            ]
            losses = {key[2] for key in keys} - {None}
            counts = {key[3] for key in keys} - {None}
            scope = scope_label(
                losses.pop() if len(losses) == 1 else None,
                counts.pop() if len(counts) == 1 else None,
                problem,
            )
            missing = [name for job, name in zip(jobs, names, strict=True) if job is None]
            if missing:
                values, detail = (
                    None,
                    f"the metrics have no {' and '.join(missing)} rows on {problem}",
                )
            else:
                values, detail = as_values(pair(*jobs))
            for test in claim.tests:
                rows.append(Row(scope, f"{names[0]} − {names[1]}", test, values, detail, margin))
    return rows


def step_rows(claim: Claim, data: Metrics, problem: str, settings: Mapping[str, Any]) -> list[Row]:
    """Per loss: S_k+1 − S_k for each step of the shot grid the metrics have; inner steps
    non-inferior (``not_below`` the step margin), the last superior (``greater``)."""
    margin = settings[claim.margin]
    kind = claim.treatments[0].kind
    rows = []
    for loss in claim.losses:
        shots = [s for m_loss, s in data.models(problem, kind) if m_loss == loss and s]
        scope = scope_label(loss, None, problem)
        if len(shots) < 2:
            have = f"only S={shots[0]}" if shots else "no rows"
            detail = (
                f"the metrics have {have} of {model_name(kind, loss, None)} on {problem};"
                " a trend needs ≥ 2 shot counts"
            )
            rows.append(Row(scope, "consecutive shot counts", "greater", None, detail, margin))
            continue
        for k, (low, high) in enumerate(itertools.pairwise(shots)):
            last = k == len(shots) - 2
            jobs = [data.jobs[(problem, kind, loss, s)] for s in (high, low)]
            rows.append(
                Row(
                    scope_label(loss, None, problem),
                    f"S={low} → S={high}: {jobs[0].name} − {jobs[1].name}",
                    "greater" if last else "not_below",
                    *as_values(pair(*jobs)),
                    margin=None if last else margin,
                )
            )
    return rows


def as_values(values: Paired | str) -> tuple[Paired | None, str]:
    return (None, values) if isinstance(values, str) else (values, "")


def steadier_rows(
    claim: Claim, data: Metrics, problem: str, settings: Mapping[str, Any]
) -> list[Row]:
    """τ(first loss) − τ(second loss) > 0 and τ(first loss) > 0, over the shot counts both
    losses have (at least three)."""
    del settings
    kind = claim.treatments[0].kind
    first, second = claim.losses
    grids = [
        {s for m_loss, s in data.models(problem, kind) if m_loss == loss and s}
        for loss in (first, second)
    ]
    shots = sorted(grids[0] & grids[1])
    grid = f"S = {', '.join(map(str, shots))}" if shots else "no common S"
    comparisons = (f"τ({first}) − τ({second}), {grid}", f"τ({first}), {grid}")
    if len(shots) < 3:
        detail = (
            f"{first} and {second} share {len(shots)} shot count(s) on {problem}"
            f" ({grid}); steadiness needs ≥ 3"
        )
        return [Row(problem, c, "greater", None, detail) for c in comparisons]
    taus = [
        tau_job([data.jobs[(problem, kind, loss, s)] for s in shots], model_name(kind, loss, None))
        for loss in (first, second)
    ]
    if isinstance(taus[0], str) or isinstance(taus[1], str):
        why = taus[0] if isinstance(taus[0], str) else taus[1]
        return [Row(problem, c, "greater", None, why) for c in comparisons]
    return [
        Row(problem, comparisons[0], "greater", *as_values(pair(taus[0], taus[1]))),
        Row(problem, comparisons[1], "greater", *as_values(pair(taus[0], None))),
    ]


# --- tests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A row's test: ``p`` (NaN: untestable, ``why``), the test's name, and whether the
    effect (the mean, and every replicate's mean) lies on the claimed side (``wrong``:
    why not, "" when it does)."""

    p: float
    name: str
    why: str = ""
    wrong: str = ""


def resolution(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to ``RANK_RESOLUTION``: float round-off of a subtraction neither
    splits a tie nor turns a zero difference into a signed one."""
    return np.round(np.asarray(values, dtype=np.float64) / RANK_RESOLUTION) * RANK_RESOLUTION


def untestable(values: np.ndarray, test: Test) -> str:
    """Why ``values`` cannot be tested ("" when they can): fewer than two; all zero
    (Wilcoxon: no signed ranks); all equal (t-tests: no spread)."""
    if values.size < 2:
        return f"too few paired images to test (n={values.size})"
    rounded = resolution(values)
    if test == "greater" and np.all(rounded == 0):
        return "every paired difference is 0: no signed ranks to test"
    if test != "greater" and np.all(rounded == rounded[0]):
        return f"every paired difference is {values[0]:+.3g}: no spread for the t-test"
    return ""


def wilcoxon_greater(values: np.ndarray) -> tuple[float, str]:
    """One-sided Wilcoxon signed-rank p-value that the values' pseudo-median is > 0, and
    the method used (module docstring: exact, permutation or normal approximation).

    values: (n,) with n ≥ 2 and not all zero (``untestable`` is empty).
    """
    d = resolution(values)
    magnitudes = np.abs(d[d != 0])
    clean = d.size == magnitudes.size and np.unique(magnitudes).size == magnitudes.size
    if clean and d.size <= EXACT_MAX:
        p = stats.wilcoxon(d, alternative="greater", method="exact").pvalue
        return float(p), "exact"
    if d.size <= PERMUTATION_MAX:
        return sign_flip_p(d), "exact sign-flip permutation (ties or zeros)"
    p = stats.wilcoxon(d, alternative="greater", zero_method="pratt", method="asymptotic").pvalue
    return float(p), "normal approximation" + ("" if clean else ", tie-corrected")


def sign_flip_p(d: np.ndarray) -> float:
    """Exact one-sided p-value of Pratt's signed-rank statistic under sign flips.

    d: (n,) differences, n ≤ ``PERMUTATION_MAX``. The statistic is the sum of the
    mid-ranks of |d| (zeros ranked, then given no sign) over the positive d; the null
    distribution flips the sign of every non-zero d, all 2^k ways equally likely.
    """
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    signed = ranks[d != 0]
    flips = (np.arange(2**signed.size)[:, None] >> np.arange(signed.size)) & 1
    # Mid-ranks are multiples of 1/2: the sums are exact in floating point.
    return float(np.mean(flips @ signed >= observed))


def t_greater(values: np.ndarray, bound: float) -> float:
    """One-sided one-sample t-test p-value that the mean of ``values`` is > ``bound``."""
    return float(stats.ttest_1samp(values, bound, alternative="greater").pvalue)


def t_less(values: np.ndarray, bound: float) -> float:
    """One-sided one-sample t-test p-value that the mean of ``values`` is < ``bound``."""
    return float(stats.ttest_1samp(values, bound, alternative="less").pvalue)


def tost_paired(values: np.ndarray, margin: float) -> float:
    """TOST p-value that the mean of ``values`` lies within (−margin, margin): the larger
    of the two one-sided t-tests (mean > −margin, mean < margin)."""
    return max(t_greater(values, -margin), t_less(values, margin))


# The claimed side of each test: the bound the mean (and every replicate's) must pass.
SIDES: dict[Test, str] = {
    "greater": "> 0",
    "greater_by": "> +{m:g}",
    "not_below": "> −{m:g}",
    "below": "< +{m:g}",
    "within": "within ±{m:g}",
}
TEST_NAMES: dict[Test, str] = {
    "greater": "superiority: Wilcoxon signed-rank, one-sided (> 0)",
    "greater_by": "superiority by a margin: one-sided t-test (mean > +{m:g})",
    "not_below": "non-inferiority: one-sided t-test (mean > −{m:g})",
    "below": "upper bound: one-sided t-test (mean < +{m:g})",
    "within": "equivalence: TOST, two one-sided t-tests (mean within ±{m:g})",
}


def on_side(value: float, test: Test, margin: float | None) -> bool:
    """Whether a mean lies on the claimed side of ``test`` (``SIDES``)."""
    m = margin or 0.0
    return {
        "greater": value > 0,
        "greater_by": value > m,
        "not_below": value > -m,
        "below": value < m,
        "within": abs(value) < m,
    }[test]


def run_test(row: Row) -> Outcome:
    """``row``'s test on its per-image values, and the side of its effects."""
    values = row.values.values
    margin = row.margin
    name = TEST_NAMES[row.test].format(m=margin or 0.0)
    side = SIDES[row.test].format(m=margin or 0.0)
    wrong = ""
    if not on_side(float(values.mean()) if values.size else math.nan, row.test, margin):
        wrong = f"mean effect {values.mean():+.2f} is not {side}" if values.size else ""
    else:
        off = [
            f"r{r}: {m:+.2f}"
            for r, m in zip(row.values.replicates, row.values.replicate_means, strict=True)
            if not on_side(float(m), row.test, margin)
        ]
        if off:
            wrong = f"replicate mean(s) not {side}: {', '.join(off)}"
    why = untestable(values, row.test)
    if why:
        return Outcome(math.nan, name, why, wrong)
    if row.test == "greater":
        p, method = wilcoxon_greater(values)
        return Outcome(p, f"{name}, {method}", "", wrong)
    p = {
        "greater_by": lambda: t_greater(values, margin),
        "not_below": lambda: t_greater(values, -margin),
        "below": lambda: t_less(values, margin),
        "within": lambda: tost_paired(values, margin),
    }[row.test]()
    return Outcome(p, name, "", wrong)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m finite p-values sorted p_(1) ≤ ... ≤ p_(m): adjusted p_(i) =
    max over j ≤ i of min(1, (m - j + 1) p_(j)). NaN entries (untested) stay NaN and do
    not count in m.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (order.size - np.arange(order.size)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def holm_rows(
    unit_p: np.ndarray, row_unit: np.ndarray, row_p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Holm over claims that are intersection–union tests of rows, at the row level.

    unit_p: (U,) each claim's p-value (the largest of its rows'; NaN: untested);
    row_unit: (N,) each row's claim index; row_p: (N,) each row's p-value. Returns
    (adjusted, own), both (N,): ``own`` = min(1, (m − j + 1) p_row) with j its claim's
    Holm rank, and ``adjusted`` = max(a_prev, own) with a_prev the adjusted p-value of
    the claim ranked before it (0 for the first), Holm's step-down. The largest
    ``adjusted`` over a claim's rows is exactly ``holm(unit_p)`` of that claim, so a
    claim holds iff every row is below α. Rows of untested claims, and untested rows,
    get NaN.
    """
    unit_p = np.asarray(unit_p, dtype=np.float64)
    adjusted_units = holm(unit_p)
    tested = np.flatnonzero(np.isfinite(unit_p))
    order = tested[np.argsort(unit_p[tested], kind="stable")]
    factor = np.full(unit_p.shape, np.nan)
    previous = np.full(unit_p.shape, np.nan)
    factor[order] = order.size - np.arange(order.size)
    previous[order] = np.r_[0.0, adjusted_units[order][:-1]] if order.size else []
    row_unit = np.asarray(row_unit, dtype=np.int64)
    own = np.minimum(1.0, factor[row_unit] * np.asarray(row_p, dtype=np.float64))
    return np.maximum(previous[row_unit], own), own


# --- the engine ----------------------------------------------------------------------


def check_claims(
    metrics: pd.DataFrame,
    *,
    alpha: float | None = None,
    margin_db: float | None = None,
    settings: Mapping[str, Any] | None = None,
    claims: Sequence[Claim] = CLAIMS,
) -> pd.DataFrame:
    """Test ``claims`` (default: ``CLAIMS``) on a per-image metrics table.

    metrics: ``lowshot.tables.metrics_table`` (or ``read_metrics_csv``), with or without
    a ``replicate`` column; settings: the config's ``claims`` section (``claim_settings``
    fills the schema's defaults; ``alpha`` and ``margin_db``, the equivalence margin,
    override it). Returns ``CLAIM_COLUMNS``, one row per compared unit, in ``claims``
    order; ``attrs`` holds the settings and the replicate count (``claims_markdown``
    reads them).
    """
    resolved = claim_settings(settings, alpha=alpha, margin_db=margin_db)
    data = Metrics.build(metrics)
    records: list[dict[str, Any]] = []
    for claim in claims:
        rows = rows_of(claim, data, resolved)
        for index, row in enumerate(rows):
            unit = f"{claim.key}.{index}" if claim.each_row else claim.key
            records.append(record(claim, row, unit, resolved))
    table = pd.DataFrame.from_records(records)
    if table.empty:
        table = pd.DataFrame(columns=[*CLAIM_COLUMNS, "unit", "wrong", "measured"])
    table = judge(table, resolved["alpha"])
    table = table[CLAIM_COLUMNS].astype({"n": "int64", "replicates": "int64"})
    table.attrs.update(settings=resolved, replicates=data.replicates())
    return table


def record(claim: Claim, row: Row, unit: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A row's columns before Holm, with ``unit`` (its claim), ``wrong`` and ``measured``
    for ``judge``."""
    level = 1 - 2 * settings["alpha"]
    base = {
        "claim": claim.key,
        "family": claim.family,
        "section": claim.section,
        "sentence": claim.sentence,
        "statement": claim.statement.format(**settings),
        "scope": row.scope,
        "comparison": row.comparison,
        "replicates": 0,
        "n": 0,
        "effect_db": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "ci_level": level,
        "test": TEST_NAMES[row.test].format(m=row.margin or 0.0),
        "p_value": math.nan,
        "detail": row.detail,
        "unit": unit,
        "wrong": "",
        "measured": row.values is not None,
    }
    if row.values is None:
        return base
    values = row.values.values
    outcome = run_test(row)
    mean, half = interval(values, level)
    notes = [outcome.why] if outcome.why else []
    if len(row.values.replicates) > 1:
        means = ", ".join(
            f"r{r}: {m:+.2f}"
            for r, m in zip(row.values.replicates, row.values.replicate_means, strict=True)
        )
        notes.append(f"replicate means {means}")
    if row.values.diverged:
        notes.append(f"{row.values.diverged} pair(s) with a diverged image, on its stored PSNR")
    if row.values.floored:
        notes.append(f"{row.values.floored} non-finite PSNR(s) counted as {PSNR_FLOOR_DB:g} dB")
    if row.values.left_out:
        notes.append(f"{row.values.left_out} image(s) without a pair left out")
    return {
        **base,
        "replicates": len(row.values.replicates),
        "n": values.size,
        "effect_db": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "test": outcome.name,
        "p_value": outcome.p,
        "detail": "; ".join(notes),
        "wrong": outcome.wrong,
        "untestable": bool(outcome.why),
    }


def interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """(mean, half-width) of the two-sided Student-t interval at ``level`` (NaN where
    undefined: no values for the mean, fewer than two for the half-width)."""
    if values.size == 0:
        return math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan
    se = float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, float(stats.t.ppf(0.5 + level / 2, df=values.size - 1) * se)


def judge(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Holm per family over the claims (``unit``), then each row's result and each
    claim's verdict (module docstring)."""
    table = table.copy()
    if "untestable" not in table.columns:
        table["untestable"] = False
    table["untestable"] = table["untestable"].fillna(False).astype(bool)
    table["p_adjusted"] = math.nan
    table["p_own"] = math.nan
    for family in FAMILIES:
        rows = table.index[table["family"] == family]
        if rows.empty:
            continue
        part = table.loc[rows]
        units = list(dict.fromkeys(part["unit"]))
        unit_p = []
        for unit in units:
            mine = part[part["unit"] == unit]
            # An untestable row fails its claim whatever the others; the others still
            # get their Holm step (the claim counts in m: conservative for the rest).
            tested = mine[mine["measured"] & ~mine["untestable"]]
            unit_p.append(float(tested["p_value"].max()) if not tested.empty else math.nan)
        where = {unit: i for i, unit in enumerate(units)}
        adjusted, own = holm_rows(
            np.asarray(unit_p),
            part["unit"].map(where).to_numpy(),
            part["p_value"].to_numpy(dtype=np.float64),
        )
        table.loc[rows, "p_adjusted"] = adjusted
        table.loc[rows, "p_own"] = own
    results, details = zip(*(row_result(row, alpha) for _, row in table.iterrows()), strict=True)
    table["row_result"] = list(results) if len(table) else []
    table["detail"] = list(details) if len(table) else []
    verdicts = {unit: verdict(rows) for unit, rows in table.groupby("unit", sort=False)}
    table["verdict"] = table["unit"].map(verdicts)
    return table


def row_result(row: pd.Series, alpha: float) -> tuple[str, str]:
    """(result, detail) of one row: "passes", "fails" or "not measured"."""
    detail = str(row["detail"])
    if not row["measured"]:
        return NOT_MEASURED, detail
    if row["untestable"]:
        return FAILS, detail
    n, p = int(row["n"]), float(row["p_adjusted"])
    notes = [detail] if detail else []
    if row["wrong"]:
        return FAILS, "; ".join([str(row["wrong"]), *notes])
    if p < alpha:
        return PASSES, "; ".join([f"Holm p = {p:.3g} < α = {alpha:g} at n={n}", *notes])
    why = f"not significant at n={n} (Holm p = {p:.3g} ≥ α = {alpha:g})"
    own = float(row["p_own"])
    if own < alpha:
        why = (
            f"not significant at n={n}: its own p at its claim's Holm step is {own:.3g}, but"
            f" the step-down stops at a claim ranked before (Holm p = {p:.3g} ≥ α = {alpha:g})"
        )
    if str(row["test"]).startswith("superiority: Wilcoxon") and 0.5**n >= alpha:
        why += f"; a one-sided Wilcoxon test of {n} pairs cannot go below p = {0.5**n:.3g}"
    return FAILS, "; ".join([why, *notes])


def verdict(rows: pd.DataFrame) -> str:
    """A claim's verdict from its rows' results (module docstring)."""
    results = set(rows["row_result"])
    if FAILS in results:
        return DOES_NOT_HOLD
    return NOT_MEASURED if NOT_MEASURED in results else HOLDS


# --- rendering -----------------------------------------------------------------------


def effect_cell(row: pd.Series) -> str:
    """ "+1.23 [+0.80, +1.66]" (mean and its (1 − 2α) interval), "+1.23" without an
    interval, "—" without a mean."""
    if not np.isfinite(row["effect_db"]):
        return "—"
    text = f"{row['effect_db']:+.2f}"
    if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
        text += f" [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    return text


def p_cell(value: float) -> str:
    """A p-value to three significant digits, "—" when there is none."""
    return f"{value:.3g}" if np.isfinite(value) else "—"


def scope_line(replicates: int) -> str:
    """What the verdicts are conditional on, from the replicate count."""
    if replicates <= 1:
        return (
            "Scope: verdicts are conditional on one trained model per (loss, S)"
            " (`lowshot.replicates: 1`): a p-value is about these test images, not about"
            " another draw of the shots, the initial weights or the seeds."
        )
    return (
        f"Scope: {replicates} independent replicates per (loss, S) (shot subsets and seeds,"
        " `lowshot.replicates`): each row tests, over the test images, the per-image mean"
        " over the replicates, and passes only if every replicate's mean effect lies on"
        " the claimed side too."
    )


def claims_markdown(claims: pd.DataFrame, settings: Mapping[str, Any] | None = None) -> str:
    """A Markdown report of ``check_claims``' table: the scope line, how the claims are
    tested, then per family each claim (its sentence, reading, verdict and rows), the
    sentences not tested and why, and the abstract's restatements.

    ``settings`` default to ``claims.attrs`` (set by ``check_claims``).
    """
    settings = claims.attrs.get("settings") if settings is None else settings
    if settings is None:
        raise ValueError("claims_markdown: pass the settings (no check_claims attrs)")
    alpha = settings["alpha"]
    level = 1 - 2 * alpha
    lines = [
        scope_line(int(claims.attrs.get("replicates", 1))),
        "",
        f'Each claim is tested as the paper words it (README, "How the claims are'
        f' tested"): rows per m/n, loss and S, never pooled. A paper claim holds only if'
        f" every row passes (intersection–union); Holm's correction at α = {alpha:g} runs"
        f" over the claims of one family: {family_counts(claims)}. Margins (ours):"
        f' "comparable"/"on par" ±{settings["equivalence_margin_db"]:g} dB,'
        f' "slightly" < {settings["equivalence_margin_db"]:g} dB,'
        f' "not far behind" {settings["non_inferiority_margin_db"]:g} dB, a step of S may'
        f' lose < {settings["step_margin_db"]:g} dB, "clearly" >'
        f' {settings["clear_margin_db"]:g} dB; "higher numbers of measurements" m/n ≥'
        f' {settings["high_ratio_min"]:g}, "low numbers of shots" S ≤'
        f" {settings['low_shots_max']}.",
        f"Effect: mean paired PSNR difference in dB (claim (i): Kendall τ) [{level:.0%}"
        " Student-t interval]; n = paired test images; a diverged image is paired on its"
        " stored PSNR; p (Holm) = the row's p at its claim's Holm step.",
    ]
    header = ["scope", "comparison", "n", "effect", "p", "p (Holm)", "row", "test", "detail"]
    for family in FAMILIES:
        part = claims[claims["family"] == family]
        lines += ["", f"## {'The paper' if family == PAPER else 'Beyond the paper'}"]
        for key, rows in part.groupby("claim", sort=False):
            first = rows.iloc[0]
            lines.append("")
            if family == PAPER:
                verdict_text = f"**{first['verdict']}**"
                lines += [
                    f"### ({key}) {verdict_text} — {first['section']}",
                    f"> {first['sentence']}",
                    "",
                    f"Tested: {first['statement']}.{claim_p_text(rows)}",
                ]
            else:
                counts = rows["verdict"].value_counts()
                summary = ", ".join(f"{count}× {name}" for name, count in counts.items())
                lines.append(f"### ({key}) {first['statement']}: {summary} (a claim per row)")
            lines += [
                "",
                "| " + " | ".join(header) + " |",
                "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
            ]
            for _, row in rows.iterrows():
                result = row["row_result"] if family == PAPER else row["verdict"]
                cells = [
                    row["scope"],
                    row["comparison"],
                    str(row["n"]),
                    effect_cell(row),
                    p_cell(row["p_value"]),
                    p_cell(row["p_adjusted"]),
                    f"**{result}**" if result in (PASSES, HOLDS) else result,
                    row["test"],
                    row["detail"],
                ]
                lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Sentences of the paper's results not tested", ""]
    lines += [f"- {section}: “{sentence}” — {why}." for section, sentence, why in NOT_TESTED]
    lines += ["", "## The abstract's and §1's statements of results", ""]
    lines += [
        f"- {section}: “{sentence}” — tested as {rows}." for section, sentence, rows in RESTATED
    ]
    return "\n".join(lines) + "\n"


def claim_p_text(rows: pd.DataFrame) -> str:
    """ " Claim p = … (its largest row p), Holm p = …" for a tested claim, else ""."""
    tested = rows[np.isfinite(rows["p_adjusted"].to_numpy(dtype=np.float64))]
    if tested.empty:
        return ""
    return (
        f" Claim p = {tested['p_value'].max():.3g} (its largest row p), Holm p ="
        f" {tested['p_adjusted'].max():.3g}."
    )


def family_counts(claims: pd.DataFrame) -> str:
    """ "the paper's 11 claims (4 tested), 3 beyond it (12 rows, 5 tested)"."""
    texts = []
    for family in FAMILIES:
        part = claims[claims["family"] == family]
        tested = part.loc[np.isfinite(part["p_adjusted"].to_numpy(dtype=np.float64)), "claim"]
        if family == PAPER:
            texts.append(
                f"the paper's {part['claim'].nunique()} claims ({tested.nunique()} tested)"
            )
        else:
            texts.append(f"{len(part)} claims beyond it, one per row ({len(tested)} tested)")
    return "; ".join(texts)


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
    settings: Mapping[str, Any] | None = None,
    alpha: float | None = None,
    margin_db: float | None = None,
) -> pd.DataFrame:
    """Rule check_claims: metrics.csv -> claims.csv and claims.md; return the table."""
    claims = check_claims(
        read_metrics_csv(metrics_csv), settings=settings, alpha=alpha, margin_db=margin_db
    )
    write_claims_csv(claims, claims_csv)
    write_claims_markdown(claims, claims_md)
    verdicts = claims.drop_duplicates("claim")[["family", "verdict"]]
    counts = verdicts[verdicts["family"] == PAPER]["verdict"].value_counts()
    log.info(
        "%d claim rows; the paper's claims: %s",
        len(claims),
        ", ".join(f"{count} {verdict}" for verdict, count in counts.items()),
    )
    return claims
