"""Text output that survives any locale: a log or terminal with an ASCII encoding must not crash a run
over a "±" or a progress bar (CI runs with one)."""

from __future__ import annotations

import sys


def tolerate_unencodable_output() -> None:
    """Characters stdout/stderr cannot encode become "?" instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
