"""A torch job that asked for a GPU fails at once, saying what to check, where CUDA
cannot be used, instead of ``device: auto`` falling back to the CPU for its whole time
limit and retries. profiles/slurm asks for one with ``gpu: 1`` (sbatch --gpus),
profiles/gpu-node with a ``gpu_mem_mb`` share of the card; each torch rule's script reads
its job's resources (``lowshot.jobs.gpu_request``) and ``prepare_device`` checks them.

CUDA's availability is patched, so these hold on a GPU machine too: the rules' scripts
are run as Snakemake runs them (with a stand-in ``snakemake`` object carrying each
profile's resources for that rule), not through a workflow.
"""

from __future__ import annotations

import logging
import runpy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_profiles import GPU_RULES, SLURM_PROFILE, profile_document

from lowshot import devices
from lowshot.config import runtime_settings, validate_config
from lowshot.jobs import gpu_request
from lowshot.methods.learned_reg import fit_settings
from lowshot.training.settings import gan_rule_settings, lowshot_settings

ROOT = Path(__file__).resolve().parent.parent
GPU_NODE = ROOT / "profiles" / "gpu-node" / "config.yaml"


def profiles() -> dict[str, dict[str, Any]]:
    """Each GPU profile's set-resources, by profile name."""
    return {
        "slurm": profile_document(SLURM_PROFILE)["set-resources"],
        "gpu-node": yaml.safe_load(GPU_NODE.read_text())["set-resources"],
    }


@pytest.mark.parametrize(
    ("resources", "asked"),
    [
        ({"gpu": 1, "mem_mb": 8000}, "gpu=1"),
        ({"gpu_mem_mb": 8000}, "gpu_mem_mb=8000"),
        ({"gres": "gpu:a100:1"}, "gres=gpu:a100:1"),
        ({"gres": "shard:2"}, None),
        ({"gpu": 0, "gpu_mem_mb": 0}, None),
        ({"mem_mb": 4000, "runtime": 60}, None),
    ],
)
def test_what_resources_ask_of_a_gpu(resources: dict, asked: str | None) -> None:
    assert gpu_request(resources) == asked


@pytest.mark.parametrize("profile", ["slurm", "gpu-node"])
def test_the_gpu_profiles_torch_rules_and_only_those_ask_for_a_gpu(profile: str) -> None:
    set_resources = profiles()[profile]
    asking = {rule for rule, values in set_resources.items() if gpu_request(values)}
    assert asking == GPU_RULES


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


class Names(dict):
    """A dict read by attribute too, as Snakemake's Namedlists are."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def stand_in(rule: str, resources: dict[str, Any], tmp_path: Path) -> Names:
    """What the rule's script reads of ``snakemake``, for the paper's config (device
    auto) and inputs that do not exist: the job must stop before it reads any."""
    config = validate_config({})
    runtime = runtime_settings(config)
    settings = {
        "train_gan": gan_rule_settings(config["gan"]),
        "pretrain_lowshot": lowshot_settings(config["lowshot"]),
        "fit_learned_reg": fit_settings(config["recover"]["learned_reg"]),
        "recover": config["recover"]["csgm"],
    }[rule]
    missing = str(tmp_path / "missing.h5")
    return Names(
        input=Names(images=missing, splits=missing, model=missing),
        output=Names(
            {0: str(tmp_path / "out.h5")},
            generator="g.h5",
            losses="l.csv",
            samples="s.png",
            model="m.h5",
            stats="s.h5",
            fits="f.csv",
        ),
        log=[str(tmp_path / "job.log")],
        params=Names(
            runtime=runtime,
            settings=settings,
            checkpoint=str(tmp_path / "c.pt"),
            plugins=[],
            positions=[0, 1],
            noise_std=0.0,
        ),
        wildcards=Names(problem="cs-0.1", method="csgm", loss="l2", shots="10", replicate=""),
        threads=1,
        resources=Names(resources),
    )


@pytest.mark.parametrize("profile", ["slurm", "gpu-node"])
@pytest.mark.parametrize("rule", sorted(GPU_RULES))
def test_a_gpu_rule_fails_at_once_without_cuda(
    profile: str, rule: str, no_cuda: None, tmp_path: Path
) -> None:
    resources = profiles()[profile][rule]
    snakemake = stand_in(rule, resources, tmp_path)
    with pytest.raises(RuntimeError, match=r"this job asked for a GPU \((gpu|gpu_mem_mb)=") as err:
        runpy.run_path(str(ROOT / "scripts" / f"{rule}.py"), init_globals={"snakemake": snakemake})
    message = str(err.value)
    assert "torch sees no CUDA device" in message and "CUDA_VISIBLE_DEVICES=<unset>" in message
    assert "Stopping now rather than running on the CPU" in message
    # It stopped before reading any input (they do not exist) or writing any output.
    assert not (tmp_path / "out.h5").exists()


def test_without_a_gpu_request_auto_runs_on_the_cpu(no_cuda: None) -> None:
    assert devices.prepare_device("auto", 1, "fp32", None).type == "cpu"


def test_device_cpu_runs_a_gpu_request_on_the_cpu_on_purpose(
    no_cuda: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lowshot.devices"):
        assert devices.prepare_device("cpu", 1, "fp32", "gpu=1").type == "cpu"
    assert "asked for a GPU (gpu=1), but device: cpu runs it on the CPU" in caplog.text


def test_a_card_that_will_not_start_is_named_with_the_exclusive_process_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def busy() -> None:
        raise RuntimeError("CUDA error: CUDA-capable device(s) is/are busy or unavailable")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices, "_start_cuda", busy)
    with pytest.raises(RuntimeError, match="exclusive-process compute mode") as err:
        devices.prepare_device("auto", 1, "fp32", "gpu_mem_mb=8000")
    assert "busy or unavailable" in str(err.value)
    assert "profiles/gpu-node/config.yaml" in str(err.value)
