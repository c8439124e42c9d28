"""One verdict per series whichever way it arrives: the series rules read one normalised view of a series'
tags (``tag_view``: padding stripped, multi-valued tags as lists, numbers as numbers), built the same way
from files and from a PACS's DICOMweb JSON; and a run that selects nothing says why in words a user acts on.

The table-driven test writes series with the padding real exports carry (3D-IRCADb's ``ORIGINAL\\PRIMARY \\0``,
which Orthanc's DICOMweb returns as ``PRIMARY ``), uploads them to the test Orthanc (conftest.py: one real
Orthanc per session on a loopback port) and asserts, for every rule of the table, the same verdict from the
files and from the PACS. Where ../shared is present, a real Philips CT (TCIA Pancreatic-CT-CBCT-SEG, CC BY
4.0) and the 3D-IRCADb CT join the table.
"""

import shutil
import warnings
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from typer.testing import CliRunner

from volseg.cli import app
from volseg.dicom.archive import discover_series, tag_view
from volseg.dicom.pacs import connect, credentials, dataset_from_json, series_from_metadata
from volseg.dicom.series_rules import SeriesRules, default_rules, why_none_selected

from .bad_inputs import dicom_series
from .conftest import SHARED

runner = CliRunner()
UID = "1.2.826.0.1.3680043.2.1125.7."
CORONAL = (1, 0, 0, 0, 0, 1, 0, -1, 0)
PADDED = {  # raw values as some scanners write them: trailing spaces and NULs, a number with spaces around it
    "ImageType": ("CS", b"ORIGINAL\\PRIMARY \x00"),
    "SliceThickness": ("DS", b" 2.00 "),
    "SeriesDescription": ("LO", b"abdomen  "),
    "ConvolutionKernel": ("SH", b"B30f\\FC18 "),
    "SeriesNumber": ("IS", b"3 "),
    "Manufacturer": ("LO", b"Planted Scanners "),
}


def _pad(folder: Path, raw: dict) -> Path:
    """Rewrite every file of ``folder`` with these elements' raw bytes (pydicom writes raw elements as-is)."""
    for file in folder.iterdir():
        ds = pydicom.dcmread(file)
        for keyword, (vr, value) in raw.items():
            tag = Tag(keyword)
            ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, True, True)
        ds.save_as(file)
    return folder


def _table_series(root: Path) -> dict[str, Path]:
    """The series of the table, each in its own folder and study."""

    def study(n: int, **tags) -> dict:
        return {"0020|000d": f"{UID}1.{n}", "0020|0052": f"{UID}3.{n}", **tags}

    made = {
        "padded": _pad(dicom_series(root / "padded", series_uid=f"{UID}2.1", slices=12, tags=study(1)), PADDED),
        "localizer": dicom_series(
            root / "localizer",
            series_uid=f"{UID}2.2",
            slices=12,
            tags=study(2, **{"0008|0008": "ORIGINAL\\PRIMARY\\LOCALIZER"}),
        ),
        "derived": dicom_series(
            root / "derived",
            series_uid=f"{UID}2.3",
            slices=12,
            tags=study(3, **{"0008|0008": "DERIVED\\SECONDARY\\AXIAL"}),
        ),
        "mr": dicom_series(root / "mr", series_uid=f"{UID}2.4", slices=12, tags=study(4, **{"0008|0060": "MR"})),
        "coronal": dicom_series(root / "coronal", series_uid=f"{UID}2.5", slices=12, direction=CORONAL, tags=study(5)),
        "few_slices": dicom_series(root / "few", series_uid=f"{UID}2.6", slices=4, tags=study(6)),
        "thick": dicom_series(
            root / "thick", series_uid=f"{UID}2.7", slices=12, spacing=(0.8, 0.8, 5.0), tags=study(7)
        ),
    }
    tcia = SHARED / "data" / "tcia_pancreatic_ct_cbct_seg_cb001" / "planning_ct"
    if tcia.is_dir():  # a real Philips CT: the first 12 of its 79 slices
        (root / "tcia").mkdir()
        for file in sorted(tcia.iterdir())[:12]:
            shutil.copy(file, root / "tcia" / file.name)
        made["tcia_ct"] = root / "tcia"
    ircadb = SHARED / "data" / "ircadb_3d" / "3Dircadb1.1" / "PATIENT_DICOM.zip"
    if ircadb.is_file():  # a real CT whose ImageType is padded "ORIGINAL\PRIMARY \0" (the fault of issue 32)
        (root / "ircadb").mkdir()
        with zipfile.ZipFile(ircadb) as z:
            for k in range(12):
                (root / "ircadb" / f"image_{k}").write_bytes(z.read(f"PATIENT_DICOM/image_{k}"))
        made["ircadb_ct"] = root / "ircadb"
    return made


