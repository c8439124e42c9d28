"""Trained nnU-Net v2 model folders as volseg models.

nnU-Net's predictor is reproduced from the folder's ``plans.json`` and ``dataset.json`` (network from
``dynamic_network_architectures``, the package nnU-Net builds it with; preprocessing, sliding window, export),
so the labels match ``nnUNetv2_predict``'s, while the network runs on volseg's backends. Nothing of nnU-Net
itself is imported, and checkpoints are read without running pickled code.
"""

from volseg.nnunet.model_folder import ModelFolder, NnunetFolderError, find_model_folder

__all__ = ["ModelFolder", "NnunetFolderError", "find_model_folder"]
