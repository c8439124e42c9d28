"""The one error a request can get from volseg's server: an HTTP status and one line saying why."""

from __future__ import annotations

from volseg.errors import VolsegError


class RequestRefused(VolsegError):
    """A request the server will not carry out: ``status`` (4xx, or 503 when busy) and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status
        self.headers = headers or {}
