"""The splits of the image store: test and validation images, the GAN corpus and the
low-shot subsets.

Split file (``results/data/splits.h5``): row indices into the image store, written by
``split_data`` and read by ``load_split``; ``choose_split`` says how the rows are drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from lowshot.data.sources import DataError, PathLike
from lowshot.io import read_h5, write_h5
from lowshot.seeds import derive_seed

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Row indices (int64) into the image store, and the CelebA ids of the held-out rows.

    ``test`` (n_test,) and ``validation`` (n_validation,) are ascending and disjoint from
    each other and from every training row; ``validation`` is empty (shape (0,)) when
    n_validation is 0 or the file predates validation faces. ``shots[S]`` (S,) is nested:
    shots[5] == shots[10][:5], and inside ``gan_corpus`` (ascending). These are replicate
    1's shots; ``replicate_shots(r)`` gives replicate r's (``lowshot.replicates``).
    """

    test: np.ndarray
    test_ids: list[str]
    shots: dict[int, np.ndarray]
    gan_corpus: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    validation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    validation_ids: list[str] = field(default_factory=list)

    def replicate_shots(self, replicate: int) -> dict[int, np.ndarray]:
        """Replicate ``replicate``'s nested shot subsets {S: rows} (module function
        ``replicate_shots``, from this split's GAN corpus, shots and seed)."""
        seed = self.attrs.get("seed")
        if seed is None and replicate != 1:  # replicate 1 is the stored draw: no seed needed
            raise ValueError(f"replicate {replicate}'s shots need the split's seed: none stored")
        return replicate_shots(self.gan_corpus, self.shots, replicate, int(seed or 0))


@dataclass
class SplitReport:
    output: Path
    strategy: str
    n_test: int
    n_train_pool: int
    gan_corpus_size: int
    shots: list[int]
    how: str
    n_validation: int = 0


def _identities_known(identity: np.ndarray) -> bool:
    known = identity >= 0
    if known.any() and not known.all():
        raise DataError(
            f"{int((~known).sum())} of {known.size} images have no identity; the split "
            "needs identities for all images or for none"
        )
    return bool(known.all()) and known.size > 0


def _one_per_identity(
    pool: np.ndarray,
    identity: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    key: str = "split.n_test",
    what: str = "test",
    pool_name: str = "test pool",
) -> np.ndarray:
    """``n`` rows of ``pool`` (shape (n,)), one for each of ``n`` identities drawn at random."""
    candidates = np.unique(identity[pool])
    if candidates.size < n:
        raise DataError(
            f"{key} needs {n} {what} images of distinct identities but the {pool_name} "
            f"holds {candidates.size} identities"
        )
    chosen = rng.permutation(candidates)[:n]
    return np.array(
        [rng.choice(pool[identity[pool] == person]) for person in chosen], dtype=np.int64
    )


