"""The paper's claims as paired tests, on synthetic metrics tables with known effects."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowshot import claims, summary, tables
from lowshot.methods import parse_method
from lowshot.problems import parse_problem

N = 12
IMAGES = [f"{i:06d}.jpg" for i in range(N)]
# How hard each test image is (dB), and a per-image wobble of mean zero: differences
# between methods are never constant, so the tests have a spread to work with.
BASE = 20 + 2 * np.sin(np.arange(N))
WOBBLE = 0.3 * np.cos(3 * np.arange(N))
WOBBLE = WOBBLE - WOBBLE.mean()
ALPHA, MARGIN = 0.05, 1.0


def job(
    problem: str, method: str, psnr: np.ndarray | float, diverged: list[int] = ()
) -> pd.DataFrame:
    """Metrics rows of one (problem, method) over the N test images (``METRIC_COLUMNS``).

    ``psnr`` is added to ``BASE``; the images at the positions ``diverged`` are flagged.
    """
    the_problem, the_method = parse_problem(problem), parse_method(method)
    values = BASE + np.broadcast_to(np.asarray(psnr, dtype=np.float64), (N,))
    flags = np.zeros(N, dtype=bool)
    flags[list(diverged)] = True
    return pd.DataFrame(
        {
            "problem": problem,
            "problem_kind": the_problem.kind,
            "ratio": the_problem.ratio if the_problem.ratio is not None else math.nan,
            "method": method,
            "method_kind": the_method.kind,
            "loss": the_method.loss,
            "shots": pd.array([the_method.shots] * N, dtype="Int64"),
            "image_id": IMAGES,
            "psnr": values,
            "ssim": values / 100,
            "measurement_loss": 0.5,
            "diverged": flags,
            "iterations": 10,
            "restarts": 1,
            "seconds": 0.25,
            "seed": np.arange(N),
            "noise_std": 0.0,
        }
    )[tables.METRIC_COLUMNS]


def check(*jobs: pd.DataFrame, margin_db: float = MARGIN) -> pd.DataFrame:
    return claims.check_claims(pd.concat(jobs, ignore_index=True), alpha=ALPHA, margin_db=margin_db)


def rows(table: pd.DataFrame, claim: str, scope: str | None = None) -> pd.DataFrame:
    selected = table[table["claim"] == claim]
    if scope is not None:
        selected = selected[selected["scope"].str.startswith(scope)]
    assert len(selected) > 0, (claim, scope, table[["claim", "scope"]])
    return selected


def one(table: pd.DataFrame, claim: str, scope: str) -> pd.Series:
    selected = rows(table, claim, scope)
    assert len(selected) == 1, selected
    return selected.iloc[0]


# --- (a) PSNR rises with S -----------------------------------------------------------


def trend_jobs(slope: float, shots=(5, 10, 100), loss="mmd") -> list[pd.DataFrame]:
    """lowshot-<loss>-S<s> on two CS problems with PSNR = BASE + slope log2 S + wobble."""
    return [
        job(problem, f"lowshot-{loss}-S{s}", slope * math.log2(s) + WOBBLE * (k - 1))
        for problem in ("cs-0.1", "cs-0.3")
        for k, s in enumerate(shots)
    ]


def test_a_holds_when_psnr_rises_with_log_shots():
    table = check(*trend_jobs(slope=1.0))
    mmd = one(table, "a", "loss=mmd")
    assert mmd["verdict"] == claims.HOLDS
    assert mmd["n"] == N  # images: one unit each, averaged over the two ratios
    assert mmd["effect_db"] == pytest.approx(1.0, abs=0.2)
    assert mmd["ci_low"] < mmd["effect_db"] < mmd["ci_high"]
    assert "5, 10, 100" in mmd["comparison"]


def test_a_does_not_hold_when_psnr_falls_with_shots():
    mmd = one(check(*trend_jobs(slope=-1.0)), "a", "loss=mmd")
    assert mmd["verdict"] == claims.DOES_NOT_HOLD
    assert mmd["effect_db"] < 0
    assert "not above 0" in mmd["detail"]


def test_a_is_not_measured_with_one_shot_count_or_a_missing_loss():
    table = check(*trend_jobs(slope=1.0, shots=(10,)))
    mmd, l2 = one(table, "a", "loss=mmd"), one(table, "a", "loss=l2")
    assert mmd["verdict"] == l2["verdict"] == claims.NOT_MEASURED
    assert "only S=10" in mmd["detail"] and "no rows" in l2["detail"]
    assert math.isnan(mmd["p_value"]) and mmd["n"] == 0


def test_a_drops_an_image_that_diverged_at_some_shot_count_of_every_problem():
    jobs = trend_jobs(slope=1.0)
    # Jobs 1 and 4 are S=10 at cs-0.1 and cs-0.3: image 3 has a huge PSNR, flagged.
    jobs[1] = job("cs-0.1", "lowshot-mmd-S10", 99.0, diverged=[3])
    jobs[4] = job("cs-0.3", "lowshot-mmd-S10", 99.0, diverged=[3])
    mmd = one(check(*jobs), "a", "loss=mmd")
    assert mmd["n"] == N - 1
    assert "1 image(s) left out" in mmd["detail"]


def test_log2_slopes_is_the_least_squares_slope():
    shots = np.array([5, 10, 100])
    psnr = np.stack([3 * np.log2(shots) + 7, np.array([1.0, 0.0, 2.0])])
    expected = np.polyfit(np.log2(shots), psnr[1], 1)[0]
    assert claims.log2_slopes(psnr, shots) == pytest.approx([3.0, expected])
    with pytest.raises(ValueError, match="two distinct shot counts"):
        claims.log2_slopes(psnr[:, :1], shots[:1])


# --- (b) every S >= 5 beats the untrained network at the lowest ratio ----------------


def lowest_ratio_jobs(gain: float) -> list[pd.DataFrame]:
    """Low-shot models ``gain`` dB above the untrained network at cs-0.01, far below at
    cs-0.3 (which (b) must ignore), plus an S=2 model that (b) must leave out."""
    return [
        job("cs-0.01", "untrained", 0.0),
        job("cs-0.3", "untrained", 0.0),
        *(job("cs-0.01", f"lowshot-l2-S{s}", gain + WOBBLE) for s in (2, 5, 10)),
        *(job("cs-0.3", f"lowshot-l2-S{s}", -5.0 + WOBBLE) for s in (2, 5, 10)),
    ]


def test_b_holds_for_every_model_above_the_untrained_network_at_the_lowest_ratio():
    table = check(*lowest_ratio_jobs(gain=2.0))
    measured = rows(table, "b", "loss=l2")
    assert list(measured["scope"]) == ["loss=l2, S=5, cs-0.01", "loss=l2, S=10, cs-0.01"]
    assert (measured["verdict"] == claims.HOLDS).all()
    assert measured["effect_db"].to_numpy() == pytest.approx([2.0, 2.0])
    assert (measured["n"] == N).all()
    assert list(measured["comparison"]) == [
        "lowshot-l2-S5 − untrained",
        "lowshot-l2-S10 − untrained",
    ]
    assert one(table, "b", "loss=mmd")["verdict"] == claims.NOT_MEASURED


@pytest.mark.parametrize("gain", [0.0, -1.0])
def test_b_does_not_hold_without_an_effect_or_against_it(gain: float):
    measured = rows(check(*lowest_ratio_jobs(gain=gain)), "b", "loss=l2")
    assert (measured["verdict"] == claims.DOES_NOT_HOLD).all()
    assert measured["effect_db"].to_numpy() == pytest.approx([gain, gain], abs=1e-9)


def test_b_is_not_measured_without_the_untrained_network():
    jobs = [j for j in lowest_ratio_jobs(gain=2.0) if j["method"].iat[0] != "untrained"]
    measured = rows(check(*jobs), "b", "loss=l2")
    assert (measured["verdict"] == claims.NOT_MEASURED).all()
    assert measured["detail"].str.contains("no untrained rows").all()


# --- (c) 100 shots is comparable to CSGM (TOST) --------------------------------------


def csgm_jobs(offset: float, shots: int = 100, loss: str = "mmd") -> list[pd.DataFrame]:
    """CSGM and a low-shot model ``offset`` dB apart (plus the wobble) on two CS problems."""
    return [
        job(problem, method, psnr)
        for problem in ("cs-0.1", "cs-0.3")
        for method, psnr in (("csgm", 0.0), (f"lowshot-{loss}-S{shots}", offset + WOBBLE))
    ]


def test_c_holds_within_the_margin_and_not_outside_it():
    within = one(check(*csgm_jobs(offset=0.2)), "c", "loss=mmd")
    assert within["verdict"] == claims.HOLDS
    assert within["n"] == N
    assert within["test"].startswith("TOST") and "±1 dB" in within["test"]
    outside = one(check(*csgm_jobs(offset=-3.0)), "c", "loss=mmd")
    assert outside["verdict"] == claims.DOES_NOT_HOLD
    assert "outside ±1 dB" in outside["detail"]
    wide = one(check(*csgm_jobs(offset=-3.0), margin_db=5.0), "c", "loss=mmd")
    assert wide["verdict"] == claims.HOLDS


def test_c_is_not_measured_without_a_100_shot_model():
    table = check(*csgm_jobs(offset=0.2, shots=10))
    for loss in claims.PAPER_LOSSES:
        row = one(table, "c", f"loss={loss}")
        assert row["verdict"] == claims.NOT_MEASURED
        assert "S=100" in row["detail"]


def test_c_without_spread_in_the_differences_does_not_hold():
    # lowshot - csgm = 0.5 dB on every image exactly
    row = one(
        check(job("cs-0.1", "csgm", 0.0), job("cs-0.1", "lowshot-mmd-S100", 0.5)), "c", "loss=mmd"
    )
    assert row["verdict"] == claims.DOES_NOT_HOLD and math.isnan(row["p_value"])
    assert "no spread" in row["detail"]
    assert row["effect_db"] == pytest.approx(0.5)


def test_tost_p_value_is_the_larger_one_sided_t_test():
    values = np.array([0.1, 0.5, -0.2, 0.3, 0.0, 0.4])
    mean, se = values.mean(), values.std(ddof=1) / math.sqrt(values.size)
    from scipy import stats

    lower = stats.t.sf((mean + 1.0) / se, df=values.size - 1)
    upper = stats.t.cdf((mean - 1.0) / se, df=values.size - 1)
    assert claims.tost_paired(values, 1.0) == pytest.approx(max(lower, upper))
    assert claims.tost_paired(values + 5, 1.0) > 0.5


# --- (d) IAGAN >= CSGM, (e) colorization ---------------------------------------------


def test_d_has_one_row_per_problem_kind_with_its_own_verdict():
    table = check(
        job("cs-0.1", "csgm", 0.0),
        job("cs-0.3", "csgm", 0.0),
        job("cs-0.1", "iagan", 1.0 + WOBBLE),
        job("cs-0.3", "iagan", 1.0 + WOBBLE),
        job("colorization", "csgm", 0.0),
        job("colorization", "iagan", -1.0 + WOBBLE),
    )
    cs = one(table, "d", "2 compressed_sensing problems")
    assert (cs["verdict"], cs["n"]) == (claims.HOLDS, N)
    colorization = one(table, "d", "colorization")
    assert colorization["verdict"] == claims.DOES_NOT_HOLD
    assert colorization["effect_db"] == pytest.approx(-1.0)


def test_d_is_not_measured_without_iagan():
    table = check(job("cs-0.1", "csgm", 0.0), job("colorization", "csgm", 0.0))
    assert set(rows(table, "d")["verdict"]) == {claims.NOT_MEASURED}
    assert len(rows(table, "d")) == 2


def test_e_tests_every_low_shot_model_on_colorization():
    table = check(
        job("colorization", "untrained", 0.0),
        job("colorization", "lowshot-mmd-S10", 3.0 + WOBBLE),
        job("colorization", "lowshot-l2-S10", WOBBLE),
    )
    assert one(table, "e", "loss=mmd")["verdict"] == claims.HOLDS
    assert one(table, "e", "loss=l2")["verdict"] == claims.DOES_NOT_HOLD
    assert rows(table, "e")["scope"].str.endswith("colorization").all()


def test_without_colorization_e_is_not_measured():
    table = check(job("cs-0.1", "untrained", 0.0), job("cs-0.1", "lowshot-mmd-S10", 2.0))
    assert set(rows(table, "e")["verdict"]) == {claims.NOT_MEASURED}
    assert rows(table, "e")["detail"].str.contains("no colorization problem").all()


# --- (f) low-shot beats learned regularisation at the same S, (g) the Deep Decoder ---


def learned_reg_jobs(gains: dict[int, float]) -> list[pd.DataFrame]:
    """lowshot-mmd-S<s> ``gains[s]`` dB above learned_reg-S<s> on a CS problem and on
    colorization; the learned regularisation of the other shot counts is 10 dB above
    (a wrong pairing would show)."""
    return [
        job(problem, method, psnr)
        for problem in ("cs-0.1", "colorization")
        for s, gain in gains.items()
        for method, psnr in (
            (f"learned_reg-S{s}", 10.0 * (s != min(gains))),
            (f"lowshot-mmd-S{s}", gain + 10.0 * (s != min(gains)) + WOBBLE),
        )
    ]


def test_f_pairs_every_low_shot_model_with_the_learned_regularisation_of_its_s():
    table = check(*learned_reg_jobs({5: 2.0, 10: -1.0}))
    f = rows(table, "f")
    assert list(f["scope"]) == [
        "loss=mmd, S=5, cs-0.1",
        "loss=mmd, S=10, cs-0.1",
        "loss=mmd, S=5, colorization",
        "loss=mmd, S=10, colorization",
    ]
    assert list(f["comparison"][:2]) == [
        "lowshot-mmd-S5 − learned_reg-S5",
        "lowshot-mmd-S10 − learned_reg-S10",
    ]
    assert list(f["verdict"]) == [claims.HOLDS, claims.DOES_NOT_HOLD] * 2
    assert f["effect_db"].to_numpy() == pytest.approx([2.0, -1.0, 2.0, -1.0])
    assert (f["n"] == N).all()
    assert "not above 0" in f["detail"].iat[1]


def test_f_is_not_measured_without_learned_regularisation_or_at_a_missing_s():
    absent = rows(check(job("cs-0.1", "lowshot-mmd-S10", 1.0), job("cs-0.1", "untrained", 0)), "f")
    assert list(absent["scope"]) == ["every problem"]
    assert absent["verdict"].iat[0] == claims.NOT_MEASURED
    assert absent["detail"].iat[0] == "the metrics have no learned_reg rows"
    assert math.isnan(absent["p_value"].iat[0])
    jobs = learned_reg_jobs({5: 2.0, 10: 2.0})
    # No learned_reg-S10 on cs-0.1; no learned regularisation at all on colorization.
    kept = [
        j
        for j in jobs
        if not (j["method"].iat[0] == "learned_reg-S10" and j["problem"].iat[0] == "cs-0.1")
        and not (j["method_kind"].iat[0] == "learned_reg" and j["problem"].iat[0] != "cs-0.1")
    ]
    f = rows(check(*kept), "f")
    missing_s = one(f, "f", "loss=mmd, S=10, cs-0.1")
    assert missing_s["verdict"] == claims.NOT_MEASURED
    assert "no learned_reg rows with S=10 on cs-0.1" in missing_s["detail"]
    assert one(f, "f", "loss=mmd, S=5, cs-0.1")["verdict"] == claims.HOLDS
    colorization = one(f, "f", "colorization")
    assert colorization["verdict"] == claims.NOT_MEASURED
    assert colorization["detail"] == "the metrics have no learned_reg rows on colorization"


def deep_decoder_jobs(gain: float) -> list[pd.DataFrame]:
    """The Deep Decoder and two low-shot models (MMD 10 shots ``gain`` dB above it, ℓ2
    5 shots ``gain`` dB below) on a CS problem and on colorization."""
    return [
        job(problem, method, psnr)
        for problem in ("cs-0.1", "colorization")
        for method, psnr in (
            ("deep_decoder", 0.0),
            ("lowshot-mmd-S10", gain + WOBBLE),
            ("lowshot-l2-S5", -gain + WOBBLE),
        )
    ]


def test_g_compares_every_low_shot_model_with_the_deep_decoder_per_problem():
    g = rows(check(*deep_decoder_jobs(gain=1.5)), "g")
    assert list(g["scope"]) == [
        "loss=mmd, S=10, cs-0.1",
        "loss=l2, S=5, cs-0.1",
        "loss=mmd, S=10, colorization",
        "loss=l2, S=5, colorization",
    ]
    assert list(g["comparison"][:2]) == [
        "lowshot-mmd-S10 − deep_decoder",
        "lowshot-l2-S5 − deep_decoder",
    ]
    assert list(g["verdict"]) == [claims.HOLDS, claims.DOES_NOT_HOLD] * 2
    assert g["effect_db"].to_numpy() == pytest.approx([1.5, -1.5, 1.5, -1.5])
    assert g["test"].eq(claims.WILCOXON).all()


def test_g_is_not_measured_without_the_deep_decoder_or_the_low_shot_models():
    without = rows(check(job("cs-0.1", "lowshot-l2-S5", 1.0), job("colorization", "csgm", 0)), "g")
    assert list(without["scope"]) == ["every problem"]
    assert without["verdict"].iat[0] == claims.NOT_MEASURED
    assert without["detail"].iat[0] == "the metrics have no deep_decoder rows"
    only_decoder = rows(check(job("cs-0.1", "deep_decoder", 0.0)), "g")
    assert only_decoder["detail"].iat[0] == "the metrics have no lowshot rows"
    assert rows(check(job("cs-0.1", "csgm", 0.0)), "g")["detail"].iat[0] == (
        "the metrics have no lowshot and deep_decoder rows"
    )


def test_without_the_new_methods_the_paper_claims_are_tested_as_before():
    """Rows of (f) and (g) that are not measured change nothing of (a)-(e): not their rows,
    not the Holm correction."""
    jobs = [*trend_jobs(slope=1.0), *lowest_ratio_jobs(gain=2.0), *csgm_jobs(0.2, loss="l2")]
    table = check(*jobs)
    paper = [claim for claim in claims.CLAIMS if claim.letter in "abcde"]
    alone = claims.check_claims(
        pd.concat(jobs, ignore_index=True), alpha=ALPHA, margin_db=MARGIN, claims=paper
    )
    assert set(table["claim"]) == {"a", "b", "c", "d", "e", "f", "g"}
    assert (
        set(rows(table, "f")["verdict"])
        == set(rows(table, "g")["verdict"])
        == {claims.NOT_MEASURED}
    )
    pd.testing.assert_frame_equal(
        table[table["claim"].isin(list("abcde"))].reset_index(drop=True), alone
    )


def test_tested_rows_of_f_and_g_join_the_holm_correction():
    table = check(*lowest_ratio_jobs(gain=2.0), *deep_decoder_jobs(gain=1.5))
    tested = table[np.isfinite(table["p_value"])]
    assert {"b", "g"} <= set(tested["claim"])
    np.testing.assert_allclose(tested["p_adjusted"], claims.holm(tested["p_value"]))


# --- pairing, untestable rows, direction ---------------------------------------------


def test_diverged_images_are_dropped_from_both_sides_of_a_pair():
    untrained = job("colorization", "untrained", 0.0, diverged=[0])
    untrained.loc[0, "psnr"] = math.nan
    lowshot = job("colorization", "lowshot-mmd-S10", 2.0 + WOBBLE, diverged=[1])
    lowshot.loc[1, "psnr"] = 99.0
    unflagged = job("colorization", "lowshot-l2-S10", 2.0 + WOBBLE)
    unflagged.loc[2, "psnr"] = math.inf  # non-finite without the flag: excluded too
    table = check(untrained, lowshot, unflagged)
    mmd, l2 = one(table, "e", "loss=mmd"), one(table, "e", "loss=l2")
    assert mmd["n"] == N - 2
    assert mmd["effect_db"] == pytest.approx(2.0 + np.delete(WOBBLE, [0, 1]).mean())
    assert "2 image(s) left out" in mmd["detail"]
    assert l2["n"] == N - 2


@pytest.mark.parametrize(
    ("n_images", "reason"), [(1, "too few"), (N, "every paired difference is 0")]
)
def test_untestable_rows_do_not_hold_and_have_no_p_value(n_images: int, reason: str):
    untrained = job("colorization", "untrained", 0.0).iloc[:n_images]
    lowshot = job("colorization", "lowshot-mmd-S10", 0.0).iloc[:n_images]  # equal PSNRs
    row = one(check(untrained, lowshot), "e", "loss=mmd")
    assert row["verdict"] == claims.DOES_NOT_HOLD
    assert math.isnan(row["p_value"]) and math.isnan(row["p_adjusted"])
    assert reason in row["detail"]


def test_a_significant_test_with_a_negative_mean_does_not_hold():
    # Eleven small gains and one large loss: the signed ranks favour > 0, the mean does not.
    gains = np.r_[np.linspace(0.5, 1.5, N - 1), -50.0]
    row = one(
        check(job("colorization", "untrained", 0.0), job("colorization", "lowshot-l2-S5", gains)),
        "e",
        "loss=l2",
    )
    assert row["p_adjusted"] < ALPHA
    assert row["effect_db"] < 0
    assert row["verdict"] == claims.DOES_NOT_HOLD


def test_small_samples_say_why_they_cannot_be_significant():
    csgm = job("colorization", "csgm", 0.0).iloc[:4]
    iagan = job("colorization", "iagan", 3.0 + WOBBLE).iloc[:4]
    row = one(check(csgm, iagan), "d", "colorization")
    assert row["p_value"] == pytest.approx(1 / 2**4)  # every sign positive: the exact minimum
    assert row["verdict"] == claims.DOES_NOT_HOLD
    assert "cannot go below p = 0.0625" in row["detail"]


# --- Holm ----------------------------------------------------------------------------


def test_holm_matches_a_hand_computation():
    # m = 4 finite p-values, sorted 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x, 1x, then the
    # running maximum: 0.02, 0.03, 0.06, max(0.06, 0.04) = 0.06.
    adjusted = claims.holm([0.01, 0.04, 0.03, math.nan, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, math.nan, 0.02])
    assert claims.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert claims.holm([]).size == 0


def test_check_claims_adjusts_over_every_tested_row():
    table = check(*lowest_ratio_jobs(gain=2.0), *csgm_jobs(offset=0.2))
    tested = table[np.isfinite(table["p_value"])]
    assert len(tested) >= 3
    np.testing.assert_allclose(tested["p_adjusted"], claims.holm(tested["p_value"]))
    smallest = tested["p_value"].idxmin()
    assert table.loc[smallest, "p_adjusted"] == pytest.approx(
        min(1.0, len(tested) * table.loc[smallest, "p_value"])
    )
    assert table.loc[table["verdict"] == claims.NOT_MEASURED, "p_adjusted"].isna().all()


# --- the table, its rendering and its files ------------------------------------------


def full_table() -> pd.DataFrame:
    return check(
        *trend_jobs(slope=1.0),
        *lowest_ratio_jobs(gain=2.0),
        *csgm_jobs(offset=0.2, loss="l2"),
        job("colorization", "untrained", 0.0),
        job("colorization", "lowshot-mmd-S10", 3.0 + WOBBLE),
        job("colorization", "learned_reg-S10", 1.0),
        job("colorization", "deep_decoder", -1.0),
    )


def test_every_claim_has_rows_with_the_documented_columns():
    table = full_table()
    assert list(table.columns) == claims.CLAIM_COLUMNS
    assert set(table["claim"]) == {"a", "b", "c", "d", "e", "f", "g"}
    assert set(table["verdict"]) <= {claims.HOLDS, claims.DOES_NOT_HOLD, claims.NOT_MEASURED}
    assert not table.duplicated(["claim", "scope"]).any()
    assert (table["detail"].str.len() > 0).all()


def test_markdown_has_one_row_per_claim_row_and_states_its_settings():
    table = full_table()
    text = claims.claims_markdown(table)
    body = [line for line in text.splitlines() if line.startswith("| (")]
    assert len(body) == len(table)
    header = next(line for line in text.splitlines() if line.startswith("| claim"))
    assert all(line.count("|") == header.count("|") for line in body)
    first = text.splitlines()[0]
    assert f"α = {ALPHA:g}" in first and f"±{MARGIN:g} dB" in first and "Holm" in first
    mmd = one(table, "a", "loss=mmd")
    half = (mmd["ci_high"] - mmd["ci_low"]) / 2
    assert f"{mmd['effect_db']:+.2f} ± {half:.2f}" in text
    with pytest.raises(ValueError, match="alpha"):
        claims.claims_markdown(pd.DataFrame(table))


def test_bad_settings_are_errors():
    metrics = job("cs-0.1", "csgm", 0.0)
    with pytest.raises(ValueError, match="alpha"):
        claims.check_claims(metrics, alpha=1.5, margin_db=1.0)
    with pytest.raises(ValueError, match="margin_db"):
        claims.check_claims(metrics, alpha=0.05, margin_db=0.0)
    with pytest.raises(ValueError, match="psnr"):
        claims.check_claims(metrics.drop(columns="psnr"), alpha=0.05, margin_db=1.0)


def test_files_are_written_from_the_metrics_csv(tmp_path: Path):
    metrics = pd.concat([*lowest_ratio_jobs(gain=2.0), *csgm_jobs(offset=0.2)])
    tables.write_metrics_csv(metrics, tmp_path / "metrics.csv")
    out = tmp_path / "tables"
    table = claims.check_claims_files(
        tmp_path / "metrics.csv", out / "claims.csv", out / "claims.md", alpha=0.05, margin_db=1
    )
    again = pd.read_csv(out / "claims.csv", keep_default_na=False, na_values=[""])
    assert list(again["verdict"]) == list(table["verdict"])
    np.testing.assert_allclose(again["p_value"], table["p_value"])
    assert (out / "claims.md").read_text(encoding="utf-8") == claims.claims_markdown(table)
    assert not list(out.glob("*.tmp"))
    direct = claims.check_claims(metrics, alpha=0.05, margin_db=1)
    np.testing.assert_allclose(direct["effect_db"], table["effect_db"])


def test_the_summary_command_prints_the_claims(tmp_path: Path):
    table = full_table()
    claims.write_claims_markdown(table, tmp_path / "tables" / "claims.md")
    text = summary.describe(tmp_path)
    assert claims.claims_markdown(table).rstrip() in text
    assert f"{tmp_path / 'tables' / 'claims.csv'}  (missing)" in text


def test_an_image_twice_for_one_model_is_an_error():
    twice = pd.concat([job("cs-0.1", "lowshot-mmd-S5", 0.0)] * 2, ignore_index=True)
    with pytest.raises(ValueError, match="more than once"):
        check(twice, job("cs-0.1", "lowshot-mmd-S10", 1.0))
