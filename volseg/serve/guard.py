"""What every request passes first (an ASGI middleware around the endpoints): the upload size limit (413 from
Content-Length, before a byte of the body is read; a body without a length gets 411), the token check when auth is on (401 on every path but the login), and the
access log line, which names the path, the status, the seconds and the image id's digest: never the id (a node
name in Slicer, often a patient's), a file name or a byte of the image."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs

from volseg.serve.auth import Tokens
from volseg.serve.datastore import digest

log = logging.getLogger("volseg.serve")
OPEN_PATHS = ("/auth/", "/auth/token")  # what a client reaches before it has a token


class Guard:
    def __init__(self, app, max_body_bytes: int, tokens: Tokens | None) -> None:
        self.app, self.max_body_bytes, self.tokens = app, max_body_bytes, tokens

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [0]

        async def send_noting_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self.refusal(scope)
            if refusal is not None:
                await _send_json(send_noting_status, *refusal)
            else:
                await self.app(scope, receive, send_noting_status)
        finally:
            log.info(
                "%s %s %d %.2f s%s",
                scope["method"],
                scope["path"],
                status[0],
                time.perf_counter() - started,
                _image_digest(scope),
            )

    def refusal(self, scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if (
            self.tokens is not None
            and scope["path"] not in OPEN_PATHS
            and not self.tokens.valid(headers.get("authorization"))
        ):
            return 401, "missing or invalid token: log in at POST /auth/token"
        if "transfer-encoding" in headers:  # the server checks a body against its Content-Length
            return 411, "send the body with a Content-Length"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return 413, f"upload larger than {self.max_body_bytes // 2**20} MB (--max-upload-mb)"
        return None


async def _send_json(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _image_digest(scope) -> str:
    image = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("image")
    return f" image {digest(image[0])[:12]}" if image else ""
