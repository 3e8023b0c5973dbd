"""Capture safety, checked on the CPU: whatever runs inside a step that
``cuda_graphs: True`` captures as a CUDA graph must be device work of static shapes, with
no host synchronisation and no random draw (``lowshot.cuda_graphs.capture_check``).

Every registered problem's A and A_adjoint (forward and backward), the engine's z step
and joint step (both joint paths) on every problem, every registered method's recovery
and the low-shot pre-training step run here with graphs "on" on the CPU: the seams of
``lowshot.cuda_graphs`` (``graphs_on``, ``stepper``) are patched so that the loops build
what they build for a capture (a ``capturable`` optimiser, autocast without its cache)
and run each step under the check instead of capturing it. The registries are iterated,
so a new problem or method is checked without editing this file (tests/standins.py
holds the examples and stand-ins, and says what a new family or model kind needs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch
from standins import LATENT, WIDTH, every_problem, operator_of, run_method, tiny_generator

from lowshot import cuda_graphs
from lowshot.cuda_graphs import CaptureError, capture_check
from lowshot.methods import METHODS, batched_generator, engine
from lowshot.methods.engine import optimise_joint, optimise_latent, stack_parameters
from lowshot.problems.inpainting import Inpainting, random_mask
from lowshot.training import TrainingRun, build_lowshot
from lowshot.training.settings import lowshot_settings

pytestmark = pytest.mark.usefixtures("one_thread")

# --- the check itself: what it rejects, what it lets through ----------------------------


MASK = torch.arange(64 * 64).reshape(64, 64) % 3 == 0
REJECTED: dict[str, Callable[[torch.Tensor], Any]] = {
    "boolean-mask read": lambda x: x[:, :, MASK],
    "boolean-mask write": lambda x: (
        x.detach().clone().__setitem__((slice(None), slice(None), MASK), 0.0)
    ),
    "nonzero": lambda x: (x > 0).nonzero(),
    "masked_select": lambda x: x.masked_select(x > 0),
    "item": lambda x: x.sum().item(),
    "float()": lambda x: float(x.detach().sum()),
    "Python if on a tensor": lambda x: bool((x > 0).any()),
    "tolist": lambda x: x.detach().sum().tolist(),
    "cpu()": lambda x: x.cpu(),
    "to('cpu')": lambda x: x.to("cpu"),
    "random draw": lambda x: x + torch.randn(x.shape),
    "torch.tensor": lambda x: x * torch.tensor(2.0),
}


@pytest.mark.parametrize("what", list(REJECTED))
def test_the_check_rejects_what_a_capture_rejects(what: str) -> None:
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    with pytest.raises(CaptureError), capture_check():
        REJECTED[what](x)
    # Outside the check the same code runs, and torch.Tensor's methods are restored.
    REJECTED[what](x)
    assert torch.Tensor.cpu is not None and x.to(torch.float64).dtype == torch.float64


def test_the_check_lets_static_device_work_through() -> None:
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    index = MASK.flatten().nonzero().squeeze(1)
    with capture_check():
        picked = x.flatten(2).index_select(2, index)
        gathered = x.flatten(2)[:, :, index]  # integer indexing: shape-static
        kept = torch.where(x > 0, x, torch.zeros_like(x)).masked_fill(x < -3, 0.0)
        low, high = torch.aminmax(kept.flatten(1), dim=1)
        total = picked.sum() + gathered.sum() + low.sum() + high.sum() + x.to(torch.float64).sum()
        total.backward()
    assert x.grad is not None and x.grad.shape == x.shape


# --- the old inpainting, kept here to show what the check catches -----------------------


class BooleanMaskInpainting(Inpainting):
    """Inpainting as it was before its measurements became shape-static: A and A_adjoint
    by indexing with the boolean mask (a ``nonzero`` and a host sync on every call)."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, self.mask].flatten(1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        image = y.new_zeros(y.shape[0], 3, 64, 64)
        image[:, :, self.mask] = y.reshape(y.shape[0], 3, -1)
        return image


