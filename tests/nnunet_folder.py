"""A tiny trained-model folder in nnU-Net v2's layout, written the way nnU-Net writes one, so the suite needs
no nnU-Net install: ``plans.json`` (a configuration with an ``architecture`` entry, as nnU-Net 2.4+ plans),
``dataset.json`` and ``fold_N/checkpoint_final.pth`` holding what ``nnUNetTrainer.save_checkpoint`` saves
(network weights, optimizer state, a training log with numpy floats, ``init_args`` with a ``torch.device``).

The weights are random but seeded and scaled so the logits separate the classes by intensity: enough to
check geometry, labels and plumbing, not accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

LABELS = {"background": 0, "liver": 1, "spleen": 2}


def plans(
    patch=(16, 16, 16),
    spacing=(2.0, 2.0, 2.0),
    normalization="CTNormalization",
    features=(4, 8),
    resampling="resample_data_or_seg_to_shape",
    transpose=(0, 1, 2),
) -> dict:
    stages = len(features)
    kernel = [[3, 3, 3]] * stages
    strides = [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1)
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": stages,
            "features_per_stage": list(features),
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": kernel,
            "strides": strides,
            "n_conv_per_stage": [2] * stages,
            "n_conv_per_stage_decoder": [2] * (stages - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    order3 = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    order1 = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}
    seg = {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None}
    if resampling == "resample_torch_fornnunet":
        order3 = order1 = {"is_seg": False, "force_separate_z": None, "memefficient_seg_resampling": False}
        seg = {"is_seg": True, "force_separate_z": None, "memefficient_seg_resampling": False}
    return {
        "dataset_name": "Dataset900_Tiny",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing),
        "original_median_shape_after_transp": [32, 32, 32],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(transpose),
        "transpose_backward": [list(transpose).index(i) for i in range(3)],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": list(patch),
                "median_image_size_in_voxels": [32, 32, 32],
                "spacing": list(spacing),
                "normalization_schemes": [normalization],
                "use_mask_for_norm": [False],
                "resampling_fn_data": resampling,
                "resampling_fn_data_kwargs": order3,
                "resampling_fn_seg": resampling,
                "resampling_fn_seg_kwargs": seg,
                "resampling_fn_probabilities": resampling,
                "resampling_fn_probabilities_kwargs": order1,
                "architecture": arch,
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 300.0,
                "mean": 100.0,
                "median": 100.0,
                "min": -100.0,
                "percentile_00_5": -50.0,
                "percentile_99_5": 250.0,
                "std": 60.0,
            }
        },
    }


def dataset(labels=None, channels=None) -> dict:
    return {
        "channel_names": channels or {"0": "CT"},
        "labels": labels or LABELS,
        "numTraining": 4,
        "file_ending": ".nii.gz",
    }


def write_model_folder(
    root: Path,
    folds=("0",),
    seed: int = 0,
    mirror_axes=(0, 1, 2),
    labels=None,
    dataset_name: str = "Dataset900_Tiny",
    trainer: str = "nnUNetTrainer",
    **plan_args,
) -> Path:
    """``root/DATASET/TRAINER__nnUNetPlans__3d_fullres`` with one checkpoint per fold."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from torch import nn

    the_plans = plans(**plan_args)
    the_dataset = dataset(labels)
    folder = Path(root) / dataset_name / f"{trainer}__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(the_plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(the_dataset, indent=2))
    kwargs = dict(the_plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"])
    kwargs.update(conv_op=nn.Conv3d, norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU)
    heads = len([v for v in the_dataset["labels"].values() if not isinstance(v, list)])
    for i, fold in enumerate(folds):
        torch.manual_seed(seed + i)
        network = PlainConvUNet(input_channels=1, num_classes=heads, deep_supervision=True, **kwargs)
        with torch.no_grad():
            for p in network.parameters():
                p.mul_(3.0)  # bigger logits: classes that differ by intensity, not a near-uniform softmax
        checkpoint = {
            "network_weights": network.state_dict(),
            "optimizer_state": torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99).state_dict(),
            "grad_scaler_state": None,
            "logging": {
                "mean_fg_dice": [np.float64(0.5)],
                "ema_fg_dice": [np.float64(0.5)],
                "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.6)]],
                "train_losses": [np.float64(-0.3)],
                "val_losses": [np.float32(-0.2)],
                "lrs": [0.01],
                "epoch_start_timestamps": [1.0],
                "epoch_end_timestamps": [2.0],
            },
            "_best_ema": np.float64(0.5),
            "current_epoch": 1,
            "init_args": {
                "plans": the_plans,
                "configuration": "3d_fullres",
                "fold": int(fold) if fold != "all" else "all",
                "dataset_json": the_dataset,
                "device": torch.device("cpu"),
            },
            "trainer_name": trainer,
            "inference_allowed_mirroring_axes": tuple(mirror_axes) if mirror_axes is not None else None,
        }
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(checkpoint, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder
