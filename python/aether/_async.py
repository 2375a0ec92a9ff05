"""asyncio support for aether.Subscriber: ``await sub.areceive()`` and
``async for msg in sub``.

The ring signals new messages with a futex in shared memory, which an event
loop cannot poll. Each subscriber used from asyncio therefore gets one helper
thread (made on first use) that does the blocking, GIL-releasing receive and
hands the result to the loop with ``call_soon_threadsafe``: the loop sleeps
until then, with no polling. Requests are served in order.

Cancellation (``asyncio.wait_for`` timeouts, task cancellation) is safe: the
helper notices within one wait slice, and a message it had already taken is
kept by the subscriber and returned by the next receive, so none is lost.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from typing import Any, Optional

__all__ = ["areceive", "anext", "Helper"]


class Helper:
    """The helper thread of one subscriber (holds it only weakly)."""

    def __init__(self, sub: Any) -> None:
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._ref = weakref.ref(sub)
        # Stop the thread when the subscriber goes away without close().
        weakref.finalize(sub, self._queue.put, None)
        self._thread = threading.Thread(
            target=_serve,
            args=(self._ref, self._queue),
            name=f"aether-async:{sub.topic}",
            daemon=True,
        )
        self._thread.start()

    def submit(self, request: tuple[Any, ...]) -> None:
        self._queue.put(request)

    def stop(self) -> None:
        self._queue.put(None)


class _Delivery:
    """Who hands a received message on: the loop (``_settle``) or, when the
    loop no longer runs, the helper itself. Exactly one of them does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = False
        self.settled = threading.Event()

    def take(self) -> bool:
        with self._lock:
            if self._taken:
                return False
            self._taken = True
            return True


def _serve(ref: "weakref.ref[Any]", q: "queue.SimpleQueue[Any]") -> None:
    while True:
        request = q.get()
        if request is None:
            return
        loop, fut, timeout, cancel, iterating = request
        if cancel.is_set():
            continue
        sub = ref()
        msg = None
        error: Optional[BaseException] = None
        if sub is None:
            error = RuntimeError("the subscriber was garbage-collected")
        else:
            try:
                msg = sub._receive_async(timeout, cancel, iterating)
            except BaseException as e:  # delivered to the awaiting task
                error = e
        delivery = _Delivery()
        try:
            loop.call_soon_threadsafe(_settle, fut, msg, error, sub, delivery)
        except RuntimeError:
            pass  # the loop is closed
        # Wait until the message is settled before the next receive (which
        # would end it): delivered, or kept for the next receive.
        while not delivery.settled.wait(0.05):
            if loop.is_closed() or not loop.is_running():
                if delivery.take() and msg is not None and sub is not None:
                    sub._stash(msg)
                break
        del sub, msg, error


def _settle(fut: "asyncio.Future[Any]", msg: Any, error: Optional[BaseException], sub: Any, delivery: _Delivery) -> None:
    try:
        if not delivery.take():
            return
        if fut.done():  # cancelled meanwhile: keep the message for the next receive
            if msg is not None and sub is not None:
                sub._stash(msg)
        elif error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(msg)
    finally:
        delivery.settled.set()


async def _receive(sub: Any, timeout: Optional[float], iterating: bool) -> Any:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    cancel = threading.Event()
    sub._async_helper().submit((loop, fut, timeout, cancel, iterating))
    try:
        return await fut
    except asyncio.CancelledError:
        cancel.set()
        raise


async def areceive(sub: Any, timeout: Optional[float] = None) -> Any:
    """``await sub.areceive(timeout)``: the next message, or None on timeout."""
    return await _receive(sub, timeout, False)


async def anext(sub: Any) -> Any:
    """``async for msg in sub``: ends when the subscriber is closed."""
    msg = await _receive(sub, None, True)
    if msg is None:
        raise StopAsyncIteration
    return msg
