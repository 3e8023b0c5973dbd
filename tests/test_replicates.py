"""Replicates of the low-shot models (``lowshot.replicates``): R independent draws of the
shots and seeds per (loss, S). Replicate 1 is the paper's single model per S and keeps
every name, path and seed of before; replicate r >= 2 gets its own shot subsets (nested
across S, disjoint from the other replicates' while the corpus allows), pre-training seed,
recovery draws, method name, model folder and a ``replicate`` column in the tables."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from test_tables import write_job

from lowshot import data, jobs, plots, tables
from lowshot.config import ConfigError, method_names, schema_defaults, validate_config
from lowshot.io import load_lowshot
from lowshot.methods import (
    REPLICATE_FOLDER_SUFFIX,
    MethodSpec,
    family,
    parse_method,
    replicate_of_suffix,
    replicate_suffix,
)
from lowshot.methods.lowshot import model_folder
from lowshot.seeds import derive_seed
from lowshot.training import lowshot_settings, pretraining_seed
from lowshot.training.pretrain import pretraining_codes

# --- shot subsets ------------------------------------------------------------------------

SHOTS = (2, 3, 5)


def first_replicate(corpus: np.ndarray, seed: int = 0) -> dict[int, np.ndarray]:
    """Replicate 1's nested subsets as ``choose_split`` draws them: prefixes of one order."""
    order = np.random.default_rng(seed).permutation(corpus)
    return {size: order[:size] for size in SHOTS}


def test_replicate_1_is_the_split_own_subsets() -> None:
    corpus = np.arange(100, 140)
    first = first_replicate(corpus)
    same = data.replicate_shots(corpus, first, 1, seed=0)
    assert same.keys() == first.keys()
    for size in SHOTS:
        assert np.array_equal(same[size], first[size])


def test_each_replicate_is_nested_and_disjoint_from_the_others_when_the_corpus_allows() -> None:
    corpus = np.arange(100, 140)  # 40 rows >= 4 replicates x 5 shots
    first = first_replicate(corpus)
    draws = [data.replicate_shots(corpus, first, r, seed=0) for r in range(1, 5)]
    for draw in draws:
        largest = draw[max(SHOTS)]
        assert np.isin(largest, corpus).all() and len(set(largest)) == largest.size
        for size in SHOTS:
            assert np.array_equal(draw[size], largest[:size]), size  # nested
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.intersect1d(draws[a][5], draws[b][5]).size, (a + 1, b + 1)
    # A replicate does not depend on how many come after it, nor on a call's history.
    assert np.array_equal(data.replicate_shots(corpus, first, 3, seed=0)[5], draws[2][5])
    # Another seed draws other faces.
    assert not np.array_equal(data.replicate_shots(corpus, first, 2, seed=1)[5], draws[1][5])


def test_a_small_corpus_overlaps_replicates_as_little_as_it_can() -> None:
    corpus = np.arange(12)  # 12 rows < 3 replicates x 5 shots
    first = first_replicate(corpus)
    second = data.replicate_shots(corpus, first, 2, seed=0)[5]
    third = data.replicate_shots(corpus, first, 3, seed=0)[5]
    assert not np.intersect1d(second, first[5]).size  # 10 rows were still fresh
    # Only 2 rows are left that neither replicate uses: both go into the third, the rest
    # is drawn from the used rows.
    fresh = np.setdiff1d(corpus, np.concatenate([first[5], second]))
    assert fresh.size == 2 and np.isin(fresh, third).all()
    assert len(set(third)) == 5 and np.isin(third, corpus).all()


def test_replicate_shots_rejects_bad_input() -> None:
    corpus = np.arange(20)
    first = first_replicate(corpus)
    with pytest.raises(ValueError, match=">= 1"):
        data.replicate_shots(corpus, first, 0, seed=0)
    with pytest.raises(ValueError, match="not a prefix"):
        data.replicate_shots(corpus, {2: np.array([0, 1]), 3: np.array([5, 6, 7])}, 2, seed=0)
    with pytest.raises(ValueError, match="corpus of 4"):
        data.replicate_shots(np.arange(4), {5: np.arange(5)}, 2, seed=0)


def test_a_split_gives_its_replicates_from_its_own_corpus_and_seed() -> None:
    partition = np.zeros(60, np.int64)
    identity = np.full(60, -1)
    chosen = data.choose_split(
        partition, identity, n_test=4, shots=[2, 5], gan_corpus_size=30, seed=7
    )
    split = data.Split(
        test=chosen["test"],
        test_ids=[],
        shots=chosen["shots"],
        gan_corpus=chosen["gan_corpus"],
        attrs={"seed": 7},
    )
    second = split.replicate_shots(2)
    assert np.array_equal(
        second[5], data.replicate_shots(chosen["gan_corpus"], chosen["shots"], 2, 7)[5]
    )
    assert np.array_equal(split.replicate_shots(1)[5], chosen["shots"][5])
    assert not np.intersect1d(second[5], chosen["shots"][5]).size
    assert not np.intersect1d(second[5], chosen["test"]).size


