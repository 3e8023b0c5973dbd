# Recovery stage: one job per (problem, method, shard of test images).


rule recover:
    input:
        unpack(recover_inputs),
    output:
        RECOVERY_FILE,
    log:
        f"{RESULTS}/logs/recover/{{problem}}/{{method}}/shard{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/recover/{{problem}}/{{method}}/shard{{shard}}.tsv"
    wildcard_constraints:
        problem="|".join(map(re.escape, PROBLEMS)),
        method="|".join(map(re.escape, METHODS)),
        shard=r"\d+",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        settings=lambda wildcards: lsmethods.method_settings(config, wildcards.method),
        noise_std=lambda wildcards: lsproblems.noise_std(config, wildcards.problem),
        positions=lambda wildcards: lsconfig.shard_positions(
            config, int(wildcards.shard)
        ),
        runtime=RUNTIME,
        plugins=PLUGINS,
    script:
        "../scripts/recover.py"
