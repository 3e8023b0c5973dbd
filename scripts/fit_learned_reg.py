"""Rule fit_learned_reg: CS-DIP's learned regulariser on S examples (see
lowshot.jobs.fit_learned_reg_job)."""

from lowshot.jobs import Runtime, fit_learned_reg_job, gpu_request
from lowshot.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0])
params = snakemake.params
fit_learned_reg_job(
    snakemake.input.images,
    snakemake.input.splits,
    shots=int(snakemake.wildcards.shots),
    stats_out=snakemake.output.stats,
    fits_out=snakemake.output.fits,
    settings=params.settings,
    runtime=Runtime(
        **params.runtime, threads=snakemake.threads, gpu=gpu_request(snakemake.resources)
    ),
)
