"""Inference is CPU-bound: two at once only share the cores and both finish late. So one runs at a time (the
``workers`` slots), the others wait in a bounded queue, a full queue answers 503 with Retry-After, and a client
that disconnects while waiting gives up its place instead of having its image segmented for nobody."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from volseg.serve.refusal import RequestRefused

DISCONNECT_POLL_S = 0.2


class ClientGone(Exception):
    """The client closed its connection while its request waited: nothing to answer."""


class InferenceQueue:
    def __init__(self, capacity: int, workers: int = 1, retry_after_s: int = 10) -> None:
        self.capacity, self.retry_after_s = capacity, retry_after_s
        self.waiting = 0
        self.slots = asyncio.Semaphore(workers)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="volseg-infer")

    async def run(self, work: Callable, *args, disconnected: Callable[[], Awaitable[bool]]):
        """``work(*args)`` in an inference thread once a slot is free; 503 when the queue is full, ClientGone
        when ``disconnected()`` turns true while waiting. A started inference always finishes."""
        if self.slots.locked() and self.waiting >= self.capacity:
            raise RequestRefused(
                503, f"busy: {self.waiting} requests waiting; retry later", {"Retry-After": str(self.retry_after_s)}
            )
        self.waiting += 1
        try:
            acquired = await self._acquire_unless(disconnected)
        finally:
            self.waiting -= 1
        if not acquired:
            raise ClientGone
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)
        finally:
            self.slots.release()

    async def _acquire_unless(self, disconnected: Callable[[], Awaitable[bool]]) -> bool:
        acquire = asyncio.ensure_future(self.slots.acquire())
        watch = asyncio.ensure_future(_until(disconnected))
        done, _ = await asyncio.wait({acquire, watch}, return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
        if watch not in done:
            return True
        acquire.cancel()  # no effect when it already holds the slot: released below
        try:
            await acquire
        except asyncio.CancelledError:
            return False
        self.slots.release()  # acquired in the same moment the client left: give the slot on
        return False

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    while not await condition():
        await asyncio.sleep(DISCONNECT_POLL_S)
