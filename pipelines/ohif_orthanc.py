"""OHIF v3 in front of Orthanc, the way a hospital can run it: the prebuilt viewer from npm served by nginx, with
Orthanc's DICOMweb behind the same origin (Orthanc sends no CORS headers, and the browser then needs none).

    python pipelines/ohif_orthanc.py fetch                       # npm pack the pinned @ohif/app once (setup.sh)
    python pipelines/ohif_orthanc.py serve --orthanc http://127.0.0.1:8042 --port 3000 [--folder DIR]
        # with Orthanc's credentials in ORTHANC_USER / ORTHANC_PASSWORD when it asks for them

``serve`` writes ``DIR/app-config.js`` (one DICOMweb data source, ``/dicom-web`` on the same origin) and
``DIR/nginx.conf`` (the viewer's files, every other path answered with its ``index.html`` for the viewer's own
routes, ``/dicom-web/`` proxied to Orthanc with the credentials added there, so none reach the browser), then
runs nginx in the foreground. Then open ``http://HOST:3000/viewer?StudyInstanceUIDs=<uid>``: the study's CT,
and volseg's SEG, RTSTRUCT and SR series in the study browser; a double click on the SEG or RTSTRUCT loads it
over the images. ``tests/test_ohif.py`` runs exactly this against a real Orthanc and checks the screenshots.
For a department put TLS in front (an nginx ``listen 443 ssl`` with the hospital's certificate) and keep
Orthanc itself unreachable from the network.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
OHIF_TARBALL_SHA256 = "b189d3963bfc58e9394a9db8c7be75d07beb029ec211dbb126d47b62969dd3f1"  # the npm tarball, MIT


def cache_dir() -> Path:
    from volseg.runtime.cache import cache_folder

    return cache_folder() / "ohif" / OHIF_VERSION


def dist_path() -> Path | None:
    """The fetched viewer (its ``index.html`` folder), or None."""
    dist = cache_dir() / "dist"
    return dist if (dist / "index.html").is_file() else None


def fetch() -> Path:
    """``npm pack`` the pinned release, check the tarball's SHA-256, unpack its ``dist/`` into the cache (a rename
    makes it appear whole); idempotent."""
    if (found := dist_path()) is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: install Node.js and npm (Debian package npm)")
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        subprocess.run(
            [npm, "pack", f"{OHIF_PACKAGE}@{OHIF_VERSION}", "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL
        )
        (tarball,) = Path(tmp).glob("*.tgz")
        if hashlib.sha256(tarball.read_bytes()).hexdigest() != OHIF_TARBALL_SHA256:
            raise SystemExit(f"{OHIF_PACKAGE}@{OHIF_VERSION}: the tarball does not match the pinned SHA-256")
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/dist/")]
            tar.extractall(tmp, members=members, filter="data")
        os.replace(Path(tmp) / "package" / "dist", cache_dir() / "dist")
    return cache_dir() / "dist"


APP_CONFIG = """window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  showStudyList: true,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'Orthanc (DICOMweb, same origin)',
        name: 'orthanc',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        wadoUriRoot: '/dicom-web',
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: true,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
      },
    },
  ],
};
"""


def nginx_config(folder: Path, dist: Path, port: int, orthanc: str, credentials: tuple[str, str] | None) -> str:
    """nginx serving the viewer and proxying ``/dicom-web/`` to Orthanc (loopback only; a site adds TLS)."""
    auth = ""
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        auth = f'proxy_set_header Authorization "Basic {token}";'
    temp = folder / "tmp"
    # started as root, nginx hands its workers to `nobody`, who cannot read a root-owned cache or site folder:
    # they keep the starting user (run the recipe as an unprivileged user, as a site should, and this is moot)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
  include /etc/nginx/mime.types;
  access_log {folder}/nginx-access.log;
  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};
  uwsgi_temp_path {temp}; scgi_temp_path {temp};
  server {{
    listen 127.0.0.1:{port};
    root {dist};
    location = /app-config.js {{ alias {folder}/app-config.js; }}
    location / {{ try_files $uri $uri/ /index.html; }}
    location /dicom-web/ {{
      proxy_pass {orthanc.rstrip("/")}/dicom-web/;
      {auth}
    }}
  }}
}}
"""


def write_site(folder: Path, port: int, orthanc: str, credentials: tuple[str, str] | None = None) -> Path:
    """``folder/app-config.js`` and ``folder/nginx.conf``; returns the nginx configuration's path."""
    dist = dist_path()
    if dist is None:
        raise SystemExit(f"OHIF not fetched: run `python {Path(__file__).name} fetch` first")
    folder = Path(folder).resolve()
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    (folder / "app-config.js").write_text(APP_CONFIG, encoding="utf-8")
    conf = folder / "nginx.conf"
    conf.write_text(nginx_config(folder, dist, port, orthanc, credentials), encoding="utf-8")
    return conf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="npm pack the pinned OHIF release into the cache")
    serve = commands.add_parser("serve", help="serve OHIF with Orthanc's DICOMweb on one origin (nginx)")
    serve.add_argument("--orthanc", required=True, help="Orthanc's base URL, e.g. http://127.0.0.1:8042")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--folder", type=Path, default=Path("ohif_site"))
    args = parser.parse_args()
    if args.command == "fetch":
        print(f"OHIF {OHIF_VERSION}: {fetch()}")
        return
    user, password = os.environ.get("ORTHANC_USER"), os.environ.get("ORTHANC_PASSWORD")
    conf = write_site(args.folder, args.port, args.orthanc, (user, password) if user and password else None)
    print(f"OHIF at http://127.0.0.1:{args.port}/ (Orthanc {args.orthanc}); nginx -c {conf}", flush=True)
    os.execvp("nginx", ["nginx", "-c", str(conf), "-p", str(conf.parent)])


if __name__ == "__main__":
    sys.exit(main())
