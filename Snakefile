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


# The recovery files are targets too, not only inputs of the tables: a deleted one is then
# recomputed (Snakemake does not rebuild a missing intermediate file whose consumers are
# up to date), and with it the tables and the figures that read it.
rule all:
    default_target: True
    input:
        REPORT_TARGETS,
        RECOVERY_FILES,
