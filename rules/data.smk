# Data stage: CelebA (official release or any zip/folder of images) -> the HDF5 image
# store -> the split into test images, GAN corpus and nested low-shot subsets.
from lowshot.data.fingerprint import data_fingerprint

# The extraction depends on what the data files hold, not on their paths: their checksums
# are its params (lowshot/data/fingerprint.py). A source that is not a zip or a folder, or
# a missing file while the store must be built, stops the run here, before any job.
DATA_FINGERPRINT = data_fingerprint(
    lsconfig.data_files(config, ROOT), f"{RESULTS}/data/images.h5"
)


rule extract_images:
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
        checksums=DATA_FINGERPRINT,
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
