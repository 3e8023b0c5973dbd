# Data stage: CelebA (official release or any zip/folder of images) -> the HDF5 image
# store -> the split into test images, GAN corpus and nested low-shot subsets.
import lowshot.data as lsdata

DATA_SOURCE = lsconfig.data_source(config, ROOT)
PARTITION_FILE = lsconfig.resolve_data_path(config["data"]["partition_file"], ROOT)
IDENTITY_FILE = lsconfig.resolve_data_path(config["data"]["identity_file"], ROOT)
# A missing source stops the run here, before any job, with a message on how to get CelebA.
lsdata.check_data_paths(DATA_SOURCE, PARTITION_FILE, IDENTITY_FILE)
# The partition and identity files are inputs too, so that changing them reruns the stage.
EXTRACT_INPUTS = {
    name: str(path)
    for name, path in (
        ("source", DATA_SOURCE),
        ("partition_file", PARTITION_FILE),
        ("identity_file", IDENTITY_FILE),
    )
    if path is not None
}


rule extract_images:
    input:
        **EXTRACT_INPUTS,
    output:
        f"{RESULTS}/data/images.h5",
    log:
        f"{RESULTS}/logs/extract_images/extract_images.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_images/extract_images.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        crop=config["data"]["crop"],
        image_size=config["data"]["image_size"],
        max_images=config["data"]["max_images"],
    script:
        "../scripts/extract_images.py"


rule split_data:
    input:
        f"{RESULTS}/data/images.h5",
    output:
        f"{RESULTS}/data/splits.h5",
    log:
        f"{RESULTS}/logs/split_data/split_data.log",
    benchmark:
        f"{RESULTS}/benchmarks/split_data/split_data.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        n_test=config["split"]["n_test"],
        n_validation=config["split"]["n_validation"],
        shots=config["lowshot"]["shots"],
        gan_corpus_size=config["split"]["gan_corpus_size"],
        seed=config["seed"],
    script:
        "../scripts/split_data.py"
