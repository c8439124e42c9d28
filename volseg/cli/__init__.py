"""The ``volseg`` command line: parse, build, call one library function, report.

One module per theme registers its commands on the one typer app (:mod:`volseg.cli.app`): data
(manifest, check, plan), inference (infer, pacs, demo), models (models, export), results (evaluate, report), serve (serve, serve-passwd),
training.
"""

from volseg.cli import data, inference, models, results, serve, training  # noqa: F401  (each registers its commands)
from volseg.cli.app import app, main

__all__ = ["app", "main"]
