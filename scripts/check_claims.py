"""Rule check_claims: metrics.csv -> claims.csv and claims.md (the paper's claims, tested)."""

from lowshot.claims import check_claims_files
from lowshot.logs import setup_rule_logging
from lowshot.registry import load_plugins

setup_rule_logging(snakemake.log[0])
load_plugins(snakemake.params.plugins)
check_claims_files(
    snakemake.input.metrics,
    claims_csv=snakemake.output.claims_csv,
    claims_md=snakemake.output.claims_md,
    settings=snakemake.params.settings,
)