@pytest.mark.parametrize("name", ["inpaint-0.3", "inpaint-0.01", "inpaint-box32"])
def test_inpainting_measures_as_the_boolean_mask_does(name: str) -> None:
    """The same values, bit for bit, as the boolean-mask formula, and its adjoint."""
    operator = operator_of(name)
    old = BooleanMaskInpainting(name, operator.mask)
    x = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    y = torch.randn(3, operator.m, dtype=torch.float64)
    assert torch.equal(operator.A(x), old.A(x))
    assert torch.equal(operator.A_adjoint(y), old.A_adjoint(y))
    assert operator.observed.dtype == torch.int64
    assert operator.observed.shape == (operator.m // 3,)


def test_the_boolean_mask_inpainting_fails_the_check() -> None:
    old = BooleanMaskInpainting("inpaint-0.3", random_mask(0.3, seed=1))
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(CaptureError, match="boolean mask"), capture_check():
        old.A(x)
    y = torch.randn(2, old.m)
    with pytest.raises(CaptureError, match="boolean mask"), capture_check():
        old.A_adjoint(y)


# --- every problem's operator ----------------------------------------------------------


@pytest.mark.parametrize("name", every_problem())
def test_every_problem_measures_capture_safely(name: str) -> None:
    operator = operator_of(name)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    y = torch.randn(2, operator.m)
    with capture_check():
        residual = operator.A(x) - y
        back = operator.A_adjoint(residual)
        (residual.square().sum() + back.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# --- the loops, with graphs "on" on the CPU ---------------------------------------------


class CheckedSteps:
    """Stand-ins for ``lowshot.cuda_graphs``' seams: a loop asked for graphs gets them on
    the CPU too, and every step it would capture runs under ``capture_check``."""

    def __init__(self) -> None:
        self.checked = 0
        # The ``capturable`` flag of every parameter group of the engine's optimisers.
        self.capturable: list[bool] = []

    def graphs_on(self, requested: bool, device: torch.device) -> bool:
        del device
        return requested

    def stepper(
        self, step: Callable[[], Any], device: torch.device, graphs: bool
    ) -> Callable[[], Any]:
        del device
        if not graphs:
            return step

        def checked() -> Any:
            with capture_check():
                result = step()
            self.checked += 1
            return result

        return checked


def _capturable_on(device_types: list[str]) -> Callable[..., list[str]]:
    def supported(supports_xla: bool = True) -> list[str]:
        del supports_xla
        return device_types

    return supported


@pytest.fixture
def graphs_on_cpu(monkeypatch: pytest.MonkeyPatch) -> CheckedSteps:
    """Graph mode on the CPU: the seams patched, and torch's optimisers allowed to run
    their ``capturable`` code (state and step counts on the device, no host sync) on CPU
    tensors, the code a CUDA capture runs."""
    steps = CheckedSteps()
    make = engine.make_optimiser

    def spy(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimiser = make(*args, **kwargs)
        steps.capturable += [group["capturable"] for group in optimiser.param_groups]
        return optimiser

    monkeypatch.setattr(engine, "make_optimiser", spy)
    monkeypatch.setattr(cuda_graphs, "graphs_on", steps.graphs_on)
    monkeypatch.setattr(cuda_graphs, "stepper", steps.stepper)
    supported = _capturable_on(["cpu", "cuda"])
    for name, module in list(sys.modules.items()):
        if name.startswith("torch.optim") and hasattr(module, "_get_capturable_supported_devices"):
            monkeypatch.setattr(module, "_get_capturable_supported_devices", supported)
    return steps


@pytest.mark.parametrize("name", every_problem())
def test_the_engines_steps_are_capture_safe_on_every_problem(
    name: str, graphs_on_cpu: CheckedSteps
) -> None:
    operator, generator = operator_of(name), tiny_generator()
    y = torch.randn(2, operator.m)
    z0 = torch.randn(2, LATENT)
    options = {"steps": 2, "cuda_graphs": True, "progress": False}
    latent = optimise_latent(generator, operator, y, z0, lr=0.01, **options)
    assert graphs_on_cpu.checked == 2
    for path in ("gemm", "vmap"):
        params = stack_parameters(generator, 2)
        optimise_joint(
            generator, params, operator, y, z0, theta_lr=1e-3, z_lr=1e-3, path=path, **options
        )
    assert graphs_on_cpu.checked == 6
    assert graphs_on_cpu.capturable == [True] * 5  # z; theta and z on each path
    assert torch.isfinite(latent.loss).all()


def test_the_gemm_path_a_card_takes_is_capture_safe(
    graphs_on_cpu: CheckedSteps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA the GEMM path never reuses gradient memory (a CPU-only saving,
    ``batched_generator._reusable``): its plain autograd path, checked here too."""
    calls = []

    def never(x: torch.Tensor, weight: torch.Tensor) -> bool:
        calls.append(weight.shape)
        return False

    monkeypatch.setattr(batched_generator, "_reusable", never)
    operator, generator = operator_of("cs-0.05"), tiny_generator()
    optimise_joint(
        generator, stack_parameters(generator, 2), operator, torch.randn(2, operator.m),
        torch.randn(2, LATENT), steps=2, theta_lr=1e-3, z_lr=1e-3, path="gemm",
        cuda_graphs=True, progress=False,
    )  # fmt: skip
    assert graphs_on_cpu.checked == 2 and calls


def test_the_check_fails_the_engine_on_the_boolean_mask_inpainting(
    graphs_on_cpu: CheckedSteps,
) -> None:
    operator = BooleanMaskInpainting("inpaint-0.3", random_mask(0.3, seed=1))
    y = torch.randn(2, operator.m)
    with pytest.raises(CaptureError, match="boolean mask"):
        optimise_latent(
            tiny_generator(), operator, y, torch.randn(2, LATENT), steps=2, lr=0.01,
            cuda_graphs=True, progress=False,
        )  # fmt: skip


# --- every method -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(METHODS.names()))
def test_every_method_recovers_capture_safely(kind: str, graphs_on_cpu: CheckedSteps) -> None:
    """Each method on two problems of different shapes (measurements fewer than pixels,
    and the inpainting mask), with every step it would capture checked."""
    for name in ("cs-0.05", "inpaint-0.3"):
        operator = operator_of(name)
        result = run_method(kind, operator, torch.randn(2, operator.m))
        assert len(result) == 2
    if kind != "sparsity":  # FISTA has no graphed loop: its steps are A and A_adjoint
        assert graphs_on_cpu.checked > 0
        assert graphs_on_cpu.capturable and all(graphs_on_cpu.capturable)


@pytest.mark.parametrize("loss", ["l2", "mmd"])
def test_the_pretraining_step_is_capture_safe(loss: str, graphs_on_cpu: CheckedSteps) -> None:
    settings = lowshot_settings(
        {"iterations": 2, "lr": 1e-3, "mmd_bandwidth": "median", "covariance_shrinkage": 0.1,
         "checkpoint_every": 10, "log_every": 10}
    )  # fmt: skip
    run = TrainingRun(
        latent_dim=LATENT, seed=0, device="cpu", precision="fp32", progress=False,
        width=WIDTH, cuda_graphs=True,
    )  # fmt: skip
    trainer = build_lowshot(torch.rand(3, 3, 64, 64) * 2 - 1, settings, run, loss=loss)
    assert trainer.optimiser.param_groups[0]["capturable"]
    for _ in range(2):
        trainer.step()
    assert graphs_on_cpu.checked == 2
