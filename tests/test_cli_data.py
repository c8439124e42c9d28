"""The data commands as a user runs them: volseg manifest, check and plan."""

import shutil

import nibabel as nib
import numpy as np
import yaml
from typer.testing import CliRunner

from volseg.cli import app

from .conftest import shared_path
from .helpers import REPO

runner = CliRunner()


def _copy_msd(tmp_path, n=6):
    src = shared_path("data", "msd_task04_hippocampus")
    dst = tmp_path / "msd"
    names = sorted(p.name for p in (src / "imagesTr").iterdir())[:n]
    for sub in ("imagesTr", "labelsTr"):
        (dst / sub).mkdir(parents=True)
        for name in names:
            shutil.copyfile(src / sub / name, dst / sub / name)
    return dst, names


def _plant_stray_label(path, value):
    """One voxel of ``value`` in a label map, header kept."""
    img = nib.load(path)
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = value
    nib.save(nib.Nifti1Image(data, img.affine, img.header), path)
    return path


def test_manifest_and_check_on_the_msd_hippocampus(tmp_path):
    src = shared_path("data", "msd_task04_hippocampus")
    out = tmp_path / "m.csv"
    result = runner.invoke(app, ["manifest", str(src), "-o", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "230 cases" in result.output
    result = runner.invoke(app, ["check", str(out), "--config", str(REPO / "configs" / "hippocampus.yaml")])
    assert result.exit_code == 0, result.output


def test_check_names_every_bad_file_in_one_run(tmp_path):
    root, names = _copy_msd(tmp_path)
    truncated = root / "imagesTr" / names[0]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / "imagesTr" / names[1]).write_text("this is not an image\n", encoding="utf-8")
    wrong_shape = root / "labelsTr" / names[2]
    nib.save(nib.Nifti1Image(np.zeros((9, 9, 9), np.uint8), np.eye(4)), wrong_shape)
    unknown = _plant_stray_label(root / "labelsTr" / names[3], 7)

    out = tmp_path / "m.csv"
    assert runner.invoke(app, ["manifest", str(root), "-o", str(out)]).exit_code == 0
    result = runner.invoke(app, ["check", str(out), "--config", str(REPO / "configs" / "hippocampus.yaml")])
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    for bad in (truncated, root / "imagesTr" / names[1], wrong_shape, unknown):
        assert any(str(bad) in line for line in lines), (bad, lines)
    assert len(lines) == 4, lines
    assert "7" in next(line for line in lines if str(unknown) in line)


def test_plan_hippocampus_plans_1mm_and_a_patch_covering_a_case(tmp_path):
    src = shared_path("data", "msd_task04_hippocampus")
    manifest = tmp_path / "m.csv"
    runner.invoke(app, ["manifest", str(src), "-o", str(manifest)])
    result = runner.invoke(
        app, ["plan", str(manifest), "-o", str(tmp_path / "hip.yaml"), "--labels", "1=anterior,2=posterior"]
    )
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((tmp_path / "hip.yaml").read_text(encoding="utf-8"))
    assert cfg["preprocess"]["spacing"] == [1.0, 1.0, 1.0]
    assert cfg["preprocess"]["normalization"] == "zscore" and cfg["data"]["modality"] == "MR"
    assert cfg["data"]["labels"] == {1: "anterior", 2: "posterior"}
    fingerprint = yaml.safe_load((tmp_path / "hip.fingerprint.json").read_text(encoding="utf-8"))
    typical = np.median(np.asarray(fingerprint["shapes"]), axis=0)
    assert all(p >= s for p, s in zip(cfg["sampling"]["patch_size_3d"], typical))
    assert fingerprint["label_values"] == [0, 1, 2]


def test_plan_ct_uses_foreground_percentiles(tmp_path):
    ts = shared_path("data", "totalsegmentator_example")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "case_id,image,label,split\n"
        f"ct,{ts / 'example_ct.nii.gz'},{ts / 'example_seg_fast_force_split.nii.gz'},train\n",
        encoding="utf-8",
    )
    result = runner.invoke(
        app,
        [
            "plan",
            str(manifest),
            "-o",
            str(tmp_path / "ct.yaml"),
            "--set",
            "data.label_remap={7: 1}",
            "--labels",
            "1=pancreas",
        ],
    )
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((tmp_path / "ct.yaml").read_text(encoding="utf-8"))
    p = cfg["preprocess"]
    assert cfg["data"]["modality"] == "CT" and p["normalization"] == "ct"
    assert p["spacing"] == [3.0, 3.0, 3.0]
    image = np.asarray(nib.load(ts / "example_ct.nii.gz").dataobj)
    label = np.asarray(nib.load(ts / "example_seg_fast_force_split.nii.gz").dataobj)
    pancreas = image[label == 7].astype(np.float64)
    assert p["ct_clip"][0] == np.float32(np.percentile(pancreas, 0.5))
    assert p["ct_clip"][1] == np.float32(np.percentile(pancreas, 99.5))
    assert abs(p["ct_mean"] - pancreas.mean()) < 1e-3


def test_manifest_of_a_missing_folder_is_one_line(tmp_path):
    result = runner.invoke(app, ["manifest", str(tmp_path / "nope"), "-o", str(tmp_path / "m.csv")])
    assert result.exit_code == 2
    assert "nope: not a folder" in result.output


def test_declared_labels_travel_with_the_manifest_and_check_refuses_a_stray_value(tmp_path):
    """nnU-Net's verify_dataset_integrity: an MSD folder declaring 0-2 with one voxel of 7 must not pass."""
    src, root = REPO / "data" / "hippocampus", tmp_path / "msd"
    names = sorted(p.name for p in (src / "labelsTr").iterdir())[:3]
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
        for name in names:
            shutil.copyfile(src / sub / name, root / sub / name)
    (root / "dataset.json").write_text(
        '{"labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}', encoding="utf-8"
    )
    stray = _plant_stray_label(root / "labelsTr" / names[1], 7)

    out = tmp_path / "m.csv"
    made = runner.invoke(app, ["manifest", str(root), "-o", str(out)])
    assert made.exit_code == 0 and "declared labels {1: 'Anterior', 2: 'Posterior'}" in made.output, made.output
    result = runner.invoke(app, ["check", str(out)])  # no config: the dataset's own declaration is the rule
    assert result.exit_code == 1
    [line] = [line for line in result.stdout.splitlines() if line.strip() and "problem" not in line]
    assert line.startswith(f"{stray}: unknown label value(s) [7]"), result.stdout
    (tmp_path / "m.labels.json").unlink()  # without a declaration any integer label is accepted, as before
    assert runner.invoke(app, ["check", str(out)]).exit_code == 0


def test_the_data_layer_never_imports_the_model_zoo():
    """Planning takes the model's widths from its caller: volseg.data depends on no model code."""
    import ast

    for path in sorted((REPO / "volseg" / "data").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m.startswith("volseg.models")], path
