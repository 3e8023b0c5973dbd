"""The untrained network (Deep Image Prior style): random theta and z, fitted jointly."""

from __future__ import annotations

import copy

import torch

from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import StageResult, optimise_joint, standard_normal, working_copy
from lowshot.models import init_dcgan_weights, make_generator
from lowshot.seeds import derive_seed, seeded_generator


@register
class Untrained(RecoveryMethod):
    """A DCGAN-initialised theta (sub-stream "theta") and z ~ N(0, I) (sub-stream "z") per
    image, z and theta jointly (``steps`` Adam steps at ``lr``). Batch norm normalises each
    image by its own spatial statistics (what batch-size-1 training mode computes).

    The paper optimises the untrained network "for a longer period of time and with a
    higher learning rate than our low shot models"; the defaults are our choice within
    that: 3,000 steps at lr 1e-3 (the low-shot joint stage: 350 at 1e-4).
    ``model``: None for the paper's DCGAN, or a template generator whose architecture is
    re-initialised per image (tests use a small one).
    """

    kind = "untrained"
    description = "Untrained network: random theta and z, optimised jointly."
    settings = {
        "steps": {
            "description": "Adam steps over z and theta.",
            "type": "integer",
            "minimum": 1,
            "default": 3000,
        },
        "lr": {
            "description": "Learning rate.",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0e-3,
        },
    }
    label = "Untrained"
    style = {"color": "0.55", "linestyle": ":", "marker": "v"}
    order = 10

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        y, seeds = task.y, task.seeds
        if task.model is None:
            networks = [
                make_generator(task.latent_dim, seeded_generator(derive_seed(s, "theta")))
                for s in seeds
            ]
            template = networks[0]
        else:
            template, networks = task.model, []
            for s in seeds:
                network = copy.deepcopy(template).cpu().float()
                init_dcgan_weights(network, seeded_generator(derive_seed(s, "theta")))
                networks.append(network)
        net = working_copy(template, "per_image", y.device)
        params = {
            name: torch.stack(
                [dict(network.named_parameters())[name].detach() for network in networks]
            )
            .to(y.device)
            .requires_grad_(True)
            for name, _ in net.named_parameters()
        }
        z0 = standard_normal([derive_seed(s, "z") for s in seeds], net.latent_dim).to(y.device)
        return optimise_joint(
            net,
            params,
            task.operator,
            y,
            z0,
            steps=task.settings["steps"],
            lr=task.settings["lr"],
            desc="untrained joint",
            **task.options,
        )
