"""Review pages for batch results: ``volseg report OUT_DIR`` (see :mod:`volseg.report.build`)."""

from volseg.report.build import build_report

__all__ = ["build_report"]
