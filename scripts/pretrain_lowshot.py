"""Rule pretrain_lowshot: theta and codes on S examples (see lowshot.jobs.pretrain_lowshot_job)."""

from lowshot.jobs import Runtime, gpu_request, pretrain_lowshot_job
from lowshot.logs import setup_rule_logging
from lowshot.methods import replicate_of_suffix

setup_rule_logging(snakemake.log[0])
params = snakemake.params
pretrain_lowshot_job(
    snakemake.input.images,
    snakemake.input.splits,
    loss=snakemake.wildcards.loss,
    shots=int(snakemake.wildcards.shots),
    # The folder's suffix, not a param: replicate 1's jobs keep the params they had.
    replicate=replicate_of_suffix(snakemake.wildcards.replicate),
    model_out=snakemake.output.model,
    losses_out=snakemake.output.losses,
    checkpoint=params.checkpoint,
    settings=params.settings,
    runtime=Runtime(
        **params.runtime, threads=snakemake.threads, gpu=gpu_request(snakemake.resources)
    ),
)
