# Report stage: the per-image metrics table and PSNR summary (collect_metrics), the
# paper's claims tested on that table (check_claims: claims.{csv,md}), Figure 1
# (PSNR against the parameter of report.figure1_problem, from the summary), Figure 2
# (the report.figure2_problem grid, from the recovered images) and Figure 3 (beyond the
# paper: every method on every problem at S = report.figure3_shots, from the summary).
# Figures 1 and 2 are defined only when the config has a problem of their kind, so
# asking for a figure a config cannot make fails with "no rule to produce" instead of a
# missing recovery file; Figure 3 can always be made.
# REPORT_TARGETS lists every output of this file that the config can build (for `all`).

TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
REPORT = config["report"]
PROBLEM_SPECS = lsproblems.problem_specs(config)
FIGURE1_ENABLED = any(spec.kind == REPORT["figure1_problem"] for spec in PROBLEM_SPECS)
FIGURE2_PROBLEMS = [
    spec.name for spec in PROBLEM_SPECS if spec.kind == REPORT["figure2_problem"]
]
FIGURE2_ENABLED = bool(FIGURE2_PROBLEMS)
# Figure 2's rows after the true and input images, in the configured order; methods
# whose kind the config does not run are left out (lowshot.config.check_config).
FIGURE2_METHODS = [
    name
    for name in REPORT["figure2_methods"]
    if lsmethods.parse_method(name).kind in config["recover"]["methods"]
]
# Figure 3 shows the methods that have a shot count at this S only: a config whose
# methods have shot counts, none of them this one, is an error before any job.
FIGURE3_SHOTS = REPORT["figure3_shots"]
SHOT_COUNTS = sorted(
    {spec.shots for spec in lsmethods.method_specs(config) if spec.shots is not None}
)
if SHOT_COUNTS and FIGURE3_SHOTS not in SHOT_COUNTS:
    raise lsconfig.ConfigError(
        f"report.figure3_shots: {FIGURE3_SHOTS} is none of the shot counts this config's "
        f"methods run ({SHOT_COUNTS}, from lowshot.shots); set it to one of them"
    )
REPORT_TARGETS = (
    [f"{TABLES}/metrics.csv"]
    + expand(f"{TABLES}/psnr_summary.{{ext}}", ext=["csv", "md", "tex"])
    + expand(f"{TABLES}/claims.{{ext}}", ext=["csv", "md"])
    + (
        expand(f"{FIGURES}/figure1.{{ext}}", ext=["pdf", "png"])
        if FIGURE1_ENABLED
        else []
    )
    + (
        expand(f"{FIGURES}/figure2.{{ext}}", ext=["pdf", "png"])
        if FIGURE2_ENABLED
        else []
    )
    + expand(f"{FIGURES}/figure3.{{ext}}", ext=["pdf", "png"])
)


rule collect_metrics:
    input:
        recovery=RECOVERY_FILES,
    output:
        metrics=report(
            f"{TABLES}/metrics.csv",
            caption="../report/metrics.rst",
            category="Tables",
            labels={"table": "per-image metrics"},
        ),
        summary_csv=report(
            f"{TABLES}/psnr_summary.csv",
            caption="../report/psnr_summary.rst",
            category="Tables",
            labels={"table": "PSNR summary"},
        ),
        summary_md=f"{TABLES}/psnr_summary.md",
        summary_tex=f"{TABLES}/psnr_summary.tex",
    log:
        f"{RESULTS}/logs/collect_metrics/collect_metrics.log",
    benchmark:
        f"{RESULTS}/benchmarks/collect_metrics/collect_metrics.tsv"
    conda:
        "../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plugins=PLUGINS,
    script:
        "../scripts/collect_metrics.py"


rule check_claims:
    input:
        metrics=f"{TABLES}/metrics.csv",
    output:
        claims_csv=report(
            f"{TABLES}/claims.csv",
            caption="../report/claims.rst",
            category="Tables",
            labels={"table": "claims"},
        ),
        claims_md=f"{TABLES}/claims.md",
    log:
        f"{RESULTS}/logs/check_claims/check_claims.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_claims/check_claims.tsv"
    conda:
        "../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=config["claims"],
        plugins=PLUGINS,
    script:
        "../scripts/check_claims.py"


if FIGURE1_ENABLED:

    rule figure1:
        input:
            summary=f"{TABLES}/psnr_summary.csv",
        output:
            pdf=f"{FIGURES}/figure1.pdf",
            png=report(
                f"{FIGURES}/figure1.png",
                caption="../report/figure1.rst",
                category="Figures",
                labels={"figure": "Figure 1: PSNR against m/n"},
            ),
        log:
            f"{RESULTS}/logs/figure1/figure1.log",
        benchmark:
            f"{RESULTS}/benchmarks/figure1/figure1.tsv"
        conda:
            "../envs/plots.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            problem_kind=REPORT["figure1_problem"],
            plugins=PLUGINS,
        script:
            "../scripts/figure1.py"


if FIGURE2_ENABLED:

    rule figure2:
        input:
            images=f"{RESULTS}/data/images.h5",
            splits=f"{RESULTS}/data/splits.h5",
            recovery=recovery_files(FIGURE2_PROBLEMS[:1], FIGURE2_METHODS),
        output:
            pdf=f"{FIGURES}/figure2.pdf",
            png=report(
                f"{FIGURES}/figure2.png",
                caption="../report/figure2.rst",
                category="Figures",
                labels={"figure": "Figure 2: recovered images"},
            ),
        log:
            f"{RESULTS}/logs/figure2/figure2.log",
        benchmark:
            f"{RESULTS}/benchmarks/figure2/figure2.tsv"
        conda:
            "../envs/plots.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            problem=FIGURE2_PROBLEMS[0] if FIGURE2_ENABLED else None,
            methods=FIGURE2_METHODS,
            n_images=min(REPORT["figure2_images"], config["split"]["n_test"]),
            plugins=PLUGINS,
        script:
            "../scripts/figure2.py"


rule figure3:
    input:
        summary=f"{TABLES}/psnr_summary.csv",
    output:
        pdf=f"{FIGURES}/figure3.pdf",
        png=report(
            f"{FIGURES}/figure3.png",
            caption="../report/figure3.rst",
            category="Figures",
            labels={"figure": "Figure 3: beyond the paper"},
        ),
    log:
        f"{RESULTS}/logs/figure3/figure3.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure3/figure3.tsv"
    conda:
        "../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        shots=FIGURE3_SHOTS,
        plugins=PLUGINS,
    script:
        "../scripts/figure3.py"
