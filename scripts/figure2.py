"""Rule figure2: one problem's recovery files + test images -> figure2.{pdf,png}."""

import logging

from lowshot.logs import setup_rule_logging
from lowshot.plots import figure2_from_files
from lowshot.registry import load_plugins

setup_rule_logging(snakemake.log[0])
load_plugins(snakemake.params.plugins)
figure = figure2_from_files(
    snakemake.input.images,
    snakemake.input.splits,
    snakemake.input.recovery,
    problem=snakemake.params.problem,
    methods=snakemake.params.methods,
    n_images=snakemake.params.n_images,
    path_pdf=snakemake.output.pdf,
    path_png=snakemake.output.png,
)
logging.getLogger("figure2").info(
    "wrote %s: rows %s", snakemake.output.png, ["true", "input", *snakemake.params.methods]
)
