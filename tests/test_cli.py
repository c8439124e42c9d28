"""The command line as a user meets it: help, the zoo listing, and one-line usage errors."""

import pytest
from typer.testing import CliRunner

from volseg.cli import app

runner = CliRunner()


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


@pytest.mark.parametrize("args, message", [
    (["--dims", "4"], "--dims must be 2 or 3, got 4"),
    (["--model", "vnet"], "unknown model 'vnet'; choose one of ['attunet', 'r2attunet', 'r2unet', 'resunet', 'unet', 'unetpp']"),
    (["--set", "train.epoch=3"], "unknown config key 'train.epoch'; valid keys: ['epochs',"),
    (["--set", "model.dims=4"], "model.dims must be one of [2, 3], got 4"),
    (["--device", "gpu"], "device must be one of auto, cpu, cuda, cuda:N; got 'gpu'"),
])
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
    result = runner.invoke(app, ["infer", str(tmp_path / "scan.nii.gz")])
    assert result.exit_code == 2
    assert "the built-in model 'hippocampus-mri' is not installed; pass --model" in result.output


def test_infer_with_an_unknown_model_name_lists_the_built_in_ones(tmp_path):
    result = runner.invoke(app, ["infer", str(tmp_path / "scan.nii.gz"), "--model", "abdomen-mri"])
    assert result.exit_code == 2
    assert "abdomen-mri: no such run folder or checkpoint, and not a built-in model (built-in: hippocampus-mri, abdomen-ct)" in result.output