RULES = {  # name -> alternatives (a series is selected when it meets every condition of one of them)
    "default CT": default_rules("CT").alternatives,
    "default MR": default_rules("MR").alternatives,
    "ImageType has ORIGINAL and PRIMARY": [{"ImageType": ["ORIGINAL", "PRIMARY"]}],
    "ImageType without LOCALIZER or DERIVED": [{"ImageType": {"exclude": ["LOCALIZER", "DERIVED"]}}],
    "SliceThickness < 3": [{"SliceThickness": "< 3"}],
    "SliceThickness in [4, 6]": [{"SliceThickness": [4, 6]}],
    "PixelSpacing <= 0.9": [{"PixelSpacing": "<= 0.9"}],
    "SeriesNumber == 3": [{"SeriesNumber": "== 3"}],
    "SeriesDescription is abdomen": [{"SeriesDescription": "abdomen"}],
    "ConvolutionKernel is B30f\\FC18": [{"ConvolutionKernel": r"B30f\\FC18"}],
    "Manufacturer is Philips or Planted": [{"Manufacturer": "(philips|planted scanners)"}],
    "plane coronal": [{"plane": "coronal"}],
    "slices >= 10": [{"slices": ">= 10"}],
    "MR, or CT thinner than 3 mm": [{"Modality": "MR"}, {"Modality": "CT", "SliceThickness": "< 3"}],
}
PER_INSTANCE = ("SOPInstanceUID", "InstanceNumber")  # the view keeps the first instance's; orders may differ


@pytest.fixture(scope="module")
def table_series(tmp_path_factory):
    return _table_series(tmp_path_factory.mktemp("table"))


def test_same_verdict_for_every_rule_from_files_and_from_the_pacs(table_series, empty_pacs):
    client = connect(empty_pacs.dicomweb, credentials())
    from_files, from_pacs = {}, {}
    for name, folder in table_series.items():
        (series,) = discover_series([folder])[0]
        from_files[name] = series
        empty_pacs.upload(sorted(folder.iterdir()))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (from_pacs[name],) = series_from_metadata(client, series.study_uid, series.series_uid)
        assert not [w for w in caught if "bulk data" in str(w.message)]  # the pixel data's URI is left out
    verdicts = {}
    for name, series in from_files.items():
        pacs_series = from_pacs[name]
        assert pacs_series.case_id == series.case_id, name
        assert {k: v for k, v in pacs_series.tags.items() if k not in PER_INSTANCE} == {
            k: v for k, v in series.tags.items() if k not in PER_INSTANCE
        }, name  # one view
        assert (pacs_series.modality, pacs_series.image_type, pacs_series.plane, pacs_series.slices) == (
            series.modality,
            series.image_type,
            series.plane,
            series.slices,
        ), name
        for rule, alternatives in RULES.items():
            rules = SeriesRules(alternatives, one_per_study=False)
            verdicts[name, rule] = file_verdict = rules.reject_reason(series)
            assert rules.reject_reason(pacs_series) == file_verdict, (name, rule)
    # and the verdicts are the right ones: padding changes none of them
    assert verdicts["padded", "default CT"] is None  # was "ImageType ORIGINAL\PRIMARY  lacks PRIMARY" from the PACS
    assert verdicts["padded", "SeriesDescription is abdomen"] is None
    assert verdicts["padded", "ConvolutionKernel is B30f\\FC18"] is None
    assert verdicts["padded", "SeriesNumber == 3"] is None and verdicts["padded", "SliceThickness < 3"] is None
    assert verdicts["localizer", "default CT"] == "ImageType ORIGINAL\\PRIMARY\\LOCALIZER has LOCALIZER"
    assert verdicts["mr", "default CT"] == "Modality 'MR' does not match 'CT'" and verdicts["mr", "default MR"] is None
    assert verdicts["coronal", "default CT"] == "plane 'coronal' does not match 'axial'"
    assert verdicts["few_slices", "slices >= 10"] == "slices 4 not >= 10"
    assert verdicts["thick", "SliceThickness in [4, 6]"] is None
    assert (
        verdicts["thick", "MR, or CT thinner than 3 mm"]
        == "Modality 'CT' does not match 'MR'; SliceThickness 5 not < 3"
    )
    if "tcia_ct" in verdicts:
        assert verdicts["tcia_ct", "default CT"] is None
        assert verdicts["tcia_ct", "Manufacturer is Philips or Planted"] is None
    if "ircadb_ct" in verdicts:
        assert verdicts["ircadb_ct", "default CT"] is None


