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
    """Deep Image Prior as CS-DIP runs it (Van Veen et al. 2018, github
    davevanveen/compsensing_dip, cs_dip.py): a DCGAN-initialised theta (sub-stream
    "theta") and a FIXED input z ~ N(0, I) (sub-stream "z") per image; ``steps`` RMSprop
    steps (``lr``, ``momentum``) on theta alone; the returned iterate is the one with the
    lowest measurement loss among the last ``window`` ones. (CS-DIP adds TV and learned
    regularisation terms to its loss; the plain untrained baseline of the paper has
    neither.) Batch norm normalises each image by its own spatial statistics (what
    batch-size-1 training mode computes).
    ``model``: None for the paper's DCGAN, or a template generator whose architecture is
    re-initialised per image (tests use a small one).
    """

    kind = "untrained"
    description = "Untrained network: random theta and z, optimised jointly."
    settings = {
        "steps": {
            "description": "Optimiser steps over theta (CS-DIP's code: 1,000).",
            "type": "integer",
            "minimum": 1,
            "default": 1000,
        },
        "lr": {
            "description": "RMSprop learning rate (CS-DIP's code: 1e-3).",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0e-3,
        },
        "momentum": {
            "description": "RMSprop momentum (CS-DIP's code: 0.9).",
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
            "default": 0.9,
        },
        "window": {
            "description": (
                "Return the iterate with the lowest measurement loss among the last this "
                "many (CS-DIP's code: 51); needs no access to the true image."
            ),
            "type": "integer",
            "minimum": 1,
            "default": 51,
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
            theta_lr=task.settings["lr"],
            z_lr=None,
            optimiser="rmsprop",
            momentum=task.settings["momentum"],
            window=task.settings["window"],
            desc="untrained",
            **task.options,
        )
