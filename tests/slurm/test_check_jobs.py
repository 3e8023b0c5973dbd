"""The live-Slurm harness's checker (check_jobs.py) on made-up Snakemake logs and sacct rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from check_jobs import (
    benchmark_seconds,
    check,
    gpus_of,
    jobs_in_slurm_log,
    main,
    megabytes,
    minutes,
    parse_sacct,
    parse_submissions,
    report,
    seconds_between,
    tres_of,
)

GPU_RULES = {"train_gan", "pretrain_lowshot", "fit_learned_reg", "recover"}
GROUP_ID = "d888915d-6d82-561d-94db-3b6bf1a54ee7"
# Every made-up job's resources, as Snakemake prints them: 8000 MB, 60 min, 2 CPUs.
RESOURCES = (
    "tmpdir=<TBD>, disk_mb=1000, disk=1 GB, disk_mib=954, mem_mb=8000, mem=8 GB, "
    "mem_mib=7630, runtime=60, cpus_per_task=2, group_slot=1, slurm_partition=gpu, gpu=1"
)


def slurm_log(jobs: list[tuple[str, str]]) -> str:
    """What a Slurm job's log holds, shortened: the Snakemake in the allocation announces
    each job (`rule NAME:`), the one of the job step below it says `localrule NAME:`."""
    blocks = []
    for rule, wildcards in jobs:
        block = [f"rule {rule}:", "    input: a", "    jobid: 0"]
        if wildcards:
            block.append(f"    wildcards: {wildcards}")
        block += [f"    resources: {RESOURCES}", "", f"localrule {rule}:", "    jobid: 0"]
        if wildcards:
            block.append(f"    wildcards: {wildcards}")
        blocks.append("\n".join([*block, f"Finished jobid: 0 (Rule: {rule})"]))
    return "Building DAG of jobs...\n" + "\n\n".join(blocks) + "\n"


def write_run(tmp_path: Path, jobs: list[tuple[str, str, str]]) -> tuple[str, Path]:
    """A Snakemake log naming one submission per (rule, wildcards, slurm id), and the Slurm
    log files the plugin keeps, laid out as the plugin lays them out. A rule named
    `group:NAME` is a group job: its wildcards are `rule|wildcards;...` of the jobs it ran."""
    lines = []
    for number, (rule, wildcards, slurm_id) in enumerate(jobs):
        if rule.startswith("group:"):
            folder = tmp_path / ".snakemake" / "slurm_logs" / f"group_{rule[len('group:') :]}"
            ran = [tuple(item.split("|")) for item in wildcards.split(";")]
            jobid = GROUP_ID
        else:
            folder = tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}"
            if wildcards:
                folder = folder / wildcards
            ran = [(rule, wildcards.replace("_", ", "))]
            jobid = str(number)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{slurm_id}.log").write_text(slurm_log(ran))
        relative = (folder / f"{slurm_id}.log").relative_to(tmp_path)
        lines.append(
            f"Job {jobid} has been submitted with SLURM jobid {slurm_id} (log: {relative})."
        )
    return "\n".join(["Building DAG of jobs...", *lines, "Finished"]), tmp_path


def sacct_row(
    slurm_id: str,
    rule: str,
    wildcards: str,
    gpus: int,
    state: str = "COMPLETED",
    mem: str = "8000M",
    timelimit: str = "01:00:00",
) -> str:
    tres = "billing=1,cpu=2," + (f"gres/gpu={gpus}," if gpus else "") + f"mem={mem},node=1"
    comment = f"rule_{rule}" + (f"_wildcards_{wildcards}" if wildcards else "")
    exit_code = "0:0" if state == "COMPLETED" else "1:0"
    return (
        f"{slurm_id}|uuid|gpu|lowshot-ci|{state}|{exit_code}|2026-01-01T10:00:00|"
        f"2026-01-01T10:00:02|2026-01-01T10:00:12|{tres}|{timelimit}|{comment}"
    )


def test_parse_submissions_reads_rule_and_wildcards(tmp_path: Path) -> None:
    log, workdir = write_run(
        tmp_path, [("extract_images", "", "7"), ("recover", "cs-0.1_lowshot-mmd-S10_0", "8")]
    )
    subs = parse_submissions(log, workdir)
    assert [(s.rule, s.wildcards, s.slurm_jobid, s.group) for s in subs] == [
        ("extract_images", "", "7", False),
        ("recover", "cs-0.1_lowshot-mmd-S10_0", "8", False),
    ]
    assert all(s.logfile.is_file() for s in subs)
    assert subs[0].jobs == (("extract_images", ""),)
    assert subs[1].rules == {"recover"}


def test_parse_submissions_reads_group_jobs_and_what_they_ran(tmp_path: Path) -> None:
    ran = (
        "recover|problem=cs-0.1, method=csgm, shard=0;recover|problem=cs-0.1, method=iagan, shard=0"
    )
    log, workdir = write_run(
        tmp_path,
        [
            ("group:recover_recover", ran, "9"),
            ("group:data_extract_images_split_data", "extract_images|;split_data|", "10"),
        ],
    )
    recover, data = parse_submissions(log, workdir)
    assert (recover.rule, recover.group, recover.snakemake_jobid) == (
        "recover_recover",
        True,
        GROUP_ID,
    )
    assert recover.jobs == (
        ("recover", "problem=cs-0.1, method=csgm, shard=0"),
        ("recover", "problem=cs-0.1, method=iagan, shard=0"),
    )
    assert data.rules == {"extract_images", "split_data"}


def test_jobs_in_slurm_log_skips_the_job_steps_own_lines() -> None:
    text = slurm_log([("recover", "shard=1"), ("recover", "shard=0")])
    assert jobs_in_slurm_log(text) == (("recover", "shard=1"), ("recover", "shard=0"))
    assert jobs_in_slurm_log("no jobs here\n") == ()


def test_slurm_sizes() -> None:
    tres = "billing=2,cpu=2,gres/gpu=1,mem=16G,node=1"
    assert (tres_of(tres, "cpu"), tres_of(tres, "mem"), tres_of(tres, "gpu")) == ("2", "16G", None)
    assert [megabytes(v) for v in ("8000M", "16G", "1T", "512K")] == [8000, 16384, 1048576, 0]
    assert [minutes(v) for v in ("30:00", "08:00:00", "1-00:00:00", "00:10:30")] == [
        30,
        480,
        1440,
        11,
    ]
    assert minutes("UNLIMITED") is None


def test_sacct_helpers() -> None:
    rows = parse_sacct(sacct_row("5", "recover", "a|b", 1) + "\n\n")
    assert rows["5"]["comment"] == "rule_recover_wildcards_a|b"
    assert gpus_of(rows["5"]["alloctres"]) == 1
    assert gpus_of("cpu=1,mem=1G") == 0
    assert seconds_between(rows["5"]["submit"], rows["5"]["end"]) == 12
    with pytest.raises(ValueError):
        parse_sacct("1|too|few")


def test_check_accepts_a_clean_run(tmp_path: Path) -> None:
    log, workdir = write_run(tmp_path, [("split_data", "", "1"), ("train_gan", "", "2")])
    sacct = parse_sacct(
        "\n".join([sacct_row("1", "split_data", "", 0), sacct_row("2", "train_gan", "", 1)])
    )
    assert check(parse_submissions(log, workdir), sacct, "gpu", GPU_RULES) == []


def test_check_flags_gpu_partition_state_and_missing_jobs(tmp_path: Path) -> None:
    log, workdir = write_run(
        tmp_path,
        [
            ("split_data", "", "1"),
            ("train_gan", "", "2"),
            ("recover", "x", "3"),
            ("recover", "y", "4"),
        ],
    )
    sacct = parse_sacct(
        "\n".join(
            [
                sacct_row("1", "split_data", "", 1),  # CPU rule with a GPU
                sacct_row("2", "train_gan", "", 0),  # GPU rule without one
                sacct_row("3", "recover", "x", 1, state="FAILED"),  # last attempt failed
            ]
        ).replace("|gpu|", "|debug|", 1)  # first job in the wrong partition
    )
    problems = "\n".join(check(parse_submissions(log, workdir), sacct, "gpu", GPU_RULES))
    assert "job 1 (split_data) got 1 GPUs, expected 0" in problems
    assert "job 1 ran in 'debug'" in problems
    assert "job 2 (train_gan) got 0 GPUs, expected 1" in problems
    assert "job 3 (recover): FAILED" in problems
    assert "sacct does not know job 4" in problems


def test_check_accepts_a_retried_job_whose_last_attempt_completed(tmp_path: Path) -> None:
    log, workdir = write_run(tmp_path, [("recover", "x", "3"), ("recover", "x", "4")])
    sacct = parse_sacct(
        "\n".join(
            [sacct_row("3", "recover", "x", 1, state="TIMEOUT"), sacct_row("4", "recover", "x", 1)]
        )
    )
    assert check(parse_submissions(log, workdir), sacct, "gpu", GPU_RULES) == []


def test_check_wants_one_gpu_for_a_group_of_gpu_jobs_and_none_for_a_cpu_group(
    tmp_path: Path,
) -> None:
    recoveries = ";".join(f"recover|problem=p, method=m{i}, shard=0" for i in range(8))
    log, workdir = write_run(
        tmp_path,
        [
            ("group:recover_recover", recoveries, "5"),
            ("group:report_collect_metrics_figure1", "collect_metrics|;figure1|", "6"),
        ],
    )
    subs = parse_submissions(log, workdir)
    # One after another: one job's memory, the sum of the run times (8 x 60 min, 2 x 60).
    good = parse_sacct(
        "\n".join(
            [
                sacct_row("5", "recover_recover", "", 1, timelimit="08:00:00"),
                sacct_row("6", "report_collect_metrics_figure1", "", 0, timelimit="02:00:00"),
            ]
        )
    )
    assert check(subs, good, "gpu", GPU_RULES) == []
    # Side by side: 8 GPUs, 8 x the memory, one run time.
    eight = parse_sacct(
        "\n".join(
            [
                sacct_row("5", "recover_recover", "", 8, mem="64000M", timelimit="01:00:00"),
                sacct_row("6", "report_collect_metrics_figure1", "", 1, timelimit="02:00:00"),
            ]
        )
    )
    problems = "\n".join(check(subs, eight, "gpu", GPU_RULES))
    assert "job 5 (recover_recover) got 8 GPUs, expected 1" in problems
    assert "job 5 (recover_recover) got mem_mb 64000, expected 8000" in problems
    assert "job 5 (recover_recover) got runtime 60, expected 480" in problems
    assert "job 6 (report_collect_metrics_figure1) got 1 GPUs, expected 0" in problems


def test_check_accepts_a_retried_group_whose_last_attempt_completed(tmp_path: Path) -> None:
    ran = "recover|shard=0;recover|shard=1"
    log, workdir = write_run(
        tmp_path, [("group:recover_recover", ran, "3"), ("group:recover_recover", ran, "4")]
    )
    sacct = parse_sacct(
        "\n".join(
            [
                sacct_row("3", "recover_recover", "", 1, state="TIMEOUT", timelimit="02:00:00"),
                sacct_row("4", "recover_recover", "", 1, timelimit="02:00:00"),
            ]
        )
    )
    assert check(parse_submissions(log, workdir), sacct, "gpu", GPU_RULES) == []


def test_check_flags_a_slurm_log_that_names_no_job(tmp_path: Path) -> None:
    log, workdir = write_run(tmp_path, [("train_gan", "", "2")])
    (workdir / ".snakemake/slurm_logs/rule_train_gan/2.log").write_text("srun: error\n")
    assert check(parse_submissions(log, workdir), None, "gpu", GPU_RULES) == [
        "the Slurm log of job 2 names no job it ran"
    ]


def test_benchmark_seconds_and_the_overhead_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "benchmarks" / "recover"
    folder.mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\n"
    (folder / "a.tsv").write_text(header + "10.5\t0:00:10\t100\n")
    (folder / "b.tsv").write_text(header + "4.5\t0:00:04\t100\n")
    assert benchmark_seconds(tmp_path / "benchmarks") == 15.0
    log, workdir = write_run(
        tmp_path,
        [
            ("extract_images", "", "1"),
            ("group:recover_recover", "recover|shard=0;recover|shard=1", "2"),
        ],
    )
    report(parse_submissions(log, workdir), None, wall_seconds=55.0, rule_seconds=15.0)
    out = capsys.readouterr().out
    assert "group recover_recover" in out and "2 jobs: recover x2" in out
    assert "jobs submitted: 2 Slurm jobs for 3 rule jobs (1 of one rule, 1 group jobs)" in out
    assert "27.5s per job" in out
    assert "(15s, benchmarks): 40s, 20.0s per Slurm job, 13.3s per rule job" in out
    assert "inside the allocations" not in out  # no sacct rows
    sacct = parse_sacct(
        "\n".join(
            [sacct_row("1", "extract_images", "", 0), sacct_row("2", "recover_recover", "", 1)]
        )
    )
    report(parse_submissions(log, workdir), sacct, wall_seconds=55.0, rule_seconds=15.0)
    out = capsys.readouterr().out
    # Two Slurm jobs of 10 s each (sacct_row), 15 s of it the rules' own.
    assert "sacct run time (20s) less the rules' own: 5s, 2.5s per Slurm job" in out


def test_check_without_submissions_or_logs_fails(tmp_path: Path) -> None:
    assert check([], None, "gpu", GPU_RULES) == ["the Snakemake log names no sbatch submission"]
    log, workdir = write_run(tmp_path, [("train_gan", "", "2")])
    (workdir / ".snakemake/slurm_logs/rule_train_gan/2.log").unlink()
    assert check(parse_submissions(log, workdir), None, "gpu", GPU_RULES) == [
        f"no Slurm log {workdir / '.snakemake/slurm_logs/rule_train_gan/2.log'} for job 2"
    ]


def test_main_prints_job_ids_and_returns_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, workdir = write_run(tmp_path, [("train_gan", "", "2")])
    (tmp_path / "snakemake.log").write_text(log)
    (tmp_path / "sacct.txt").write_text(sacct_row("2", "train_gan", "", 1))
    args = ["--snakemake-log", str(tmp_path / "snakemake.log"), "--workdir", str(workdir)]
    args += ["--sacct", str(tmp_path / "sacct.txt"), "--gpu-rules", ",".join(GPU_RULES)]
    assert main([*args, "--partition", "gpu", "--wall-seconds", "30"]) == 0
    out = capsys.readouterr().out
    assert "train_gan" in out and "slurm job     2" in out and "gpus=1" in out
    assert main([*args, "--partition", "other"]) == 1
