"""Rule split_data: images.h5 -> results/data/splits.h5 (lowshot.data.split_data)."""

from lowshot.data import split_data
from lowshot.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0])
params = snakemake.params
split_data(
    snakemake.input[0],
    snakemake.output[0],
    n_test=params.n_test,
    n_validation=params.n_validation,
    shots=params.shots,
    gan_corpus_size=params.gan_corpus_size,
    seed=params.seed,
)
