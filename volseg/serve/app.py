"""The endpoints 3D Slicer's MONAI Label module calls (``../shared/notes/slicer-monailabel.md``), on Starlette:
``GET /info/``, ``PUT /datastore/``, ``GET /datastore/image``, ``POST /infer/{model}`` and, with auth on,
``/auth/``. Every other path is a 404 (a 200 on ``/train/`` would tell the module training is running), and every
refusal is a status with one line of JSON, after which the server goes on serving."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from volseg.data import io
from volseg.errors import VolsegError
from volseg.serve.auth import Tokens
from volseg.serve.datastore import Datastore, check_id, image_suffix
from volseg.serve.guard import Guard
from volseg.serve.inference_queue import ClientGone, InferenceQueue
from volseg.serve.refusal import RequestRefused
from volseg.serve.warm_models import Segmented, WarmModel
from volseg.version import __version__


@dataclass
class Server:
    """What the endpoints share: the warm models, the datastore, the inference queue, the tokens (auth on)."""

    models: dict[str, WarmModel]
    datastore: Datastore
    queue: InferenceQueue
    tokens: Tokens | None
    max_upload_bytes: int

    def model(self, key: str) -> WarmModel:
        if key not in self.models:
            raise RequestRefused(404, f"no model {key!r}; this server has {', '.join(self.models)}")
        return self.models[key]


def build_app(server: Server) -> Starlette:
    routes = [
        Route("/info/", info, methods=["GET"]),
        Route("/datastore/", put_image, methods=["PUT"]),
        Route("/datastore/image", get_image, methods=["GET"]),
        Route("/infer/{model}", infer, methods=["POST"]),
    ]
    if server.tokens is not None:
        routes += [
            Route("/auth/", lambda _: JSONResponse({"enabled": True}), methods=["GET"]),
            Route("/auth/token", token, methods=["POST"]),
            Route("/auth/token/valid", lambda _: JSONResponse({}), methods=["GET"]),  # Guard checked it
        ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, max_body_bytes=server.max_upload_bytes, tokens=server.tokens)],
        exception_handlers={RequestRefused: _refused, HTTPException: _http_error},
    )
    app.state.server = server
    return app


async def info(request: Request) -> JSONResponse:
    server: Server = request.app.state.server
    labels = list(dict.fromkeys(name for m in server.models.values() for name in m.label_names))
    return JSONResponse(
        {
            "name": "volseg",
            "description": "volseg serve: volseg, nnU-Net and TotalSegmentator models, warm",
            "version": __version__,
            "labels": labels,  # Slicer makes one segment per name up front
            "models": {key: m.describe() for key, m in server.models.items()},
            "trainers": {},
            "strategies": {},
            "scoring": {},
            "datastore": {"completed": 0, "total": server.datastore.count()},
        }
    )


async def put_image(request: Request) -> JSONResponse:
    """Store an upload under its id: copied into ``.incoming/``, read whole (a truncated or non-image file is
    refused here, not at inference), then renamed into place."""
    server: Server = request.app.state.server
    image_id = check_id(request.query_params.get("image"))
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestRefused(400, "no file part named 'file'")
        suffix = image_suffix(upload.filename)
        incoming = server.datastore.incoming_file(suffix)
        try:
            await run_in_threadpool(_copy_and_read, upload, incoming)
            await run_in_threadpool(server.datastore.add, image_id, incoming, suffix)  # fsync: off the event loop
        finally:
            incoming.unlink(missing_ok=True)
    return JSONResponse({"image": image_id})


def _copy_and_read(upload: UploadFile, incoming) -> None:
    with open(incoming, "wb") as f:
        shutil.copyfileobj(upload.file, f, 2**20)
    try:
        io.read_scan(incoming)
    except VolsegError as e:  # io's one line names the file: here that is the upload
        raise RequestRefused(400, str(e).replace(str(incoming), "upload")) from None


async def get_image(request: Request) -> FileResponse:
    server: Server = request.app.state.server
    path = server.datastore.find(check_id(request.query_params.get("image")))
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)


async def infer(request: Request) -> Response:
    server: Server = request.app.state.server
    model = server.model(request.path_params["model"])
    image = server.datastore.find(check_id(request.query_params.get("image")))
    async with request.form(max_files=2, max_fields=8) as form:
        if any(isinstance(v, UploadFile) for v in form.values()):
            raise RequestRefused(400, "send the image with PUT /datastore/ first; infer takes its id")
        params = form.get("params")
    wanted = model.request(params if isinstance(params, str) else None)
    started = time.perf_counter()
    try:
        result = await server.queue.run(model.segment, image, wanted, disconnected=request.is_disconnected)
    except ClientGone:
        return Response(status_code=499)  # nobody is listening: the log line records it
    return _multipart(result, model.key, time.perf_counter() - started)


def _multipart(result: Segmented, model: str, seconds: float) -> Response:
    """200 multipart/form-data: ``params`` (JSON, no file name) and one label file, as the clients parse it."""
    from urllib3.fields import RequestField
    from urllib3.filepost import encode_multipart_formdata

    params = RequestField(
        "params",
        json.dumps(
            {"label_names": result.label_names, "model": model, "seconds": result.seconds | {"request": seconds}}
        ),
    )
    params.make_multipart(content_type="application/json")
    label = RequestField("label", result.payload, filename=f"seg-{secrets.token_hex(6)}{result.extension}")
    label.make_multipart(content_type="application/octet-stream")
    body, content_type = encode_multipart_formdata([params, label])
    return Response(body, media_type=content_type)


async def token(request: Request) -> JSONResponse:
    server: Server = request.app.state.server
    async with request.form(max_files=0, max_fields=8) as form:
        user, password = form.get("username"), form.get("password")
    issued = server.tokens.login(user, password) if isinstance(user, str) and isinstance(password, str) else None
    if issued is None:
        raise RequestRefused(401, "wrong user name or password")
    return JSONResponse({"access_token": issued, "token_type": "bearer"})


async def _refused(request: Request, error: RequestRefused) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=error.status, headers=error.headers)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": " ".join(str(error.detail).split())}, status_code=error.status_code)
