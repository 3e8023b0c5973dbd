# lowshot: CelebA -> GAN and low-shot training -> per-image recovery -> tables and figures.
# Run: snakemake --cores 2 --configfile configs/quick.yaml   (see README.md)
import re
from pathlib import Path

from snakemake.utils import min_version, validate

import lowshot.config as lsconfig

min_version("8.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")
lsconfig.check_config(config)

ROOT = Path(workflow.basedir)
RESULTS = "results"
PROBLEMS = lsconfig.problem_names(config)
METHODS = lsconfig.method_names(config)
# Recovery jobs split the test images into shards of recover.images_per_job images;
# each (problem, method, shard) job writes results/recovery/{problem}/{method}/shard{k}.h5.
SHARDS = lsconfig.shard_count(config)


def recovery_files(problems=PROBLEMS, methods=METHODS):
    """Recovery outputs of the given problems and methods (every shard)."""
    return expand(
        f"{RESULTS}/recovery/{{problem}}/{{method}}/shard{{shard}}.h5",
        problem=problems,
        method=methods,
        shard=range(SHARDS),
    )


RECOVERY_FILES = recovery_files()


report: "report/workflow.rst"


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/recover.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        REPORT_TARGETS,
