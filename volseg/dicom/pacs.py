"""PACS round trip over DICOMweb: find series (QIDO-RS), pick them by the series rules, retrieve (WADO-RS),
segment, and store the DICOM SEG into the same study (STOW-RS), with an RTSTRUCT and an SR of the structures'
volumes and intensities beside it where asked for (one request). Resumable and auditable.

Every series the query finds gets one row in ``OUT/volseg_pacs.csv`` (appended and fsync'd as it is
decided): ok (with the SEG's SOPInstanceUID, and in ``reason`` a note when the SEG got a new frame of
reference because the series has none), rejected (the rule that refused it), skipped (done before),
or failed (one line). A series is done when the PACS holds a volseg SEG that references it, so a run
killed at any moment and started again stores no second SEG: the record is a fast path, the PACS is the
truth. Credentials come from the environment or a file and are never printed or recorded.

The series rules judge a PACS series on the same normalised tag view as files (``tag_view``: the DICOMweb
JSON is parsed by pydicom, its bulk data left out, then normalised as a file's header is), so a value the
PACS returns padded (``ImageType ORIGINAL\\PRIMARY `` of a real CT) gets the verdict its files get. Warnings
and log records of the DICOM libraries, which may quote header values, are withheld for the whole run
(``withhold_header_messages``), and a failure that a third-party library raised is recorded by its type
and origin, not its text.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import requests
import yaml

from volseg.dicom.archive import (
    DicomSeries,
    discover_series,
    group_series,
    is_image,
    safe_reason,
    withhold_header_messages,
)
from volseg.dicom.series_rules import SeriesRules, select
from volseg.errors import VolsegError
from volseg.files.csv_rows import append_durably, read_rows
from volseg.inference.outputs import RunOutputs

log = logging.getLogger(__name__)
RECORD = "volseg_pacs.csv"
COLUMNS = ("case_id", "study_uid", "series_uid", "modality", "instances", "status", "reason", "seconds", "seg_uid")
MANUFACTURER = "volseg"


class PacsError(VolsegError):
    """The PACS cannot be used at all (unreachable, credentials refused): one line, the run stops."""


@dataclass
class PacsQuery:
    modality: str | None = None  # ModalitiesInStudy / Modality
    study_dates: tuple[str, str] | None = None  # YYYYMMDD, inclusive
    accessions: list[str] = field(default_factory=list)
    limit: int | None = None  # selected series segmented per run


def credentials(auth_file: Path | None = None) -> dict:
    """``{"user", "password"}`` or ``{"token"}`` from a YAML/JSON file, else VOLSEG_PACS_USER /
    VOLSEG_PACS_PASSWORD or VOLSEG_PACS_TOKEN; {} for an open PACS."""
    if auth_file is not None:
        try:
            data = yaml.safe_load(Path(auth_file).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise PacsError(f"{auth_file}: cannot read the credentials file ({type(e).__name__})") from None
        if not isinstance(data, dict) or not ({"user", "password"} <= set(data) or "token" in data):
            raise PacsError(f"{auth_file}: expected 'user' and 'password', or 'token'")
        return {k: str(v) for k, v in data.items() if k in ("user", "password", "token")}
    env = os.environ
    if env.get("VOLSEG_PACS_TOKEN"):
        return {"token": env["VOLSEG_PACS_TOKEN"]}
    if env.get("VOLSEG_PACS_USER"):
        return {"user": env["VOLSEG_PACS_USER"], "password": env.get("VOLSEG_PACS_PASSWORD", "")}
    return {}


def connect(url: str, auth: dict, timeout: float = 60):
    """A DICOMweb client for ``url`` (credentials in the URL itself are refused: they would be logged)."""
    from dicomweb_client.api import DICOMwebClient

    if re.match(r"^[a-z]+://[^/@]+@", url):
        raise PacsError("put PACS credentials in VOLSEG_PACS_USER/VOLSEG_PACS_PASSWORD or --auth-file, not in the URL")
    session = requests.Session()
    headers = {}
    if "token" in auth:
        headers["Authorization"] = f"Bearer {auth['token']}"
    elif "user" in auth:
        session.auth = (auth["user"], auth.get("password", ""))
    return DICOMwebClient(url, session=session, headers=headers or None, timeout=timeout)


def check_reachable(client, url: str) -> None:
    """One cheap QIDO-RS query; PacsError (one line, no credentials) when the PACS cannot be used."""
    try:
        with withhold_header_messages():
            client.search_for_studies(limit=1)
    except Exception as e:  # noqa: BLE001
        raise PacsError(f"{re.sub(r'//[^/@]+@', '//', url)}: {_http_reason(e)}") from None


def _value(item: dict, tag: str, default=""):
    values = item.get(tag, {}).get("Value") or [default]
    return values[0]


def dataset_from_json(meta: dict) -> pydicom.Dataset:
    """A DICOMweb JSON instance as a pydicom dataset, its bulk data (pixel data: a URI to fetch) left out."""
    return pydicom.Dataset.from_json(meta, bulk_data_uri_handler=lambda tag, vr, uri: None)


def failure_reason(error: Exception) -> str:
    """One line for a series' failure. volseg's own messages are kept; a third-party library's message may
    quote a header value (a patient's name), so it is given by type and where it was raised instead."""
    return _http_reason(error) if isinstance(error, requests.RequestException) else safe_reason(error)


def _http_reason(error: Exception) -> str:
    """One line for a DICOMweb failure, with no URL credentials or response bodies."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        code = error.response.status_code
        meaning = {
            401: "credentials refused",
            403: "forbidden by the PACS",
            404: "not found on the PACS",
            409: "conflict",
            500: "PACS internal error",
            503: "PACS unavailable",
        }.get(code, "HTTP error")
        return f"HTTP {code} ({meaning})"
    if isinstance(error, requests.ConnectionError):
        return "connection failed"
    if isinstance(error, requests.Timeout):
        return "timed out"
    return " ".join(str(error).split()) or type(error).__name__


def find_series(client, query: PacsQuery) -> list[dict]:
    """QIDO-RS: the series of every study that matches the filters (each a dict of UIDs and counts)."""
    filters: dict = {}
    if query.modality:
        filters["ModalitiesInStudy"] = query.modality
    if query.study_dates:
        filters["StudyDate"] = f"{query.study_dates[0]}-{query.study_dates[1]}"
    study_sets = [dict(filters, AccessionNumber=a) for a in query.accessions] or [filters]
    studies: dict[str, dict] = {}
    for search in study_sets:
        for study in client.search_for_studies(search_filters=search):
            studies[_value(study, "0020000D")] = study
    found = []
    for study_uid in studies:
        series_filter = {"Modality": query.modality} if query.modality else None
        for item in client.search_for_series(study_uid, search_filters=series_filter):
            modality = str(_value(item, "00080060"))
            if modality in ("SEG", "RTSTRUCT", "SR", "PR", "KO"):
                continue
            found.append(
                {
                    "study_uid": study_uid,
                    "series_uid": str(_value(item, "0020000E")),
                    "modality": modality,
                    "instances": int(_value(item, "00201209", 0) or 0),
                }
            )
    return found


def volseg_segs(client, study_uid: str) -> set[str]:
    """SeriesInstanceUIDs in ``study_uid`` that already have a SEG written by volseg."""
    done: set[str] = set()
    for item in client.search_for_series(study_uid, search_filters={"Modality": "SEG"}):
        for meta in client.retrieve_series_metadata(study_uid, str(_value(item, "0020000E"))):
            ds = dataset_from_json(meta)
            if str(ds.get("Manufacturer", "")) != MANUFACTURER:
                continue
            for ref in ds.get("ReferencedSeriesSequence", []):
                done.add(str(ref.SeriesInstanceUID))
    return done


def series_from_metadata(client, study_uid: str, series_uid: str) -> list[DicomSeries]:
    """The image series of one PACS series from its WADO-RS metadata (no pixel data), grouped and normalised
    exactly as :func:`~volseg.dicom.archive.discover_series` does files, so the rules judge it alike."""
    datasets = [dataset_from_json(m) for m in client.retrieve_series_metadata(study_uid, series_uid)]
    return group_series([(None, ds) for ds in datasets if is_image(ds)])


def _read_record(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {row["series_uid"]: row for row in read_rows(path) if row.get("series_uid")}


def _append(path: Path, row: dict) -> None:
    append_durably(path, COLUMNS, [row])


@dataclass
class PacsRun:
    client: object
    segmenter: object  # a volseg.inference.segmenter.CaseSegmenter
    rules: SeriesRules
    out_dir: Path
    query: PacsQuery
    save_nifti: bool = False
    on_row: Callable[[dict], None] | None = None
    rtstruct: bool = False  # also store an RTSTRUCT of the labels beside the SEG, in the same STOW-RS request
    sr: bool = False  # also store the SR of each structure's volume and intensities (volseg.dicom.sr), likewise
    rtstruct_min_area: float | None = None  # mm²: smaller slice islands stay out of the RTSTRUCT (None: its default)

    def run(self) -> list[dict]:
        with withhold_header_messages():
            return self._run()

    def _run(self) -> list[dict]:
        try:
            found = find_series(self.client, self.query)
        except Exception as e:  # noqa: BLE001  (nothing done yet: the whole run stops with one line)
            raise PacsError(f"{_safe_url(self.client)}: {_http_reason(e)}") from None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record_path = self.out_dir / RECORD
        record = _read_record(record_path)
        rows, attempted = [], 0
        done_on_pacs: dict[str, set[str]] = {}
        for item in found:
            started = time.perf_counter()
            row = {**item, "case_id": "", "status": "", "reason": "", "seconds": "", "seg_uid": ""}
            try:
                row.update(self._one(item, record, done_on_pacs, attempted))
            except Exception as e:  # noqa: BLE001  (a series fails alone)
                row.update(status="failed", reason=failure_reason(e))
                log.debug("series failed: %s\n%s", row["reason"], "".join(traceback.format_tb(e.__traceback__)))
            attempted += row["status"] in ("ok", "failed")
            row["seconds"] = f"{time.perf_counter() - started:.2f}"
            if row["status"] != "skipped" or item["series_uid"] not in record:
                _append(record_path, row)
            rows.append(row)
            self.on_row and self.on_row(row)
        return rows

    def _one(self, item: dict, record: dict, done_on_pacs: dict, attempted: int) -> dict:
        study_uid, series_uid = item["study_uid"], item["series_uid"]
        previous = record.get(series_uid)
        if previous and previous["status"] in ("ok", "rejected", "skipped"):
            return {
                "case_id": previous["case_id"],
                "status": "skipped",
                "reason": f"{previous['status']} in an earlier run",
                "seg_uid": previous.get("seg_uid", ""),
            }
        if study_uid not in done_on_pacs:
            done_on_pacs[study_uid] = volseg_segs(self.client, study_uid)
        groups = series_from_metadata(self.client, study_uid, series_uid)
        if not groups:
            return {"status": "rejected", "reason": "no image instances in the series"}
        chosen = select(groups, SeriesRules(self.rules.alternatives, one_per_study=False))
        if not chosen.selected:
            series, why = chosen.rejected[0]
            return {"case_id": series.case_id, "status": "rejected", "reason": why}
        series = max(chosen.selected, key=lambda s: s.slices)
        if series_uid in done_on_pacs[study_uid]:
            return {"case_id": series.case_id, "status": "skipped", "reason": "the PACS already holds its volseg SEG"}
        if self.query.limit is not None and attempted >= self.query.limit:
            return {"case_id": series.case_id, "status": "deferred", "reason": f"over --limit {self.query.limit}"}
        seg_uid, note = self._segment_and_store(series, study_uid, series_uid)
        done_on_pacs[study_uid].add(series_uid)
        return {"case_id": series.case_id, "status": "ok", "seg_uid": seg_uid, "reason": note}

    def _segment_and_store(self, wanted: DicomSeries, study_uid: str, series_uid: str) -> tuple[str, str]:
        """The stored SEG's SOPInstanceUID (the RTSTRUCT, when asked for, goes in the same request), and a note
        when it was made unusually (a new frame of reference)."""
        from volseg.data import io
        from volseg.dicom.seg import build_seg, seg_note
        from volseg.dicom.source import read_source_datasets
        from volseg.inference.inputs import CaseInput

        work = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.out_dir))
        try:
            try:
                instances = self.client.retrieve_series(study_uid, series_uid)
            except requests.HTTPError as e:
                if e.response is not None and e.response.status_code == 404:
                    raise ValueError("the series is no longer on the PACS (deleted after the query)") from None
                raise
            for i, ds in enumerate(instances):
                ds.save_as(work / f"{i:06d}.dcm", enforce_file_format=False)
            series = next((s for s in discover_series([work])[0] if s.case_id == wanted.case_id), None)
            if series is None:
                raise ValueError("the retrieved instances do not form the series the metadata described")
            data = self.segmenter.load(CaseInput(series.case_id, (series,)))
            labels, _ = self.segmenter.predict(data)
            info = self.segmenter.info
            sources = read_source_datasets(series.files)
            seg = build_seg(labels, sources, info.labels, info.name, info.label_codes, info.label_colors)
            objects = [seg, *self._beside_seg(seg, labels, data, sources)]
            if self.save_nifti:
                io.write_label(labels, data["image"], RunOutputs(self.out_dir).label_map(series.case_id))
            response = self.client.store_instances(objects, study_instance_uid=study_uid)
            failed = response.get("FailedSOPSequence") if response is not None else None
            if failed:
                reason = failed[0].get("FailureReason", "")
                raise ValueError(f"the PACS rejected the SEG (STOW-RS failure reason {reason})")
            return str(seg.SOPInstanceUID), seg_note(sources)
        except requests.HTTPError as e:
            raise ValueError(f"{_http_reason(e)} during {_step(e)}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _beside_seg(self, seg, labels, data: dict, sources) -> list:
        """What is stored with the SEG, in the same request: the RTSTRUCT and the SR, where asked for."""
        info, objects = self.segmenter.info, []
        if self.rtstruct:
            from volseg.dicom.rtstruct_write import build_rtstruct, for_rtstruct

            drawn, _ = for_rtstruct(labels, sources, sorted(info.labels), self.rtstruct_min_area)
            objects.append(build_rtstruct(drawn, sources, info.labels, info.name, info.label_colors))
        if self.sr:
            from volseg.dicom.sr import build_sr
            from volseg.inference.label_statistics import label_statistics

            source = data["source_image"]
            rows = label_statistics(labels, np.asarray(source)[0], source.affine, info.labels)
            objects.append(build_sr(seg, sources, rows, info.name))
        return objects


def _step(error: requests.HTTPError) -> str:
    method = error.request.method if error.request is not None else ""
    return "STOW-RS (storing the SEG)" if method == "POST" else "WADO-RS (retrieving the series)"


def _safe_url(client) -> str:
    url = getattr(client, "base_url", "") or getattr(client, "url", "")
    return re.sub(r"//[^/@]+@", "//", str(url))


def study_dates(text: str | None) -> tuple[str, str] | None:
    """``--study-date`` YYYYMMDD or YYYYMMDD-YYYYMMDD as an inclusive (first, last) range."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{8})(?:-(\d{8}))?", text.strip())
    if not match:
        raise PacsError(f"--study-date: expected YYYYMMDD or YYYYMMDD-YYYYMMDD, got {text!r}")
    return match[1], match[2] or match[1]


def accession_numbers(given: list[str], listing: Path | None) -> list[str]:
    """``--accession`` values and the lines of ``--accessions-file``."""
    numbers = list(given)
    if listing:
        numbers += [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    return numbers
