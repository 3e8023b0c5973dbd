"""Rule recover: one method on one problem for a shard of test images (lowshot.jobs.recover_job)."""

from lowshot.jobs import recover_job
from lowshot.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0])
params = snakemake.params
recover_job(
    snakemake.input.images,
    snakemake.input.splits,
    snakemake.input.get("model"),
    output=snakemake.output[0],
    problem=snakemake.wildcards.problem,
    method=snakemake.wildcards.method,
    positions=tuple(params.positions),
    settings=params.settings,
    noise_std=params.noise_std,
    latent_dim=params.latent_dim,
    seed=params.seed,
    device=params.device,
    precision=params.precision,
    threads=snakemake.threads,
)
