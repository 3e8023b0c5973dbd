# lowshot: CelebA -> GAN and low-shot training -> per-image recovery -> tables and figures.
# Run: snakemake --cores 2 --configfile configs/quick.yaml   (see README.md)
from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "rules/common.smk"


report: "report/workflow.rst"


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/recover.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        REPORT_TARGETS,
