# Shared by every rules file: config validation, the problem and method names, and the
# functions that map them to files. Problems and methods come from their registries
# (lowshot/problems/, lowshot/methods/, and the config's plugins): no rule names one.
import re
from pathlib import Path

import lowshot.config as lsconfig
import lowshot.methods as lsmethods
import lowshot.problems as lsproblems
from lowshot.registry import resolve_plugins
from lowshot.methods.lowshot import model_folder

ROOT = Path(workflow.basedir)
# Every error of the config at once, one line each, before any job (and defaults filled).
config.update(lsconfig.validate_config(config, ROOT))
# The plugin files as absolute paths: every job that asks a registry imports them too.
PLUGINS = resolve_plugins(config["plugins"], ROOT)
RESULTS = "results"
PROBLEMS = lsconfig.problem_names(config)
METHODS = lsconfig.method_names(config)
# Recovery jobs split the test images into shards of recover.images_per_job images;
# each (problem, method, shard) job writes results/recovery/{problem}/{method}/shard{k}.h5.
SHARDS = lsconfig.shard_count(config)
# What every torch job shares (lowshot.jobs.Runtime, less the rule's threads).
RUNTIME = lsconfig.runtime_settings(config)


RECOVERY_FILE = f"{RESULTS}/recovery/{{problem}}/{{method}}/shard{{shard}}.h5"


def recovery_files(problems=PROBLEMS, methods=METHODS):
    """Recovery outputs of the given problems and methods (every shard)."""
    return expand(RECOVERY_FILE, problem=problems, method=methods, shard=range(SHARDS))


RECOVERY_FILES = recovery_files()


# The trained models a method can ask for (its class's ``model``), by the file that holds it.
MODEL_FILES = {
    "gan": lambda spec: f"{RESULTS}/models/gan/generator.h5",
    "lowshot": lambda spec: f"{RESULTS}/models/lowshot/{model_folder(spec)}/model.h5",
    "learned_reg": lambda spec: f"{RESULTS}/models/learned_reg/S{spec.shots}/stats.h5",
}


def recover_inputs(wildcards):
    """Data files, the model file the method's class asks for (if any), and the same
    shard's recovery file of the method it starts from (if any: IAGAN from CSGM)."""
    inputs = {
        "images": f"{RESULTS}/data/images.h5",
        "splits": f"{RESULTS}/data/splits.h5",
    }
    spec = lsmethods.parse_method(wildcards.method)
    method_class = lsmethods.family(spec)
    if method_class.model is not None:
        inputs["model"] = MODEL_FILES[method_class.model](spec)
    if method_class.starts_from is not None:
        inputs["start"] = RECOVERY_FILE.format(
            problem=wildcards.problem,
            method=method_class.starts_from,
            shard=wildcards.shard,
        )
    return inputs
