# Shared by every rules file: config validation, the problem and method names, and the
# functions that map them to files.
import re
from pathlib import Path

from snakemake.utils import validate

import lowshot.config as lsconfig

validate(config, "../schemas/config.schema.yaml")
lsconfig.check_config(config)

ROOT = Path(workflow.basedir)
RESULTS = "results"
PROBLEMS = lsconfig.problem_names(config)
METHODS = lsconfig.method_names(config)
# Recovery jobs split the test images into shards of recover.images_per_job images;
# each (problem, method, shard) job writes results/recovery/{problem}/{method}/shard{k}.h5.
SHARDS = lsconfig.shard_count(config)
# What every torch job shares (lowshot.jobs.Runtime, less the rule's threads).
RUNTIME = {
    "seed": config["seed"],
    "device": config["device"],
    "precision": config["precision"],
    "latent_dim": config["model"]["latent_dim"],
}


def recovery_files(problems=PROBLEMS, methods=METHODS):
    """Recovery outputs of the given problems and methods (every shard)."""
    return expand(
        f"{RESULTS}/recovery/{{problem}}/{{method}}/shard{{shard}}.h5",
        problem=problems,
        method=methods,
        shard=range(SHARDS),
    )


RECOVERY_FILES = recovery_files()


def recover_inputs(wildcards):
    """Data files, plus the generator the method starts from (none for untrained)."""
    inputs = {
        "images": f"{RESULTS}/data/images.h5",
        "splits": f"{RESULTS}/data/splits.h5",
    }
    method = lsconfig.parse_method(wildcards.method)
    if method.kind == "lowshot":
        inputs["model"] = (
            f"{RESULTS}/models/lowshot/{method.loss}_S{method.shots}/model.h5"
        )
    elif method.kind in ("csgm", "iagan"):
        inputs["model"] = f"{RESULTS}/models/gan/generator.h5"
    return inputs
