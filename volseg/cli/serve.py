"""Commands that serve models to other tools: ``serve`` (MONAI Label's protocol, for 3D Slicer) and
``serve-passwd`` (the users of a server that listens beyond this machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from volseg.cli.app import DEFAULTS, Backend, Device, Overlap, app, console, user_errors


@app.command()
def serve(
    model: list[str] = typer.Option(
        ...,
        "--model",
        "-m",
        help="A model to serve, as `volseg infer --model` takes it (built-in name, run folder, nnU-Net folder, "
        "totalsegmentator:TASK); repeat for more. Each is opened once and kept warm.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; beyond loopback needs --auth-file."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    datastore: Path = typer.Option(
        Path("volseg_datastore"), "--datastore", help="Folder of uploaded images (kept across restarts)."
    ),
    device: Device = DEFAULTS.device,
    backend: Backend = DEFAULTS.backend,
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto, fp32, bf16 or int8 as for `volseg infer`; comma-separated (int8,fp32) opens each and lets "
        "Slicer choose per request, the first by default.",
    ),
    overlap: Overlap = DEFAULTS.overlap,
    auth_file: Optional[Path] = typer.Option(
        None, "--auth-file", help="Users and password hashes (`volseg serve-passwd`); turns on login."
    ),
    max_upload_mb: int = typer.Option(1024, "--max-upload-mb", help="Largest upload accepted (413 beyond)."),
    queue: int = typer.Option(8, "--queue", help="Requests that may wait while one runs (503 beyond)."),
) -> None:
    """Serve models to 3D Slicer's MONAI Label module (docs/slicer.md): `GET /info/`, `PUT /datastore/`,
    `POST /infer/{model}`. One inference runs at a time; the others wait in a bounded queue."""
    from volseg.inference.open_model import InferenceOptions
    from volseg.serve.server import ServeOptions, build_server, run

    precisions = tuple(p.strip() for p in precision.split(",") if p.strip()) or ("auto",)
    options = ServeOptions(host, port, datastore, auth_file, max_upload_mb, queue, precisions)
    engine = InferenceOptions(device=device, backend=backend, overlap=overlap)
    with user_errors():
        app_, server = build_server(model, engine, options)
    for key, warm in server.models.items():
        engines = ", ".join(f"{e.backend} {e.precision}" for e in warm.engines.values())
        console.print(f"model {key}: {warm.info.summary}, labels {warm.label_names} on {engines}", highlight=False)
    auth = "login required" if options.auth_file else "no login (loopback only)"
    console.print(f"serving at http://{host}:{port}/ ({auth}); datastore {datastore}", highlight=False)
    run(app_, options)


@app.command("serve-passwd")
def serve_passwd(
    auth_file: Path = typer.Argument(..., help="The auth file to create or update."),
    user: str = typer.Argument(..., help="User name (no colon)."),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="Asked for when not given."
    ),
) -> None:
    """Add a user to a `volseg serve --auth-file` file, or change their password (stored as an scrypt hash)."""
    from volseg.serve.auth import set_password

    with user_errors():
        set_password(auth_file, user, password)
    console.print(f"{auth_file}: {user} set", highlight=False)
