# lowshot: CelebA -> GAN and low-shot training -> per-image recovery -> tables and figures.
# Run: snakemake --cores 2 --configfile configs/quick.yaml   (see README.md)
from pathlib import Path

from snakemake.utils import min_version, validate

import lowshot.config as lsconfig

min_version("8.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")
lsconfig.check_config(config)

ROOT = Path(workflow.basedir)
RESULTS = "results"


include: "rules/data.smk"
