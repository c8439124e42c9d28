"""Header discovery of a DICOM archive: files per second and peak memory, and proof that no pixel data is read.

Writes a synthetic archive (default 10,000 files: 100 patients x 1 study x 1 CT series of 100 slices,
128x128 int16 pixels, nested patient/study/series folders, files without extension), then runs
:func:`volseg.dicom.archive.discover_series` on it in a fresh subprocess and reports wall time, files
per second, the process's peak memory (RSS high-water mark) and the bytes it read through read()
(``rchar`` from /proc/self/io): far below the archive's size when only headers are read.

    python benchmarks/archive_discovery.py [--files 10000] [--out benchmarks/results]

Writes archive_discovery.json and archive_discovery.md. The archive is written to a temporary folder
(about 330 MB at 10,000 files) and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.record import provenance, write  # noqa: E402

SLICES = 100


def write_archive(root: Path, files: int, size: int = 128) -> int:
    """``files`` CT slices in series of ``SLICES`` (the last series shorter), one patient per series."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = (np.random.default_rng(0).normal(0, 50, (size, size))).astype(np.int16).tobytes()
    written = 0
    series = 0
    while written < files:
        study, series_uid, frame = generate_uid(), generate_uid(), generate_uid()
        folder = root / f"pat{series:05d}" / "study1" / "ct"
        folder.mkdir(parents=True)
        for k in range(min(SLICES, files - written)):
            ds = pydicom.Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
            ds.PatientName, ds.PatientID, ds.Modality = f"Synthetic^{series}", f"P{series}", "CT"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SeriesNumber, ds.InstanceNumber, ds.SliceThickness = 2, k + 1, 1.0
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-100.0, -100.0, float(k)]
            ds.PixelSpacing = [0.8, 0.8]
            ds.Rows = ds.Columns = size
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.PixelData = pixels
            ds.save_as(folder / f"IM{k:05d}", enforce_file_format=True)
            written += 1
        series += 1
    return series


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text(encoding="utf-8").splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return -1


def child(root: Path) -> dict:
    """Runs in a fresh process: discovery alone, so peak memory and bytes read are its own."""
    from volseg.dicom.archive import discover_series

    before = _rchar()
    start = time.perf_counter()
    found, skipped = discover_series([root])
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "series": len(found),
        "files": sum(len(s.instances) for s in found),
        "skipped": skipped,
        "bytes_read": _rchar() - before,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    made = provenance(__file__)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ARCHIVE"
        start = time.perf_counter()
        write_archive(root, args.files)
        write_seconds = time.perf_counter() - start
        archive_bytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        run = subprocess.run(
            [sys.executable, __file__, "--child", str(root)], capture_output=True, encoding="utf-8", check=True
        )
        result = json.loads(run.stdout.strip().splitlines()[-1])
    result.update(
        {
            "files_written": args.files,
            "archive_mb": archive_bytes / 2**20,
            "files_per_second": result["files"] / result["seconds"],
            "bytes_read_per_file": result["bytes_read"] / max(result["files"], 1),
            "file_bytes": archive_bytes / args.files,
            "write_seconds": write_seconds,
        }
    )
    print(write(args.out, "archive_discovery", result, markdown(result, made["command"]), made))


def markdown(r: dict, command: str) -> list[str]:
    return [
        f"Header discovery (`{command}`): {r['files']:,} files in {r['series']} series "
        f"({r['archive_mb']:.0f} MB, nested patient/study/series folders, no extensions).",
        "",
        "| files | series | seconds | files per second | peak memory MB | bytes read per file | file size |",
        "|---|---|---|---|---|---|---|",
        f"| {r['files']:,} | {r['series']} | {r['seconds']:.1f} | {r['files_per_second']:,.0f} | "
        f"{r['peak_memory_mb']:.0f} | {r['bytes_read_per_file']:,.0f} | {r['file_bytes']:,.0f} |",
    ]


if __name__ == "__main__":
    main()
