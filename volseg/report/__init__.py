"""Review pages for batch results: ``volseg report OUT_DIR`` (:func:`volseg.report.build.build_report`).

Nothing is imported here, so ``python -m volseg.report.viewer`` (set-up installs the viewer with it) runs its
module once, without the warning runpy gives for a module its package already imported."""
