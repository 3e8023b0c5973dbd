"""Rule figure1: psnr_summary.csv -> figure1.{pdf,png} (lowshot.plots.figure1)."""

import logging

from lowshot.logs import setup_rule_logging
from lowshot.plots import figure1
from lowshot.tables import read_summary_csv

setup_rule_logging(snakemake.log[0])
figure = figure1(
    read_summary_csv(snakemake.input.summary), snakemake.output.pdf, snakemake.output.png
)
logging.getLogger("figure1").info(
    "wrote %s with %d panel(s)", snakemake.output.png, len(figure.axes)
)
