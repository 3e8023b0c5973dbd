"""Rule train_gan: WGAN-GP generator for CSGM and IAGAN (see lowshot.jobs.train_gan_job)."""

from lowshot.jobs import train_gan_job
from lowshot.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0])
params = snakemake.params
train_gan_job(
    snakemake.input.images,
    snakemake.input.splits,
    generator_out=snakemake.output.generator,
    losses_out=snakemake.output.losses,
    samples_out=snakemake.output.samples,
    checkpoint=params.checkpoint,
    settings=params.settings,
    latent_dim=params.latent_dim,
    seed=params.seed,
    device=params.device,
    precision=params.precision,
    threads=snakemake.threads,
)
