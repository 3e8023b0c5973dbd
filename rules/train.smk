# Training stage: the WGAN-GP generator for CSGM/IAGAN and the low-shot models (eq. 1).
# Both train from resumable checkpoints under results/checkpoints/: a killed or preempted
# job rerun with --rerun-incomplete continues from the last checkpoint.

# The lowshot section less shots, losses and replicates: they choose the jobs, so they
# stay out of the params (a new shot count or replicate must not rerun the trained models).
from lowshot.training.settings import gan_rule_settings, lowshot_settings

# The GAN's validation curve (gan.validate_every > 0; lowshot/training/validation.py) is
# an output only when it is on; while it is off the params leave its keys out
# (gan_rule_settings), so a config that leaves it off reruns no trained GAN.
GAN_VALIDATION = (
    {"validation": f"{RESULTS}/models/gan/validation.csv"}
    if config["gan"]["validate_every"]
    else {}
)


rule train_gan:
    input:
        images=f"{RESULTS}/data/images.h5",
        splits=f"{RESULTS}/data/splits.h5",
    output:
        **GAN_VALIDATION,
        generator=f"{RESULTS}/models/gan/generator.h5",
        losses=f"{RESULTS}/models/gan/losses.csv",
        samples=report(
            f"{RESULTS}/models/gan/samples.png",
            caption="../report/gan_samples.rst",
            category="Training",
        ),
    log:
        f"{RESULTS}/logs/train_gan/train_gan.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_gan/train_gan.tsv"
    # Half of the recovery jobs wait for the GAN: start it before any ready recovery.
    priority: 10
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=lambda wildcards, attempt: 24 * 60 * attempt,
    params:
        settings=gan_rule_settings(config["gan"]),
        runtime=RUNTIME,
        checkpoint=f"{RESULTS}/checkpoints/gan/checkpoint.pt",
    script:
        "../scripts/train_gan.py"


# {replicate} is "" for replicate 1 (the paper's model: its paths, params and seed are
# those of before replicates existed, so an existing tree reruns nothing) and "_r<r>" for
# replicate r >= 2 (lowshot.replicates); the script reads the replicate from it.
rule pretrain_lowshot:
    input:
        images=f"{RESULTS}/data/images.h5",
        splits=f"{RESULTS}/data/splits.h5",
    output:
        model=f"{RESULTS}/models/lowshot/{{loss}}_S{{shots}}{{replicate}}/model.h5",
        losses=f"{RESULTS}/models/lowshot/{{loss}}_S{{shots}}{{replicate}}/losses.csv",
    log:
        f"{RESULTS}/logs/pretrain_lowshot/{{loss}}_S{{shots}}{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain_lowshot/{{loss}}_S{{shots}}{{replicate}}.tsv"
    wildcard_constraints:
        loss="l2|mmd",
        shots=r"\d+",
        replicate=lsmethods.REPLICATE_FOLDER_SUFFIX,
    priority: 10
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 8 * 60 * attempt,
    params:
        settings=lowshot_settings(config["lowshot"]),
        runtime=RUNTIME,
        checkpoint=f"{RESULTS}/checkpoints/lowshot/{{loss}}_S{{shots}}{{replicate}}.pt",
    script:
        "../scripts/pretrain_lowshot.py"


# CS-DIP's learned regulariser (method learned_reg): the untrained network fitted to each
# of the S examples, and the Gaussian of the fitted networks' per-layer weight means. Its
# settings are the fitting part of recover.learned_reg (the recovery's own recipe), so that
# the prior's weight or the recovery window refit nothing. One batched optimisation, minutes
# on a GPU: not checkpointed, a killed job starts again.
from lowshot.methods.learned_reg import fit_settings as learned_reg_fit_settings


rule fit_learned_reg:
    input:
        images=f"{RESULTS}/data/images.h5",
        splits=f"{RESULTS}/data/splits.h5",
    output:
        stats=f"{RESULTS}/models/learned_reg/S{{shots}}/stats.h5",
        fits=f"{RESULTS}/models/learned_reg/S{{shots}}/fits.csv",
    log:
        f"{RESULTS}/logs/fit_learned_reg/S{{shots}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit_learned_reg/S{{shots}}.tsv"
    wildcard_constraints:
        shots=r"\d+",
    priority: 10
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        # S = 100 DCGANs with their RMSprop state: ~8 GB.
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=lambda wildcards, attempt: 4 * 60 * attempt,
    params:
        settings=learned_reg_fit_settings(config["recover"]["learned_reg"]),
        runtime=RUNTIME,
    script:
        "../scripts/fit_learned_reg.py"
