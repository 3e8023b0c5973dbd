"""Training: WGAN-GP on a corpus, low-shot pre-training (eq. 1) and the codes' Gaussian,
resumable checkpoints, sample grids and loss logs.

Modules: ``settings`` (the config sections the trainers take), ``loop`` (``TrainingRun``,
the resumable loop, checkpoints, batch-norm calibration, loss-log CSV), ``wgan_gp``
(``train_wgan_gp``; ``build_wgan_gp``, its networks and step, for benchmarks),
``validation`` (the GAN's validation curve), ``pretrain`` (``pretrain_lowshot``;
``build_lowshot``), ``samples`` (``sample_grid``).
The model files they produce are written and read by ``lowshot.io`` (``save_gan``,
``load_gan``, ``save_lowshot``, ``load_lowshot``); the Gaussian is ``lowshot.gaussian``.

Settings and runs
-----------------
A trainer takes what it learns, its config section (``gan`` or ``lowshot``), as one
mapping in which every training key is required: the config schema is the one home of
their defaults (``lowshot.config.schema_defaults``). See ``lowshot.training.settings``.
How it runs is one ``TrainingRun``: ``latent_dim``, ``seed``, ``device`` and
``precision`` (required, from the config), and the run mechanics ``checkpoint_path``,
``progress``, ``stop_after`` and ``width``::

    train_wgan_gp(images, settings, run)
    pretrain_lowshot(images, settings, run, loss="l2")

Reproducibility and resuming
----------------------------
Every random draw comes from a CPU ``torch.Generator``,
``seeded_generator(derive_seed(seed, stage, name))`` (never from torch's global
generator), and those generators' states are checkpointed together with the networks,
the Adam optimisers, the step and the loss log. A run that is killed and restarted with
the same arguments resumes from its last checkpoint and, on the CPU, finishes *bit for
bit* equal to an uninterrupted run (on CUDA up to the nondeterminism of cuDNN kernels).
Draws are made on the CPU and then moved, so CPU and GPU runs see the same batches and
latent codes.

Checkpoints are ``torch.save`` files written atomically (``lowshot.io.atomic_path``)
every ``checkpoint_every`` steps and at the last step. They hold the run's identity (key
``settings``); a checkpoint whose identity differs from the call's (other seed, batch
size, data, ...) is an error rather than silently mixed into another run.
``iterations`` may differ (a run can be extended), but not be smaller than the
checkpoint's step. The identity is what a run learns, not where or how it runs: neither
the device nor ``cuda_graphs`` is in it (both leave the arithmetic as it is, up to float
rounding), so a checkpoint written on a card resumes on the CPU and one written without
CUDA graphs resumes with them; its optimisers keep the resuming run's implementation
flags (``capturable``, ``fused``, ...: ``loop.load_optimiser_state``), not the saved
ones. The checkpoint file is left in place when training finishes; deleting it is the
caller's business.

``TrainingRun(stop_after=k)`` makes training return right after step k *as if it had been killed
there*: nothing beyond the regular checkpoints is written, so a rerun resumes from the
last multiple of ``checkpoint_every`` and redoes the steps after it. The result then has
``finished=False``. It exists to test resuming.

The GAN's validation curve
--------------------------
With ``gan.validate_every`` > 0, ``train_wgan_gp`` (given the split's validation faces)
scores the generator every that many steps and at the last one: CSGM's mean PSNR on
``gan.validation_faces`` faces (``lowshot.training.validation``), measured on a calibrated
copy, so the training is bit for bit the same as without it. The curve is checkpointed
with the networks and a resumed run continues it; ``gan.patience`` > 0 ends training
early once that many points in a row have not beaten the best (the checkpoint records
the stop, so a resumed run does not train on), and the generator returned (and saved by
the job, and used by recovery) is then the best point's, not the last step's, whether the
run stopped early or reached ``iterations``: a CPU copy of its state (parameters and BN
buffers) is kept at each new best and checkpointed (key ``"best"``), so a resumed run
keeps it; ``GanResult.saved_step`` and the curve's extra column ``saved`` (1 on that
point) say which step it is, and the log says so too. With ``patience`` 0 the curve is
only a record and the last step's generator is returned, bit for bit as without it.
Off (``validate_every`` 0) by default: nothing runs, and checkpoints and results are
those of before.

Batch norm after training
-------------------------
Both trainings run the generator in norm mode ``"batch"`` (each forward pass normalised
by its own batch's statistics). Recovery uses mode ``"stored"``, i.e. the running
statistics, which during training are only an exponential average over recent batches
(and use the unbiased variance, unlike the normalisation itself). So when training
finishes, ``calibrate_batch_norm`` replaces them with the exact pooled statistics
(mean and biased variance) of the final network's layer inputs:
- low-shot: of the one full batch of the S fitted codes, so that G(z_i) in mode
  ``"stored"`` equals the fitted G(z_i) of training mode (up to rounding);
- WGAN-GP: of ``gan.calibration_samples`` fresh N(0, I) codes (in batches of
  ``GAN_CALIBRATION_BATCH``), the population statistics that the generator's training
  batches estimate.
The returned generators are on the CPU, in eval mode with ``norm = "stored"``.

"""

from __future__ import annotations

from lowshot.training.loop import TrainingRun, calibrate_batch_norm, write_log_csv
from lowshot.training.pretrain import (
    LOSSES,
    LowshotPretraining,
    LowshotResult,
    build_lowshot,
    pretrain_lowshot,
    pretraining_seed,
)
from lowshot.training.samples import sample_grid
from lowshot.training.settings import (
    GAN_VALIDATION_KEYS,
    LOWSHOT_SELECTION_KEYS,
    gan_rule_settings,
    gan_settings,
    lowshot_settings,
    with_validation_defaults,
)
from lowshot.training.wgan_gp import (
    GAN_CALIBRATION_BATCH,
    GanResult,
    WganGp,
    build_wgan_gp,
    train_wgan_gp,
)

__all__ = [
    "GAN_CALIBRATION_BATCH",
    "GAN_VALIDATION_KEYS",
    "LOSSES",
    "LOWSHOT_SELECTION_KEYS",
    "GanResult",
    "LowshotPretraining",
    "LowshotResult",
    "TrainingRun",
    "WganGp",
    "build_lowshot",
    "build_wgan_gp",
    "calibrate_batch_norm",
    "gan_rule_settings",
    "gan_settings",
    "lowshot_settings",
    "pretrain_lowshot",
    "pretraining_seed",
    "sample_grid",
    "train_wgan_gp",
    "with_validation_defaults",
    "write_log_csv",
]
