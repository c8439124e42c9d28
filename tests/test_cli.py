"""The command line as a user meets it: help, the zoo listing, and one-line usage errors."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from volseg.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SCAN = REPO / "data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"


def _bad_scan(folder: Path, kind: str) -> tuple[Path, str]:
    """A scan named on the command line that cannot be segmented, and what its one line must say."""
    image = nib.load(SCAN)
    path = folder / f"{kind}.nii.gz"
    if kind == "missing":
        return path, "no such file or folder"
    if kind == "text":
        path.write_text("a text file renamed .nii.gz", encoding="utf-8")
        return path, "not a NIfTI/NRRD/MHA image or DICOM series"
    data = np.asarray(image.dataobj)
    data = data[:, :, 0] if kind == "2d" else np.stack([data, data], axis=-1)
    nib.save(nib.Nifti1Image(data, image.affine), path)
    return path, "2D image" if kind == "2d" else "4D image"


@pytest.mark.parametrize("kind", ["missing", "text", "2d", "4d"])
def test_a_bad_scan_named_on_the_command_line_is_a_usage_error_before_the_model_opens(tmp_path, monkeypatch, kind):
    """Issue 41: each exited 1 after opening the model (6 s) and a progress bar, the reason on stdout."""
    import volseg.inference.segment

    def must_not_open(*args, **kwargs):
        raise AssertionError("the model was opened for a bad input")

    monkeypatch.setattr(volseg.inference.segment, "open_segmenter", must_not_open)
    path, problem = _bad_scan(tmp_path, kind)
    result = runner.invoke(app, ["infer", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: ") and problem in line, line
    assert not list(tmp_path.glob("*_seg.nii.gz")) and not list(Path.cwd().glob(f"{kind}_seg*"))


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("models", "manifest", "check", "plan", "train", "infer", "evaluate", "demo"):
        assert command in result.output


def test_models_lists_the_zoo_with_parameter_counts():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in ("unet", "unetpp", "attunet", "r2unet", "r2attunet", "resunet"):
        assert name in result.output
    assert "5,886,994" in result.output  # unet at the 3D defaults (16..256, instance norm, 1 -> 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dims", "4"], "--dims must be 2 or 3, got 4"),
        (
            ["--model", "vnet"],
            "unknown model 'vnet'; choose one of ['attunet', 'r2attunet', 'r2unet', 'resunet', 'unet', 'unetpp']",
        ),
        (["--set", "train.epoch=3"], "unknown config key 'train.epoch'; valid keys: ['epochs',"),
        (["--set", "model.dims=4"], "model.dims must be one of [2, 3], got 4"),
        (["--device", "gpu"], "device must be one of auto, cpu, cuda, cuda:N; got 'gpu'"),
    ],
)
def test_train_usage_errors_are_one_line(tmp_path, args, message):
    result = runner.invoke(app, ["train", "--output", str(tmp_path / "run"), "--epochs", "1", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) <= 2
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_config_file_with_a_wrong_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochz: 3\n", encoding="utf-8")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown config key 'train.epochz'; valid keys:" in result.output


def test_infer_without_a_model_says_what_to_pass(tmp_path, monkeypatch):
    from volseg import pretrained

    monkeypatch.setattr(pretrained, "FOLDER", tmp_path)
    result = runner.invoke(app, ["infer", str(SCAN)])
    assert result.exit_code == 2
    assert "the built-in model 'hippocampus-mri' is not installed; pass --model" in result.output


def test_infer_with_an_unknown_model_name_lists_the_built_in_ones(tmp_path):
    result = runner.invoke(app, ["infer", str(SCAN), "--model", "abdomen-mri"])
    assert result.exit_code == 2
    assert (
        "abdomen-mri: no such run folder or checkpoint, and not a built-in model (built-in: hippocampus-mri, abdomen-ct)"
        in result.output
    )


def test_volseg_errors_are_one_line_other_errors_keep_their_traceback(tmp_path, monkeypatch):
    import volseg.training.trainer

    def broken(*args, **kwargs):
        raise ValueError("a bug inside training, not the user's doing")

    monkeypatch.setattr(volseg.training.trainer, "train", broken)
    result = runner.invoke(app, ["train", "--output", str(tmp_path / "run"), "--epochs", "1"])
    assert result.exit_code != 2  # not a usage error: the exception propagates with its traceback
    assert isinstance(result.exception, ValueError) and "a bug inside training" in str(result.exception)
    assert "error:" not in result.output


def test_debug_shows_the_traceback_of_volseg_errors_too(tmp_path):
    args = ["train", "--output", str(tmp_path / "run"), "--epochs", "1", "--device", "gpu"]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    debug = runner.invoke(app, ["--debug", *args])
    assert debug.exit_code == 2
    assert "Traceback" in debug.output and "VolsegError" in debug.output
    assert "error: device must be one of auto, cpu, cuda, cuda:N; got 'gpu'" in debug.output


def test_every_user_facing_error_is_a_volseg_error_and_still_a_value_error():
    from volseg.config import ConfigError
    from volseg.data.io import ImageReadError
    from volseg.data.manifest import ManifestError
    from volseg.dicom.pacs import PacsError
    from volseg.dicom.seg import SegError
    from volseg.dicom.series_rules import RulesError
    from volseg.errors import VolsegError
    from volseg.nnunet.model_folder import NnunetFolderError
    from volseg.runtime.checkpoint import CheckpointError
    from volseg.runtime.quantize import QuantizeError

    for error in (
        CheckpointError,
        ConfigError,
        ImageReadError,
        ManifestError,
        RulesError,
        SegError,
        NnunetFolderError,
        PacsError,
        QuantizeError,
    ):
        assert issubclass(error, VolsegError) and issubclass(error, ValueError), error


def test_the_command_line_asks_for_plain_memory_pages_unless_the_user_chose(monkeypatch):
    """Huge-page compaction stalled a CT case's fresh arrays (resample 1.44 -> 0.72 s per case): the command line
    turns numpy's huge-page requests off, and leaves them as they are where NUMPY_MADVISE_HUGEPAGE was set."""
    from numpy._core.multiarray import _get_madvise_hugepage, _set_madvise_hugepage

    from volseg.runtime.huge_pages import use_plain_pages

    before = _get_madvise_hugepage()
    try:
        _set_madvise_hugepage(True)
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        use_plain_pages()
        assert _get_madvise_hugepage()
        monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE")
        use_plain_pages()
        assert not _get_madvise_hugepage()
    finally:
        _set_madvise_hugepage(before)