# --- names --------------------------------------------------------------------------------


def config_with(replicates: int | None) -> dict:
    lowshot = {"shots": [5, 10], "losses": ["l2", "mmd"]}
    if replicates is not None:
        lowshot["replicates"] = replicates
    return validate_config({"lowshot": lowshot})


def test_replicate_1_keeps_the_paper_names() -> None:
    assert schema_defaults("lowshot")["replicates"] == 1
    paper = ["lowshot-mmd-S5", "lowshot-mmd-S10", "lowshot-l2-S5", "lowshot-l2-S10"]
    assert [n for n in method_names(config_with(None)) if n.startswith("lowshot")] == paper
    assert method_names(config_with(1)) == method_names(config_with(None))
    spec = parse_method("lowshot-mmd-S10")
    assert spec == MethodSpec("lowshot", "lowshot-mmd-S10", "mmd", 10, 1)
    assert model_folder(spec) == "mmd_S10"
    assert family(spec).method_label(spec) == "10-shot (MMD)"


def test_every_replicate_name_parses_back_to_its_loss_shots_and_replicate() -> None:
    names = [n for n in method_names(config_with(3)) if n.startswith("lowshot")]
    assert len(names) == 2 * 2 * 3
    specs = [parse_method(name) for name in names]
    assert {(s.loss, s.shots, s.replicate) for s in specs} == {
        (loss, shots, r) for loss in ("l2", "mmd") for shots in (5, 10) for r in (1, 2, 3)
    }
    for spec in specs:
        expected = "" if spec.replicate == 1 else f"-r{spec.replicate}"
        assert spec.name == f"lowshot-{spec.loss}-S{spec.shots}{expected}"
        folder = model_folder(spec)
        suffix = folder.removeprefix(f"{spec.loss}_S{spec.shots}")
        assert re.fullmatch(REPLICATE_FOLDER_SUFFIX, suffix)
        assert replicate_of_suffix(suffix) == spec.replicate
    assert family(specs[1]).method_label(parse_method("lowshot-l2-S5-r2")) == "5-shot (ℓ2, r2)"
    # Tables' order: loss, then S, then replicate.
    assert method_names(config_with(2))[:4] == [
        "lowshot-mmd-S5",
        "lowshot-mmd-S5-r2",
        "lowshot-mmd-S10",
        "lowshot-mmd-S10-r2",
    ]


def test_a_replicate_has_one_spelling() -> None:
    for name in ("lowshot-mmd-S10-r1", "lowshot-mmd-S10-r0", "lowshot-mmd-S10-r02"):
        with pytest.raises(ValueError, match="unknown method"):
            parse_method(name)
    for suffix in ("_r1", "_r0", "r2", "_r"):
        with pytest.raises(ValueError, match="replicate suffix"):
            replicate_of_suffix(suffix)
    assert replicate_suffix(1, "-") == "" and replicate_suffix(12, "_") == "_r12"
    with pytest.raises(ValueError):
        replicate_suffix(0, "-")


def test_a_spec_with_shots_is_a_replicate_and_one_without_is_none() -> None:
    assert MethodSpec("learned_reg", "learned_reg-S10", None, 10).replicate == 1
    assert parse_method("learned_reg-S10").replicate == 1  # fitted to replicate 1's shots
    assert parse_method("csgm").replicate is None
    with pytest.raises(ValueError, match="without shots"):
        MethodSpec("csgm", "csgm", replicate=2)
    with pytest.raises(ValueError, match=">= 1"):
        MethodSpec("lowshot", "x", "l2", 5, 0)


def test_learned_reg_stays_on_replicate_1() -> None:
    names = method_names(
        validate_config(
            {
                "lowshot": {"shots": [5], "losses": ["l2"], "replicates": 2},
                "recover": {"methods": ["lowshot", "learned_reg"]},
                "report": {"figure2_methods": ["lowshot-l2-S5"], "figure3_shots": 5},
            }
        )
    )
    assert names == ["lowshot-l2-S5", "lowshot-l2-S5-r2", "learned_reg-S5"]


