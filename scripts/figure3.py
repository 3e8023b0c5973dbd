"""Rule figure3: psnr_summary.csv -> figure3.{pdf,png} (lowshot.plots.figure3)."""

import logging

from lowshot.logs import setup_rule_logging
from lowshot.plots import figure3, figure3_grid
from lowshot.registry import load_plugins
from lowshot.tables import read_summary_csv

setup_rule_logging(snakemake.log[0])
load_plugins(snakemake.params.plugins)
summary = read_summary_csv(snakemake.input.summary)
figure3(summary, snakemake.output.pdf, snakemake.output.png, shots=snakemake.params.shots)
psnr, _ = figure3_grid(summary, snakemake.params.shots)
logging.getLogger("figure3").info(
    "wrote %s: %d method(s) x %d problem(s) at S=%d, methods %s",
    snakemake.output.png,
    *psnr.shape,
    snakemake.params.shots,
    list(psnr.index),
)