def test_tag_view_strips_padding_splits_values_and_reads_numbers(tmp_path):
    folder = _pad(dicom_series(tmp_path / "s", series_uid=f"{UID}2.90", slices=1), PADDED)
    from_file = tag_view(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True))
    from_json = tag_view(
        dataset_from_json(
            {  # as Orthanc's DICOMweb returns them (one value joined, too)
                "00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY "]},
                "00180050": {"vr": "DS", "Value": [2]},
                "0008103E": {"vr": "LO", "Value": ["abdomen  "]},
                "00181210": {"vr": "SH", "Value": ["B30f\\FC18 "]},
                "00200011": {"vr": "IS", "Value": [3]},
                "00080070": {"vr": "LO", "Value": ["Planted Scanners "]},
                "7FE00010": {"vr": "OW", "BulkDataURI": "http://pacs/bulk/7fe00010"},
            }
        )
    )
    expected = {
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "SliceThickness": 2.0,
        "SeriesDescription": "abdomen",
        "ConvolutionKernel": ["B30f", "FC18"],
        "SeriesNumber": 3,
        "Manufacturer": "Planted Scanners",
    }
    assert {k: from_file[k] for k in expected} == expected
    assert from_json == expected
    assert from_file["PixelSpacing"] == [0.9, 0.9] and from_file["Rows"] == 32  # multi-valued: a list; US: int
    assert isinstance(from_file["SeriesNumber"], int) and isinstance(from_file["SliceThickness"], float)


def test_dataset_from_json_leaves_bulk_data_out_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = dataset_from_json(
            {
                "00080060": {"vr": "CS", "Value": ["CT"]},
                "7FE00010": {"vr": "OW", "BulkDataURI": "http://pacs/bulk/7fe00010"},
            }
        )
    assert ds.Modality == "CT" and not ds.get("PixelData")


def test_reasons_never_quote_an_accession_number_or_a_study_date(tmp_path):
    folder = dicom_series(
        tmp_path / "s", series_uid=f"{UID}2.91", slices=12, tags={"0008|0050": "ACCPLANTED77", "0008|0020": "19010101"}
    )
    (series,) = discover_series([folder])[0]
    rules = SeriesRules([{"AccessionNumber": "B.*"}, {"StudyDate": "2020.*"}, {"AccessionNumber": ">= 5"}])
    reason = rules.reject_reason(series)
    assert reason == (
        "AccessionNumber does not match 'B.*'; StudyDate does not match '2020.*'; "
        "AccessionNumber missing or not a number"
    )
    assert SeriesRules([{"AccessionNumber": "ACC.*"}]).reject_reason(series) is None  # still tested, not quoted


# ------------------------------------------------------------------------------------ nothing selected


@pytest.mark.parametrize(
    "reasons, expected",
    [
        (
            ["Modality 'CT' does not match 'MR'"],
            "no series selected: 1 series is CT but the model expects MR (pass --series-rules or a CT model)",
        ),
        (
            ["Modality 'MR' does not match 'CT'"] * 2 + ["ImageType ORIGINAL\\PRIMARY\\LOCALIZER has LOCALIZER"],
            "no series selected: 2 series are MR but the model expects CT (pass --series-rules or a MR model); "
            "1 series is marked LOCALIZER in ImageType (pass --series-rules to take it)",
        ),
        (
            [
                "slices 4 not >= 10",
                "ImageType DERIVED\\SECONDARY lacks ORIGINAL/PRIMARY",
                "ImageType DERIVED\\SECONDARY lacks ORIGINAL/PRIMARY",
                "plane 'coronal' does not match 'axial'",
                "SliceThickness 5 not < 3",
                "mixed image sizes in one series: 32x32 (12 files), 40x24 (1 files)",
            ],
            "no series selected: 2 series lack ORIGINAL and PRIMARY in ImageType (pass --series-rules to take them); "
            "1 series has too few slices (the rules want >= 10); 1 series is coronal, not axial (pass --series-rules "
            "to take it); 2 series for other reasons (see the record)",
        ),
        (
            ["Modality 'CT' does not match 'MR'; SliceThickness 5 not < 3"],  # two alternatives: the first one speaks
            "no series selected: 1 series is CT but the model expects MR (pass --series-rules or a CT model)",
        ),
        (["SliceThickness 5 not < 3"], "no series selected: 1 series: SliceThickness 5 not < 3"),
        ([], "no series selected"),
        (
            ["not an image series (RT Structure Set, 1 file): nothing to segment"] * 2
            + ["Modality 'CT' does not match 'MR'"],
            "no series selected: 1 series is CT but the model expects MR (pass --series-rules or a CT model); "
            "2 series hold no image (nothing to segment)",
        ),  # what a user acts on first, an RTSTRUCT's row last
    ],
)
def test_why_none_selected_gives_the_commonest_reasons_with_counts(reasons, expected):
    assert why_none_selected(reasons) == expected


def test_infer_of_a_ct_with_the_mri_model_says_why_nothing_was_selected(tmp_path):
    series = dicom_series(tmp_path / "CT_SERIES", series_uid=f"{UID}2.92", slices=12)
    result = runner.invoke(app, ["infer", str(series), "-o", str(tmp_path / "out")])  # default: hippocampus-mri
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        "no series selected: 1 series is CT but the model expects MR (pass --series-rules or a CT model)"
    )