def test_replicates_are_a_positive_integer_that_trains_nothing_differently() -> None:
    for bad in (0, 1.5, "2"):
        with pytest.raises(ConfigError, match=r"lowshot\.replicates"):
            validate_config({"lowshot": {"replicates": bad}})
    # A selection key like shots: the rule's params (and the model attrs) leave it out.
    section = validate_config({"lowshot": {"replicates": 3}})["lowshot"]
    assert "replicates" not in lowshot_settings(section)
    assert lowshot_settings(section) == lowshot_settings({**section, "replicates": 1})


# --- seeds --------------------------------------------------------------------------------


def test_replicate_1_keeps_its_seeds_and_other_replicates_get_their_own() -> None:
    # The seed every low-shot model had before replicates existed.
    assert pretraining_seed(0, 1) == derive_seed(0, "pretrain_lowshot")
    seeds = {pretraining_seed(0, r) for r in (1, 2, 3)}
    assert len(seeds) == 3
    first, second = (pretraining_codes(pretraining_seed(0, r), 4, 8) for r in (1, 2))
    assert not torch.equal(first, second)  # own initial codes (and theta_0: same seed)
    with pytest.raises(ValueError):
        pretraining_seed(0, 0)

    def draws(method: str) -> list[int]:
        return jobs.method_seeds(0, method, "cs-0.1", ["a.jpg", "b.jpg"])

    # Recovery draws: "lowshot" for replicate 1 as before, paired across loss and S
    # within a replicate, independent across replicates.
    before = [derive_seed(0, "lowshot", "cs-0.1", i) for i in ("a.jpg", "b.jpg")]
    assert draws("lowshot-mmd-S10") == before
    assert draws("lowshot-l2-S5") == draws("lowshot-mmd-S10")
    assert draws("lowshot-l2-S5-r2") == draws("lowshot-mmd-S10-r2") != draws("lowshot-mmd-S10")
    assert draws("lowshot-mmd-S10-r3") not in (draws("lowshot-mmd-S10-r2"), draws("lowshot-l2-S5"))


# --- jobs ---------------------------------------------------------------------------------

RUNTIME = jobs.Runtime(seed=0, device="cpu", precision="fp32", latent_dim=128, threads=1)
LOWSHOT = {**schema_defaults("lowshot"), "iterations": 1, "checkpoint_every": 1, "log_every": 1}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """images.h5 of 14 random faces and a split: 2 test images, a corpus of 12, shots 2, 3."""
    root = tmp_path_factory.mktemp("replicates")
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}.jpg" for i in range(14)]
    string = h5py.string_dtype()
    with h5py.File(root / "images.h5", "w") as handle:
        handle["images"] = rng.integers(0, 256, (14, 64, 64, 3), dtype=np.uint8)
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
    corpus = np.arange(2, 14)
    order = rng.permutation(corpus)
    with h5py.File(root / "splits.h5", "w") as handle:
        handle["test"] = np.array([0, 1], np.int64)
        handle.create_dataset("test_ids", data=np.array(ids[:2], dtype=object), dtype=string)
        handle["gan_corpus"] = corpus
        handle["shots/S2"] = order[:2]
        handle["shots/S3"] = order[:3]
        handle.attrs["seed"] = 0
    return {"images": root / "images.h5", "splits": root / "splits.h5", "root": root}


def pretrain(store: dict[str, Path], replicate: int) -> Path:
    out = store["root"] / f"mmd_S3{replicate_suffix(replicate, '_')}"
    out.mkdir(exist_ok=True)
    jobs.pretrain_lowshot_job(
        store["images"],
        store["splits"],
        loss="mmd",
        shots=3,
        model_out=out / "model.h5",
        losses_out=out / "losses.csv",
        checkpoint=out / "checkpoint.pt",
        settings=LOWSHOT,
        runtime=RUNTIME,
        replicate=replicate,
        width=8,
        progress=False,
    )
    return out / "model.h5"


@pytest.mark.usefixtures("one_thread")
def test_each_replicate_trains_on_its_own_shots_from_its_own_seed(store) -> None:
    split = data.load_split(store["splits"])
    first, second = (load_lowshot(pretrain(store, r)) for r in (1, 2))
    assert first.attrs["replicate"] == 1 and second.attrs["replicate"] == 2
    assert first.attrs["seed"] == derive_seed(RUNTIME.seed, "pretrain_lowshot")
    assert second.attrs["seed"] == pretraining_seed(RUNTIME.seed, 2) != first.attrs["seed"]
    assert np.array_equal(first.attrs["shot_rows"], split.shots[3])
    assert np.array_equal(second.attrs["shot_rows"], split.replicate_shots(2)[3])
    assert not np.intersect1d(first.attrs["shot_rows"], second.attrs["shot_rows"]).size
    assert not torch.equal(first.codes, second.codes)

    # A recovery refuses another replicate's model (a wrong MODEL_FILES path).
    with pytest.raises(ValueError, match="replicate 1's model"):
        jobs.recover_job(
            store["images"],
            store["splits"],
            store["root"] / "mmd_S3" / "model.h5",
            output=store["root"] / "wrong.h5",
            problem="cs-0.1",
            method="lowshot-mmd-S3-r2",
            positions=(0, 2),
            settings={"z_steps": 1, "joint_steps": 0, "restarts": 1},
            noise_std=0.0,
            runtime=RUNTIME,
        )


