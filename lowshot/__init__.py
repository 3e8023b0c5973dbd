"""lowshot: low-shot learning with untrained networks for imaging inverse problems.

Reproduces Leong & Sakla, "Low Shot Learning with Untrained Neural Networks for Imaging
Inverse Problems". Images inside the package are float tensors in [-1, 1] of shape
(N, 3, 64, 64); the HDF5 image store keeps uint8 (N, 64, 64, 3); metrics use [0, 1].
"""

__version__ = "0.1.0"
