"""Rule train_gan: WGAN-GP generator for CSGM and IAGAN (see lowshot.jobs.train_gan_job)."""

from lowshot.jobs import Runtime, gpu_request, train_gan_job
from lowshot.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0])
params = snakemake.params
train_gan_job(
    snakemake.input.images,
    snakemake.input.splits,
    generator_out=snakemake.output.generator,
    losses_out=snakemake.output.losses,
    samples_out=snakemake.output.samples,
    validation_out=snakemake.output.get("validation"),
    checkpoint=params.checkpoint,
    settings=params.settings,
    runtime=Runtime(
        **params.runtime, threads=snakemake.threads, gpu=gpu_request(snakemake.resources)
    ),
)