# --- tables and figures -------------------------------------------------------------------


@pytest.fixture
def metrics(tmp_path: Path) -> pd.DataFrame:
    return tables.metrics_table(
        [
            write_job(tmp_path, "cs-0.1", "lowshot-mmd-S10", [20, 22, 24]),
            write_job(tmp_path, "cs-0.1", "lowshot-mmd-S10-r2", [30, 32, 34]),
            write_job(tmp_path, "cs-0.1", "untrained", [10, 11, 12]),
            write_job(tmp_path, "cs-0.2", "lowshot-mmd-S10", [21, 23, 25]),
            write_job(tmp_path, "cs-0.2", "lowshot-mmd-S10-r2", [31, 33, 35]),
            write_job(tmp_path, "cs-0.2", "untrained", [11, 12, 13]),
        ]
    )


def test_metrics_have_a_nullable_integer_replicate_column(metrics, tmp_path) -> None:
    assert "replicate" in tables.METRIC_COLUMNS and str(metrics["replicate"].dtype) == "Int64"
    by_method = metrics.groupby("method")["replicate"].agg(lambda s: list(s.unique()))
    assert by_method["lowshot-mmd-S10"] == [1]
    assert by_method["lowshot-mmd-S10-r2"] == [2]
    assert metrics.loc[metrics["method"] == "untrained", "replicate"].isna().all()
    path = tmp_path / "metrics.csv"
    tables.write_metrics_csv(metrics, path)
    back = tables.read_metrics_csv(path)
    assert str(back["replicate"].dtype) == "Int64"
    pd.testing.assert_series_equal(back["replicate"], metrics["replicate"])


def test_a_table_from_before_replicates_reads_as_replicate_1(metrics, tmp_path) -> None:
    old = metrics[metrics["method"] != "lowshot-mmd-S10-r2"].drop(columns="replicate")
    path = tmp_path / "old.csv"
    old.to_csv(path, index=False)
    back = tables.read_metrics_csv(path)
    assert list(back.columns) == tables.METRIC_COLUMNS
    shot_fitted = back["shots"].notna()
    assert (back.loc[shot_fitted, "replicate"] == 1).all()
    assert back.loc[~shot_fitted, "replicate"].isna().all()


def test_a_file_whose_replicate_disagrees_with_its_name_is_an_error(tmp_path) -> None:
    path = write_job(tmp_path, "cs-0.1", "lowshot-mmd-S10", [20.0])
    with h5py.File(path, "a") as handle:
        handle.attrs["replicate"] = 2
    with pytest.raises(ValueError, match="replicate=2"):
        tables.metrics_table([path])


def test_the_summary_keeps_replicates_apart_and_the_figures_show_replicate_1(metrics) -> None:
    summary = tables.summarize(metrics)
    lowshot = summary[summary["method_kind"] == "lowshot"]
    assert len(lowshot) == 4  # 2 problems x 2 replicates, never pooled
    first = lowshot[lowshot["method"] == "lowshot-mmd-S10"]
    assert list(first["psnr_mean"]) == [22.0, 23.0] and (first["replicate"] == 1).all()
    second = lowshot[lowshot["method"] == "lowshot-mmd-S10-r2"]
    assert list(second["psnr_mean"]) == [32.0, 33.0] and (second["replicate"] == 2).all()
    markdown = tables.summary_markdown(summary)
    assert "| 10-shot (MMD) |" in markdown and "| 10-shot (MMD, r2) |" in markdown
    shown = plots.paper_replicate(summary)
    assert set(shown["method"]) == {"lowshot-mmd-S10", "untrained"}
    assert set(plots.at_shots(summary, 10)["method"]) == {"lowshot-mmd-S10", "untrained"}


def test_figure1_draws_replicate_1_only(metrics, tmp_path) -> None:
    figure = plots.figure1(
        tables.summarize(metrics), tmp_path / "f.pdf", tmp_path / "f.png", "compressed_sensing"
    )
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert set(lines) == {"10 shots", "Untrained"}
    assert list(lines["10 shots"].get_ydata()) == [22.0, 23.0]
