"""``volseg serve`` from start to stop: refuse an exposed server without auth, open the datastore (sweeping what a
killed upload left) and every model (warm before the port opens), then serve with uvicorn until stopped."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from volseg.errors import VolsegError
from volseg.inference.open_model import InferenceOptions


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    datastore: Path = Path("volseg_datastore")
    auth_file: Path | None = None
    max_upload_mb: int = 1024
    queue: int = 8  # requests waiting while one runs; more get 503
    precisions: tuple[str, ...] = ("auto",)  # each opened warm; more than one: a per-request choice


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond this machine


def check_exposure(options: ServeOptions) -> None:
    """Listening beyond this machine without auth would hand scans and models to anyone on the network."""
    if not is_loopback(options.host) and options.auth_file is None:
        raise VolsegError(
            f"--host {options.host} listens beyond this machine: pass --auth-file (users from `volseg serve-passwd`)"
        )
    if options.queue < 0 or options.max_upload_mb < 1:
        raise VolsegError("--queue must be >= 0 and --max-upload-mb >= 1")


def check_port(options: ServeOptions) -> None:
    """Fail in one line, before the models open, when the address cannot be bound (a port in use, a host that is
    not this machine's); uvicorn would only say so after the start-up, in its own words."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.bind((options.host, options.port))
    except OSError as e:
        raise VolsegError(
            f"--host {options.host} --port {options.port}: cannot listen there ({e.strerror or e})"
        ) from None


def build_server(models: list[str], engine: InferenceOptions, options: ServeOptions):
    """The Starlette app with every model open."""
    from volseg.serve.app import Server, build_app
    from volseg.serve.auth import Tokens, read_auth_file
    from volseg.serve.datastore import Datastore
    from volseg.serve.inference_queue import InferenceQueue
    from volseg.serve.warm_models import open_models

    check_exposure(options)
    check_port(options)
    tokens = Tokens(read_auth_file(options.auth_file)) if options.auth_file is not None else None
    datastore = Datastore(options.datastore)
    warm = open_models(models, engine, list(options.precisions))
    server = Server(warm, datastore, InferenceQueue(options.queue), tokens, options.max_upload_mb * 2**20)
    return build_app(server), server


def run(app, options: ServeOptions) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes the requests in flight). Its access log is off: it would
    print each request's query string, the image id among it; :mod:`volseg.serve.guard` logs a digest instead."""
    import uvicorn

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log = logging.getLogger("volseg.serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        access_log=False,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()
