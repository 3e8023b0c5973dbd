"""Rule collect_metrics: recovery files -> metrics.csv and psnr_summary.{csv,md,tex}."""

from lowshot.logs import setup_rule_logging
from lowshot.registry import load_plugins
from lowshot.tables import collect

setup_rule_logging(snakemake.log[0])
load_plugins(snakemake.params.plugins)
collect(
    snakemake.input.recovery,
    metrics_csv=snakemake.output.metrics,
    summary_csv=snakemake.output.summary_csv,
    summary_md=snakemake.output.summary_md,
    summary_tex=snakemake.output.summary_tex,
)
