"""The NiiVue viewer inlined into review pages: one pinned release, fetched once with npm, checksum checked.

The page opens from file:// with no server and no internet, so the viewer travels inside ``index.html``.
It is never committed: ``setup.sh`` runs ``python -m volseg.report.viewer`` (``npm pack`` of the pinned
version into ``~/.cache/volseg/niivue``), and a page built without it says so and falls back to pictures.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from volseg.files.atomic import atomic_path
from volseg.runtime.cache import cache_folder

NIIVUE_PACKAGE = "@niivue/niivue"
NIIVUE_VERSION = "0.69.0"
NIIVUE_FILE = "package/dist/niivue.umd.js"  # a plain script defining the global `niivue`, loads no other file
NIIVUE_SHA256 = "47b896b77ec4a5be3ef1949c33ad393b6f45629921f326c279000bcf51bdb4af"
NIIVUE_LICENSE = "NiiVue 0.69.0, BSD-2-Clause, Copyright (c) NiiVue contributors, github.com/niivue/niivue"


def cache_dir() -> Path:
    return cache_folder() / "niivue" / NIIVUE_VERSION


def viewer_path() -> Path | None:
    """The checked viewer script, or None when it was never fetched (or does not match the pinned checksum)."""
    path = cache_dir() / "niivue.umd.js"
    return path if path.is_file() and _sha256(path.read_bytes()) == NIIVUE_SHA256 else None


def viewer_script() -> str | None:
    """The viewer's source, ready to inline: URL-shaped text in its comments and messages is written
    ``:\\/\\/`` (the same string in JavaScript) so that the page holds no address at all."""
    path = viewer_path()
    if path is None:
        return None
    source = path.read_text(encoding="utf-8")
    return source.replace("://", ":\\/\\/").replace("</script", "<\\/script")


def install() -> Path:
    """``npm pack`` the pinned release, check the script's SHA-256, keep it in the cache; idempotent."""
    if (found := viewer_path()) is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: install Node.js and npm, then run `python -m volseg.report.viewer`")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", f"{NIIVUE_PACKAGE}@{NIIVUE_VERSION}", "--silent"],
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
            encoding="utf-8",
        )
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            data = tar.extractfile(NIIVUE_FILE).read()
    if _sha256(data) != NIIVUE_SHA256:
        raise RuntimeError(f"{NIIVUE_PACKAGE}@{NIIVUE_VERSION}: {NIIVUE_FILE} does not match the pinned SHA-256")
    target = cache_dir() / "niivue.umd.js"
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    try:
        print(f"review page viewer: {install()}")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print(f"warning: review page viewer not installed ({e}); pages will show pictures only", file=sys.stderr)
