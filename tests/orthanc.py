"""A real Orthanc PACS for the tests: a foreground subprocess on a free loopback port, storage in a temp folder.

Orthanc 1.10 (Debian `orthanc`, `orthanc-dicomweb`) has no bind-address setting; ``RemoteAccessAllowed:
false`` makes it refuse every client but localhost, and its DICOM (DIMSE) server is off. HTTP Basic
authentication is on with one user. A Lua request filter plays the faults a real PACS can have: WADO
requests for a series whose UID ends in ``.666`` and STOW requests into a study whose UID ends in ``.777``
are refused (HTTP 403).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from .helpers import free_port

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "volseg", "s3cret-Pacs-Word"
BROKEN_SERIES_SUFFIX, REJECTING_STUDY_SUFFIX = ".666", ".777"
FILTER = f"""
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if method == 'GET' and string.find(uri, '{BROKEN_SERIES_SUFFIX}', 1, true) then return false end
  if method == 'POST' and string.find(uri, '{REJECTING_STUDY_SUFFIX}', 1, true) then return false end
  return true
end
"""


def missing() -> str | None:
    """Why no test Orthanc can start here, or None."""
    if shutil.which("Orthanc") is None:
        return "Orthanc not installed (Debian package orthanc; setup.sh installs it as root with apt)"
    if not PLUGIN.exists():
        return f"Orthanc's DICOMweb plugin not installed ({PLUGIN}; Debian package orthanc-dicomweb)"
    return None


@dataclass
class Orthanc:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.rest}/dicom-web"

    def get(self, path: str):
        response = requests.get(self.rest + path, auth=(USER, PASSWORD), timeout=30)
        response.raise_for_status()
        return response.json()

    def get_bytes(self, path: str) -> bytes:
        response = requests.get(self.rest + path, auth=(USER, PASSWORD), timeout=30)
        response.raise_for_status()
        return response.content

    def upload(self, files) -> None:
        for file in files:
            requests.post(
                f"{self.rest}/instances", data=Path(file).read_bytes(), auth=(USER, PASSWORD), timeout=30
            ).raise_for_status()

    def delete_series(self, series_uid: str) -> None:
        for orthanc_id in self.find("Series", {"SeriesInstanceUID": series_uid}):
            requests.delete(f"{self.rest}/series/{orthanc_id}", auth=(USER, PASSWORD), timeout=30).raise_for_status()

    def find(self, level: str, query: dict) -> list[str]:
        response = requests.post(
            f"{self.rest}/tools/find", json={"Level": level, "Query": query}, auth=(USER, PASSWORD), timeout=30
        )
        response.raise_for_status()
        return response.json()

    def segs_of_study(self, study_uid: str, modality: str = "SEG") -> list[dict]:
        """Main tags of every SEG (or other ``modality``) instance in the study."""
        out = []
        for series_id in self.find("Series", {"StudyInstanceUID": study_uid, "Modality": modality}):
            for instance_id in self.get(f"/series/{series_id}")["Instances"]:
                tags = self.get(f"/instances/{instance_id}/simplified-tags")
                out.append(tags)
        return out

    def clear(self) -> None:
        for patient in self.get("/patients"):
            requests.delete(f"{self.rest}/patients/{patient}", auth=(USER, PASSWORD), timeout=30).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(folder: Path) -> Orthanc:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (folder / "filter.lua").write_text(FILTER, encoding="utf-8")
    config = {
        "Name": "volseg-test-pacs",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "LuaScripts": [str(folder / "filter.lua")],
        "HttpThreadsCount": 8,
        "ConcurrentJobs": 1,
        "StableAge": 1,
        "SaveJobs": False,
    }
    (folder / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    log = folder / "orthanc.log"
    process = subprocess.Popen(
        ["Orthanc", str(folder / "orthanc.json")],
        stdout=log.open("w", encoding="utf-8"),
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    server = Orthanc(process, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}: {log.read_text(encoding='utf-8')[-2000:]}")
        try:
            server.get("/system")
            return server
        except requests.RequestException:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within 60 s: {log.read_text(encoding='utf-8')[-2000:]}")
