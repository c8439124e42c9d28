"""What every command shares: the typer app, the console, the inference options declared once, and the rule
that only volseg's own errors become one-line exits."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from volseg.errors import VolsegError
from volseg.inference.open_model import InferenceOptions

app = typer.Typer(
    name="volseg",
    help="3D volumetric segmentation of CT and MRI with a dimension-generic U-Net model zoo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # a docstring's wrapped lines join into one paragraph, as they read
)
console = Console(soft_wrap=True)  # never break a path or a number across lines
err_console = Console(stderr=True, soft_wrap=True)  # errors and warnings: a script piping stdout still sees them


_DEBUG = {"on": False}  # volseg --debug: tracebacks for volseg's own errors too
DEFAULTS = InferenceOptions()
# The inference options infer, pacs and demo share, declared once (defaults: volseg.inference.open_model.InferenceOptions)
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Backend = Annotated[
    str, typer.Option("--backend", help="auto, torch, onnxruntime or openvino (auto: fastest installed).")
]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto, fp32, bf16 or int8 (OpenVINO; auto: int8 for a model whose int8 agreement is recorded, else bf16 "
        "where its agreement is recorded and the CPU has native bf16, else fp32; see `volseg export`; bf16: on CPUs "
        "with native bf16, AVX512_BF16 or AMX).",
    ),
]
Overlap = Annotated[
    float,
    typer.Option(
        "--overlap", min=0.0, max=0.95, help="Sliding-window overlap (3D models; nnU-Net's tile step is 1 - overlap)."
    ),
]
Tta = Annotated[
    bool,
    typer.Option(
        "--tta", help="Mirroring test-time augmentation along the axes the model was trained mirrored on (2^n passes)."
    ),
]
KeepLargest = Annotated[
    bool, typer.Option("--keep-largest", help="Keep only the largest connected component per label.")
]


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of volseg's own errors too (one line otherwise)."
    ),
) -> None:
    _DEBUG["on"] = debug
    if version:
        from volseg.version import __version__

        console.print(f"volseg {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help())
        raise typer.Exit()


@contextmanager
def user_errors():
    """volseg's own errors (:class:`~volseg.errors.VolsegError`) and a missing file become one red line on
    stderr and exit code 2; with ``volseg --debug`` the traceback comes first. Any other exception is not the user's
    doing: it propagates with its traceback."""
    try:
        yield
    except (VolsegError, FileNotFoundError) as e:
        if _DEBUG["on"]:
            import traceback

            traceback.print_exception(e)
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def warn_about(model) -> None:
    """The one-line caution of a built-in model that is a demonstration only."""
    from volseg.inference.model_spec import read_model_spec

    caution = read_model_spec(model).caution
    if caution:
        console.print(f"[yellow]note:[/yellow] {caution}", highlight=False)


def main() -> None:
    from volseg.files.textio import tolerate_unencodable_output
    from volseg.runtime.huge_pages import use_plain_pages

    tolerate_unencodable_output()
    use_plain_pages()
    app()