def choose_split(
    partition: np.ndarray,
    identity: np.ndarray,
    *,
    n_test: int,
    shots: Sequence[int],
    gan_corpus_size: int | None,
    seed: int,
    n_validation: int = 0,
) -> dict[str, Any]:
    """Choose test rows, validation rows, the GAN corpus and the nested low-shot subsets.

    ``partition`` and ``identity`` are (N,) integer arrays over the store's rows (an
    identity of -1 is unknown: all or none must be known).

    Strategy ``official`` when the store holds both partition 0 (train) and partition 2
    (test) images: test images come from partition 2 and the training pool from
    partition 0. Otherwise ``disjoint-pools``: every image is a candidate for both.

    Test images: when identities are known, ``n_test`` identities are drawn at random
    from the test candidates and one image of each (so the test faces are of distinct
    people); the training pool then drops every image of those identities. Without
    identities, ``n_test`` rows are drawn and removed from the training pool.

    Validation images (for choices such as step sizes, never the test faces): drawn
    from the training pool after the test images, the same way as the test images (one
    image of each of ``n_validation`` distinct people, and the pool then drops every
    image of those people; without identities, ``n_validation`` rows), so they are never
    in the GAN corpus or a low-shot subset, and their people are neither test people nor
    trained on. ``n_validation=0`` (the default of this function; the workflow passes
    ``split.n_validation``) gives no validation rows and the split of before.

    Training: what is left of the pool is shuffled once; the GAN corpus is its first
    ``gan_corpus_size`` rows (all when None) and ``shots[S]`` its first S rows, so
    S5 ⊂ S10 ⊂ ... ⊂ corpus. Draws use ``derive_seed(seed, "split", "test" |
    "validation" | "train")``: the test images depend on nothing but the seed and the
    store, the validation images not on the shots or corpus size, nor the shots on the
    corpus size.

    Returns {"test" (sorted rows), "validation" (sorted rows, maybe empty), "shots" {S:
    rows in draw order}, "gan_corpus" (sorted rows), "strategy", "identities_known",
    "n_train_pool" (training images left after the validation draw), "how"}. Raises
    ``ValueError`` for non-positive n_test/shots or a negative n_validation, and
    ``DataError`` when a pool is too small for the numbers asked for.
    """
    partition = np.asarray(partition)
    identity = np.asarray(identity)
    shots = sorted(int(s) for s in shots)
    if n_test < 1 or not shots or shots[0] < 1:
        raise ValueError(f"need n_test >= 1 and positive shots, got {n_test}, {shots}")
    if n_validation < 0:
        raise ValueError(f"need n_validation >= 0, got {n_validation}")
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
    validation = np.zeros(0, np.int64)
    pool = train_pool
    if n_validation > 0:
        for key, count in needed:
            if n_validation + count > train_pool.size:
                raise DataError(
                    f"split.n_validation={n_validation} validation images plus the {count} "
                    f"training images of {key} need {n_validation + count} images, but the "
                    f"training pool holds {train_pool.size} (of {partition.size} images in "
                    "the store); validation images are never trained on, so lower "
                    f"split.n_validation or {key}, or use more images"
                )
        rng = np.random.default_rng(derive_seed(seed, "split", "validation"))
        if known:
            validation = _one_per_identity(
                train_pool,
                identity,
                n_validation,
                rng,
                key="split.n_validation",
                what="validation",
                pool_name="training pool (less the test people)",
            )
            pool = train_pool[~np.isin(identity[train_pool], identity[validation])]
        else:
            validation = rng.choice(train_pool, n_validation, replace=False)
            pool = np.setdiff1d(train_pool, validation)

    for key, count in needed:
        if count > pool.size:
            aside = (
                f" once the {n_validation} validation images and every other image of their "
                f"people are set aside (split.n_validation; {train_pool.size} before)"
                if n_validation > 0
                else ""
            )
            raise DataError(
                f"{key} needs {count} training images but the training pool holds "
                f"{pool.size}{aside} (of {partition.size} images in the store)"
            )
    order = np.random.default_rng(derive_seed(seed, "split", "train")).permutation(pool)
    corpus = order[: pool.size if gan_corpus_size is None else gan_corpus_size]

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
    held_out = (
        f"{n_validation} validation images drawn from the training pool "
        + (
            "(one from each of n_validation other identities, none of whose images are trained on)"
            if known
            else "(never trained on)"
        )
        if n_validation > 0
        else "no validation images"
    )
    how = (
        f"{strategy}: {source}; {n_test} test images, {person}; {held_out}; training pool "
        f"of {pool.size} images, GAN corpus of {corpus.size} of them, low-shot subsets "
        f"S{' ⊂ S'.join(map(str, shots))} nested inside it; seed {seed}."
    )
    return {
        "test": np.sort(test).astype(np.int64),
        "validation": np.sort(validation).astype(np.int64),
        "shots": {s: corpus[:s].astype(np.int64) for s in shots},
        "gan_corpus": np.sort(corpus).astype(np.int64),
        "strategy": strategy,
        "identities_known": known,
        "n_train_pool": int(pool.size),
        "how": how,
    }


