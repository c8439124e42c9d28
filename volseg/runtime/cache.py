"""volseg's one cache folder: ``$VOLSEG_CACHE``, else ``$XDG_CACHE_HOME/volseg``, else ``~/.cache/volseg``.

Exports and quantized models are made once per model and kept here (ONNX files, int8 twins, the viewer)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_folder() -> Path:
    if "VOLSEG_CACHE" in os.environ:
        return Path(os.environ["VOLSEG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "volseg"
