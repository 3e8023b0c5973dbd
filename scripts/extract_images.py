"""Rule extract_images: CelebA source -> results/data/images.h5 (lowshot.data.extract_images).

The data files are not the rule's inputs (their checksums are its params: moving them
reruns nothing), so their paths come from the config, as in rules/data.smk.
"""

from pathlib import Path

from lowshot.config import data_files
from lowshot.data import extract_images
from lowshot.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0])
params = snakemake.params
files = data_files(snakemake.config, Path(snakemake.scriptdir).parent)
extract_images(
    files["source"],
    snakemake.output[0],
    partition_file=files["partition_file"],
    identity_file=files["identity_file"],
    crop=params.crop,
    image_size=params.image_size,
    max_images=params.max_images,
)