def replicate_shots(
    corpus: np.ndarray, first: Mapping[int, np.ndarray], replicate: int, seed: int
) -> dict[int, np.ndarray]:
    """The nested shot subsets {S: rows (S,) int64, in draw order} of one replicate.

    ``corpus``: the GAN corpus rows (the split's ``gan_corpus``); ``first``: replicate
    1's subsets (the split's ``shots``, nested: first[5] == first[10][:5]), which this
    returns, copied, for ``replicate`` 1: the paper's single draw, unchanged. ``seed``:
    the split's (config) seed.

    Replicate r >= 2 draws its M = max(S) rows from the corpus rows that no replicate
    before it uses (1, 2, ..., r - 1, each recomputed here, so a replicate does not
    depend on how many come after it), in a random order from ``derive_seed(seed,
    "split", "shots", "replicate", r)``; when fewer than M such rows are left (the corpus
    holds fewer than r x M rows), the rest are drawn from the used rows, so replicates
    then overlap in as few faces as the corpus allows. Its S-subsets are the first S
    rows of that draw, nested like replicate 1's. Raises ``ValueError`` for a replicate
    < 1, subsets that are not nested prefixes, or a corpus smaller than M.
    """
    if replicate < 1:
        raise ValueError(f"replicate must be >= 1, not {replicate}")
    sizes = sorted(first)
    if not sizes:
        raise ValueError("replicate_shots: no shot subsets given")
    largest = np.asarray(first[sizes[-1]], np.int64)
    for size in sizes:
        if not np.array_equal(first[size], largest[:size]):
            raise ValueError(f"replicate_shots: the {size}-shot subset is not a prefix of the rest")
    if replicate == 1:
        return {size: largest[:size].copy() for size in sizes}
    corpus = np.sort(np.asarray(corpus, np.int64))
    if corpus.size < largest.size:
        raise ValueError(f"replicate_shots: {largest.size} shots from a corpus of {corpus.size}")
    used = np.isin(corpus, largest)
    for index in range(2, replicate + 1):
        rng = np.random.default_rng(derive_seed(seed, "split", "shots", "replicate", index))
        order = np.concatenate([rng.permutation(corpus[~used]), rng.permutation(corpus[used])])
        drawn = order[: largest.size]
        used |= np.isin(corpus, drawn)
    return {size: drawn[:size].copy() for size in sizes}


def split_data(
    images_h5: PathLike,
    output: PathLike,
    *,
    n_test: int,
    shots: Sequence[int],
    gan_corpus_size: int | None,
    seed: int,
    n_validation: int = 0,
) -> SplitReport:
    """Write the split file ``output`` for the image store ``images_h5``.

    Datasets: ``test`` (n_test,) int64 rows (ascending), ``test_ids`` (n_test,) str,
    ``validation`` (n_validation,) int64 rows (ascending; shape (0,) when 0),
    ``validation_ids`` (n_validation,) str, ``shots/S<n>`` (n,) int64 rows (nested
    prefixes), ``gan_corpus`` int64 rows (ascending). Attrs: strategy, how, seed, n_test,
    n_validation, shots, gan_corpus_size, n_train_pool, identities_known, images (path),
    images_source_sha256. See ``choose_split`` for the design; raises ``DataError`` when
    a pool is too small.
    """
    with h5py.File(images_h5, "r") as handle:
        partition = handle["partition"][()]
        identity = handle["identity"][()]
        ids = handle["ids"].asstr()[()]
        source_sha = handle.attrs.get("source_sha256", "")
    chosen = choose_split(
        partition,
        identity,
        n_test=n_test,
        shots=shots,
        gan_corpus_size=gan_corpus_size,
        seed=seed,
        n_validation=n_validation,
    )
    datasets: dict[str, Any] = {
        "test": chosen["test"],
        "test_ids": [str(ids[i]) for i in chosen["test"]],
        "validation": chosen["validation"],
        "validation_ids": np.array(
            [str(ids[i]) for i in chosen["validation"]], dtype=h5py.string_dtype()
        ),
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
            "n_validation": int(chosen["validation"].size),
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
        int(chosen["validation"].size),
    )


def load_split(path: PathLike) -> Split:
    """Read a split file written by ``split_data``.

    A file without ``validation`` datasets (written before they existed) reads as one
    with no validation rows.
    """
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
        validation=np.asarray(datasets.get("validation", np.zeros(0)), np.int64).reshape(-1),
        validation_ids=[str(i) for i in datasets.get("validation_ids", [])],
    )


def load_validation(
    images_h5: PathLike, splits_h5: PathLike, count: int
) -> tuple[torch.Tensor, list[str]]:
    """The split's first ``count`` validation faces (all of them when it holds fewer):
    float32 (N, 3, 64, 64) in [-1, 1] and their ids. For choices made on faces that are
    never trained on nor tested (the benchmarks). Raises ValueError when the split holds
    no validation faces."""
    from lowshot.data.store import load_images  # store imports torch lazily too

    split = load_split(splits_h5)
    if split.validation.size == 0:
        raise ValueError(
            f"{splits_h5} holds no validation faces: write a split with "
            "split.n_validation > 0 (lowshot.data.split_data(..., n_validation=...))"
        )
    return load_images(images_h5, split.validation[:count]), split.validation_ids[:count]
