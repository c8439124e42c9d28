"""volseg: 3D volumetric segmentation of CT and MRI with a dimension-generic U-Net model zoo.

The two functions behind the command line (docs/python-api.md), imported lazily so that ``import volseg``
stays light:

    run = volseg.segment("ct.nii.gz", output="out", model="abdomen-ct", qc=True)   # volseg infer
    labels = run.label_map()                                                        # nibabel image, scan's grid
    history = volseg.train(output="runs/quick", dims=3, model="attunet", minutes=1)  # volseg train
"""

from __future__ import annotations

from volseg.version import __version__

__all__ = ["__version__", "segment", "train"]


def segment(inputs, output=None, model=None, **options):
    """Segment scans as ``volseg infer`` does and return the run's summary
    (:class:`~volseg.inference.cohort.CohortSummary`; ``.label_map()`` reads a single scan's label map).

    ``inputs``: a scan file, a folder of them, a DICOM archive or series folder, a manifest CSV, or a list of
    these; ``output``: the output folder (None with one scan: ``./CASE_seg.nii.gz``); ``model``: a built-in name,
    a run folder or checkpoint, an nnU-Net folder or ``totalsegmentator:TASK`` (None: the default model);
    ``options``: any flag of ``volseg infer`` by its name, e.g. ``qc=True``, ``tta=True``, ``strict=True``,
    ``output_formats=("nifti", "dicom-seg")`` (:class:`~volseg.inference.segment.SegmentOptions`)."""
    from volseg.inference.segment import segment as segment_cases

    return segment_cases(inputs, output, model, **options)


def train(
    output=None,
    *,
    config=None,
    manifest=None,
    dims=None,
    model=None,
    epochs=None,
    minutes=None,
    overrides=(),
    device="auto",
    resume=False,
):
    """Train a zoo model as ``volseg train`` does and return its epoch history
    (:class:`~volseg.training.trainer.EpochRecord` per epoch). The arguments are the command's flags:
    ``output`` the run folder (None: ``runs/MODEL_DIMSd``), ``config`` a YAML config, ``overrides`` its
    ``--set key=value`` items, ``minutes`` a wall-clock budget instead of ``epochs``."""
    from pathlib import Path

    from volseg.errors import VolsegError
    from volseg.training.planning import training_config
    from volseg.training.trainer import train as run_training

    if minutes is not None and epochs is not None:
        raise VolsegError("minutes is a budget that replaces epochs; give one of them")
    cfg = training_config(config, overrides, manifest, dims, model, minutes)
    run_dir = Path(output) if output is not None else Path("runs") / f"{cfg.model.name}_{cfg.model.dims}d"
    return run_training(cfg, run_dir, device=device, resume=resume, epochs=epochs)
