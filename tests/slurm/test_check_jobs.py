"""The live-Slurm harness's checker (check_jobs.py) on made-up Snakemake logs and sacct rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from check_jobs import check, gpus_of, main, parse_sacct, parse_submissions, seconds_between

GPU_RULES = {"train_gan", "pretrain_lowshot", "recover"}


def write_run(tmp_path: Path, jobs: list[tuple[str, str, str]]) -> tuple[str, Path]:
    """A Snakemake log naming one submission per (rule, wildcards, slurm id), and the Slurm
    log files the plugin keeps, laid out as the plugin lays them out."""
    lines = []
    for number, (rule, wildcards, slurm_id) in enumerate(jobs):
        folder = tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}"
        if wildcards:
            folder = folder / wildcards
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{slurm_id}.log").write_text("done\n")
        relative = (folder / f"{slurm_id}.log").relative_to(tmp_path)
        lines.append(
            f"Job {number} has been submitted with SLURM jobid {slurm_id} (log: {relative})."
        )
    return "\n".join(["Building DAG of jobs...", *lines, "Finished"]), tmp_path


def sacct_row(slurm_id: str, rule: str, wildcards: str, gpus: int, state: str = "COMPLETED") -> str:
    tres = "billing=1,cpu=2," + (f"gres/gpu={gpus}," if gpus else "") + "mem=8000M,node=1"
    comment = f"rule_{rule}" + (f"_wildcards_{wildcards}" if wildcards else "")
    exit_code = "0:0" if state == "COMPLETED" else "1:0"
    return (
        f"{slurm_id}|uuid|gpu|lowshot-ci|{state}|{exit_code}|2026-01-01T10:00:00|"
        f"2026-01-01T10:00:02|2026-01-01T10:00:12|{tres}|{comment}"
    )


def test_parse_submissions_reads_rule_and_wildcards(tmp_path: Path) -> None:
    log, workdir = write_run(
        tmp_path, [("extract_images", "", "7"), ("recover", "cs-0.1_lowshot-mmd-S10_0", "8")]
    )
    subs = parse_submissions(log, workdir)
    assert [(s.rule, s.wildcards, s.slurm_jobid) for s in subs] == [
        ("extract_images", "", "7"),
        ("recover", "cs-0.1_lowshot-mmd-S10_0", "8"),
    ]
    assert all(s.logfile.is_file() for s in subs)


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
