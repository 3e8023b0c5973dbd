# Report stage: the per-image metrics table and PSNR summary (collect_metrics), Figure 1
# (compressed sensing, from the summary) and Figure 2 (colorization, from the recovered
# images). Figure 1 is defined only when compressed-sensing ratios are configured and
# Figure 2 only when colorization is enabled, so asking for a figure a config cannot
# make fails with "no rule to produce" instead of a missing recovery file.
# REPORT_TARGETS lists every output of this file that the config can build (for `all`).

TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
FIGURE1_ENABLED = bool(config["problems"]["compressed_sensing"]["ratios"])
FIGURE2_ENABLED = bool(config["problems"]["colorization"]["enabled"])
# Figure 2's rows after the true and grayscale images, in the paper's order: GAN (CSGM),
# IAGAN, untrained, then the low-shot model; baselines not configured are left out.
FIGURE2_METHODS = [
    name
    for name in ("csgm", "iagan", "untrained")
    if name in config["recover"]["baselines"]
] + [
    lsconfig.Method(
        "lowshot", config["report"]["figure2_loss"], config["report"]["figure2_shots"]
    ).name
]
REPORT_TARGETS = (
    [f"{TABLES}/metrics.csv"]
    + expand(f"{TABLES}/psnr_summary.{{ext}}", ext=["csv", "md", "tex"])
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
    script:
        "../scripts/collect_metrics.py"


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
                labels={"figure": "Figure 1: compressed sensing"},
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
        script:
            "../scripts/figure1.py"


if FIGURE2_ENABLED:

    rule figure2:
        input:
            images=f"{RESULTS}/data/images.h5",
            splits=f"{RESULTS}/data/splits.h5",
            recovery=recovery_files(["colorization"], FIGURE2_METHODS),
        output:
            pdf=f"{FIGURES}/figure2.pdf",
            png=report(
                f"{FIGURES}/figure2.png",
                caption="../report/figure2.rst",
                category="Figures",
                labels={"figure": "Figure 2: colorization"},
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
            methods=FIGURE2_METHODS,
            n_images=min(config["report"]["figure2_images"], config["split"]["n_test"]),
        script:
            "../scripts/figure2.py"
