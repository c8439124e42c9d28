"""volseg's one cache folder: ``$VOLSEG_CACHE``, else ``$XDG_CACHE_HOME/volseg``, else ``~/.cache/volseg``.

Exports and quantized models are made once per model and kept here (ONNX files, int8 twins, the viewer), and so
are the digests of the checkpoints they were made from (:func:`file_digest`)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DIGESTS = "digests.json"
MAX_DIGESTS = 1000  # remembered files; the oldest are forgotten first


def cache_folder() -> Path:
    if "VOLSEG_CACHE" in os.environ:
        return Path(os.environ["VOLSEG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "volseg"


def file_digest(path: str | Path) -> str:
    """The file's SHA-256, remembered by its path, size and modification time: a model's checkpoints identify its
    int8 twin and records on every run, and hashing them again cost half a second of a CT case's start-up. A file
    rewritten in place gets a new modification time, so its digest is computed afresh."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    store = cache_folder() / DIGESTS
    known = _read_digests(store)
    if key not in known:
        sha = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(2**22):
                sha.update(chunk)
        known[key] = sha.hexdigest()
        _write_digests(store, dict(list(known.items())[-MAX_DIGESTS:]))
    return known[key]


def _read_digests(store: Path) -> dict[str, str]:
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write_digests(store: Path, known: dict[str, str]) -> None:
    """Best effort (a read-only cache only costs the hashing again)."""
    from volseg.files.atomic import write_text_atomic

    try:
        write_text_atomic(store, json.dumps(known))
    except OSError:
        pass
