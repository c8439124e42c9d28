"""The server's image store: each upload lands whole or not at all, under a digest of its id.

Slicer uploads a volume under its node name, any string a user typed. The id never becomes a path: the file is
``<sha256(id)[:32]><suffix>``, so no id can reach outside the folder, and the log can name the digest instead of a
name that may be a patient's. Ids that look like an attempt to leave (separators, ``..``, NUL, control characters,
percent-encodings that survived decoding) are refused anyway, so a client learns its mistake. An upload is copied
into ``.incoming/`` and renamed into place; what a killed server left there is removed at the next start.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote

from volseg.serve.refusal import RequestRefused

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # one-file formats a client can upload
MAX_ID_LENGTH = 255


def digest(image_id: str) -> str:
    """What the store and the log call an image: no name, no path, the same for the same id."""
    return hashlib.sha256(image_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def check_id(image_id: str | None) -> str:
    """The id, or a 400 saying what is wrong with it."""
    if not image_id:
        raise RequestRefused(400, "no image id: pass ?image=<id>")
    if len(image_id) > MAX_ID_LENGTH:
        raise RequestRefused(400, f"image id longer than {MAX_ID_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in image_id):
        raise RequestRefused(400, "image id holds a control character or NUL")
    if "/" in image_id or "\\" in image_id or image_id.strip(". ") == "":
        raise RequestRefused(400, "image id is a path, not a name (separators or dots only)")
    if unquote(image_id) != image_id:
        raise RequestRefused(400, "image id holds percent-encoded characters: send the plain name")
    return image_id


def image_suffix(filename: str | None) -> str:
    """The suffix of an uploaded file's name, or a 415 naming the formats accepted."""
    name = (filename or "").lower()
    suffix = next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise RequestRefused(415, f"upload is not a {', '.join(IMAGE_SUFFIXES)} file")
    return suffix


class Datastore:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.incoming = self.folder / ".incoming"
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.incoming, ignore_errors=True)  # a killed upload's copy: never served, removed
        self.incoming.mkdir()

    def incoming_file(self, suffix: str) -> Path:
        """A new empty file in ``.incoming/`` (same file system as the store: the final rename is atomic)."""
        handle, name = tempfile.mkstemp(suffix=suffix, dir=self.incoming)
        os.close(handle)
        return Path(name)

    def add(self, image_id: str, incoming: Path, suffix: str) -> Path:
        """Move a checked upload into place under its id's digest, replacing an earlier upload of that id."""
        with open(incoming, "rb") as f:
            os.fsync(f.fileno())  # on disk before it has its final name
        target = self.folder / f"{digest(image_id)}{suffix}"
        earlier = self._files(image_id)
        os.replace(incoming, target)
        for path in earlier:
            if path != target:
                path.unlink(missing_ok=True)
        return target

    def find(self, image_id: str) -> Path:
        """The stored file of ``image_id``, or a 404."""
        files = self._files(image_id)
        if not files:
            raise RequestRefused(404, f"no image {digest(image_id)[:12]} in the datastore: upload it first")
        return files[0]

    def count(self) -> int:
        return sum(1 for p in self.folder.iterdir() if p.is_file() and p.name.endswith(IMAGE_SUFFIXES))

    def _files(self, image_id: str) -> list[Path]:
        key = digest(image_id)
        return [self.folder / f"{key}{s}" for s in IMAGE_SUFFIXES if (self.folder / f"{key}{s}").is_file()]
