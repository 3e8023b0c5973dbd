"""Rule extract_images: CelebA source -> results/data/images.h5 (lowshot.data.extract_images)."""

from lowshot.data import extract_images
from lowshot.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0])
params = snakemake.params
extract_images(
    snakemake.input.source,
    snakemake.output[0],
    partition_file=snakemake.input.get("partition_file"),
    identity_file=snakemake.input.get("identity_file"),
    crop=params.crop,
    image_size=params.image_size,
    max_images=params.max_images,
)
