"""The splits of the image store: test images, the GAN corpus and the low-shot subsets.

Split file (``results/data/splits.h5``): row indices into the image store, written by
``split_data`` and read by ``load_split``; ``choose_split`` says how the rows are drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lowshot.data.sources import DataError, PathLike
from lowshot.io import read_h5, write_h5
from lowshot.seeds import derive_seed

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Row indices into the image store. ``shots[S]`` is nested: shots[5] == shots[10][:5]."""

    test: np.ndarray
    test_ids: list[str]
    shots: dict[int, np.ndarray]
    gan_corpus: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SplitReport:
    output: Path
    strategy: str
    n_test: int
    n_train_pool: int
    gan_corpus_size: int
    shots: list[int]
    how: str


def _identities_known(identity: np.ndarray) -> bool:
    known = identity >= 0
    if known.any() and not known.all():
        raise DataError(
            f"{int((~known).sum())} of {known.size} images have no identity; the split "
            "needs identities for all images or for none"
        )
    return bool(known.all()) and known.size > 0


def _one_per_identity(
    pool: np.ndarray, identity: np.ndarray, n_test: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_test`` rows of ``pool``, one for each of ``n_test`` identities drawn at random."""
    candidates = np.unique(identity[pool])
    if candidates.size < n_test:
        raise DataError(
            f"split.n_test needs {n_test} test images of distinct identities but the test "
            f"pool holds {candidates.size} identities"
        )
    chosen = rng.permutation(candidates)[:n_test]
    return np.array([rng.choice(pool[identity[pool] == person]) for person in chosen])


def choose_split(
    partition: np.ndarray,
    identity: np.ndarray,
    *,
    n_test: int,
    shots: Sequence[int],
    gan_corpus_size: int | None,
    seed: int,
) -> dict[str, Any]:
    """Choose test rows, the training pool's GAN corpus and the nested low-shot subsets.

    Strategy ``official`` when the store holds both partition 0 (train) and partition 2
    (test) images: test images come from partition 2 and the training pool from
    partition 0. Otherwise ``disjoint-pools``: every image is a candidate for both.

    Test images: when identities are known, ``n_test`` identities are drawn at random
    from the test candidates and one image of each (so the test faces are of distinct
    people); the training pool then drops every image of those identities. Without
    identities, ``n_test`` rows are drawn and removed from the training pool.

    Training: the pool is shuffled once; the GAN corpus is its first ``gan_corpus_size``
    rows (all when None) and ``shots[S]`` its first S rows, so S5 ⊂ S10 ⊂ ... ⊂ corpus.
    Draws use ``derive_seed(seed, "split", "test" | "train")``: the test images do not
    depend on the shots or corpus size, nor the shots on the corpus size.

    Returns {"test" (sorted rows), "shots" {S: rows in draw order}, "gan_corpus" (sorted
    rows), "strategy", "identities_known", "n_train_pool", "how"}.
    """
    partition = np.asarray(partition)
    identity = np.asarray(identity)
    shots = sorted(int(s) for s in shots)
    if n_test < 1 or not shots or shots[0] < 1:
        raise ValueError(f"need n_test >= 1 and positive shots, got {n_test}, {shots}")
    if gan_corpus_size is not None and shots[-1] > gan_corpus_size:
        raise DataError(
            f"lowshot.shots: {shots[-1]} shots exceed split.gan_corpus_size={gan_corpus_size}; "
            "the low-shot subsets are drawn from the GAN corpus"
        )
    known = _identities_known(identity)
    rows = np.arange(partition.size)
    official = bool((partition == 0).any() and (partition == 2).any())
    test_pool = rows[partition == 2] if official else rows
    train_candidates = rows[partition == 0] if official else rows

    rng = np.random.default_rng(derive_seed(seed, "split", "test"))
    if known:
        test = _one_per_identity(test_pool, identity, n_test, rng)
        train_pool = train_candidates[~np.isin(identity[train_candidates], identity[test])]
    else:
        if test_pool.size < n_test:
            raise DataError(
                f"split.n_test needs {n_test} test images but the test pool holds {test_pool.size}"
            )
        test = rng.choice(test_pool, n_test, replace=False)
        train_pool = np.setdiff1d(train_candidates, test)

    needed = [("lowshot.shots", shots[-1]), ("split.gan_corpus_size", gan_corpus_size or 0)]
    for key, count in needed:
        if count > train_pool.size:
            raise DataError(
                f"{key} needs {count} training images but the training pool holds "
                f"{train_pool.size} (of {partition.size} images in the store)"
            )
    order = np.random.default_rng(derive_seed(seed, "split", "train")).permutation(train_pool)
    corpus = order[: train_pool.size if gan_corpus_size is None else gan_corpus_size]

    strategy = "official" if official else "disjoint-pools"
    source = (
        "test images from official partition 2, training pool from partition 0"
        if official
        else "no official training partition in the store, so its images were split into "
        "disjoint test and training pools"
    )
    person = (
        "one image from each of n_test randomly drawn identities, and no image of those "
        "identities in the training pool"
        if known
        else "identities unknown, so the pools are disjoint in images only"
    )
    how = (
        f"{strategy}: {source}; {n_test} test images, {person}; training pool of "
        f"{train_pool.size} images, GAN corpus of {corpus.size} of them, low-shot subsets "
        f"S{' ⊂ S'.join(map(str, shots))} nested inside it; seed {seed}."
    )
    return {
        "test": np.sort(test).astype(np.int64),
        "shots": {s: corpus[:s].astype(np.int64) for s in shots},
        "gan_corpus": np.sort(corpus).astype(np.int64),
        "strategy": strategy,
        "identities_known": known,
        "n_train_pool": int(train_pool.size),
        "how": how,
    }


def split_data(
    images_h5: PathLike,
    output: PathLike,
    *,
    n_test: int,
    shots: Sequence[int],
    gan_corpus_size: int | None,
    seed: int,
) -> SplitReport:
    """Write the split file ``output`` for the image store ``images_h5``.

    Datasets: ``test`` (n_test,) int64 rows (ascending), ``test_ids`` (n_test,) str,
    ``shots/S<n>`` (n,) int64 rows (nested prefixes), ``gan_corpus`` int64 rows
    (ascending). Attrs: strategy, how, seed, n_test, shots, gan_corpus_size,
    n_train_pool, identities_known, images (path), images_source_sha256. See
    ``choose_split`` for the design; raises ``DataError`` when a pool is too small.
    """
    with h5py.File(images_h5, "r") as handle:
        partition = handle["partition"][()]
        identity = handle["identity"][()]
        ids = handle["ids"].asstr()[()]
        source_sha = handle.attrs.get("source_sha256", "")
    chosen = choose_split(
        partition, identity, n_test=n_test, shots=shots, gan_corpus_size=gan_corpus_size, seed=seed
    )
    datasets: dict[str, Any] = {
        "test": chosen["test"],
        "test_ids": [str(ids[i]) for i in chosen["test"]],
        "gan_corpus": chosen["gan_corpus"],
    }
    datasets.update({f"shots/S{s}": rows for s, rows in chosen["shots"].items()})
    shot_list = sorted(chosen["shots"])
    write_h5(
        output,
        datasets,
        {
            "strategy": chosen["strategy"],
            "how": chosen["how"],
            "seed": int(seed),
            "n_test": int(n_test),
            "shots": np.asarray(shot_list, np.int64),
            "gan_corpus_size": int(chosen["gan_corpus"].size),
            "n_train_pool": chosen["n_train_pool"],
            "identities_known": chosen["identities_known"],
            "images": str(images_h5),
            "images_source_sha256": source_sha,
        },
    )
    log.info("wrote %s: %s", output, chosen["how"])
    return SplitReport(
        Path(output),
        chosen["strategy"],
        int(n_test),
        chosen["n_train_pool"],
        int(chosen["gan_corpus"].size),
        shot_list,
        chosen["how"],
    )


def load_split(path: PathLike) -> Split:
    """Read a split file written by ``split_data``."""
    datasets, attrs = read_h5(path)
    shots = {
        int(name.split("/S", 1)[1]): np.asarray(rows, np.int64)
        for name, rows in datasets.items()
        if name.startswith("shots/S")
    }
    return Split(
        test=np.asarray(datasets["test"], np.int64),
        test_ids=[str(i) for i in datasets["test_ids"]],
        shots=dict(sorted(shots.items())),
        gan_corpus=np.asarray(datasets["gan_corpus"], np.int64),
        attrs=attrs,
    )
