"""Rule recover: one method on one problem for a shard of test images (lowshot.jobs.recover_job)."""

from lowshot.jobs import Runtime, gpu_request, recover_job
from lowshot.logs import setup_rule_logging
from lowshot.registry import load_plugins

setup_rule_logging(snakemake.log[0])
params = snakemake.params
load_plugins(params.plugins)
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
    runtime=Runtime(
        **params.runtime, threads=snakemake.threads, gpu=gpu_request(snakemake.resources)
    ),
    start_h5=snakemake.input.get("start"),
)
