"""Rule figure2: colorization recovery files + test images -> figure2.{pdf,png}."""

import logging

from lowshot.logs import setup_rule_logging
from lowshot.plots import figure2_from_files

setup_rule_logging(snakemake.log[0])
figure = figure2_from_files(
    snakemake.input.images,
    snakemake.input.splits,
    snakemake.input.recovery,
    methods=snakemake.params.methods,
    n_images=snakemake.params.n_images,
    path_pdf=snakemake.output.pdf,
    path_png=snakemake.output.png,
)
logging.getLogger("figure2").info(
    "wrote %s: rows %s", snakemake.output.png, ["true", "grayscale", *snakemake.params.methods]
)
