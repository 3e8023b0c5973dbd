"""Rule figure1: psnr_summary.csv -> figure1.{pdf,png} (lowshot.plots.figure1)."""

import logging

from lowshot.logs import setup_rule_logging
from lowshot.plots import figure1
from lowshot.registry import load_plugins
from lowshot.tables import read_summary_csv

setup_rule_logging(snakemake.log[0])
load_plugins(snakemake.params.plugins)
figure = figure1(
    read_summary_csv(snakemake.input.summary),
    snakemake.output.pdf,
    snakemake.output.png,
    problem_kind=snakemake.params.problem_kind,
)
logging.getLogger("figure1").info(
    "wrote %s with %d panel(s), lines %s",
    snakemake.output.png,
    len(figure.axes),
    [line.get_label() for line in figure.axes[0].get_lines()],
)
