"""asyncio support for aether.Subscriber: ``await sub.areceive()`` and
``async for msg in sub``.

No thread and no polling: the event loop watches the subscriber's
descriptor (``sub.fileno()``: an eventfd publishers signal, or the message
queue) with ``add_reader``, and receives without waiting once it is
readable. A receive that comes back empty re-arms the descriptor, so the
loop is: try, and if nothing is there, wait for the descriptor, then try
again.

Cancellation (``asyncio.wait_for`` timeouts, task cancellation) loses
nothing: a message is only ever taken by a receive that returns it.
``close()`` wakes every coroutine waiting on the subscriber.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Optional

__all__ = ["areceive", "anext", "closed"]

# The futures of coroutines waiting for each subscriber's descriptor, so
# that close() can wake them (the descriptor goes away with the subscriber).
_waiting: "weakref.WeakKeyDictionary[Any, set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]]" = (
    weakref.WeakKeyDictionary()
)


def _wake(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


def _wake_all(sub_ref: "weakref.ref[Any]", loop: asyncio.AbstractEventLoop) -> None:
    """The reader callback: wakes every coroutine of ``loop`` waiting on the subscriber."""
    sub = sub_ref()
    for waiter_loop, fut in list(_waiting.get(sub, ())) if sub is not None else ():
        if waiter_loop is loop:
            _wake(fut)


def closed(sub: Any) -> None:
    """Called by ``Subscriber.close()``: wakes whoever waits on ``sub``."""
    for loop, fut in list(_waiting.pop(sub, ())):
        try:
            loop.call_soon_threadsafe(_wake, fut)
        except RuntimeError:
            pass  # that loop is closed


async def _receive(sub: Any, timeout: Optional[float], iterating: bool) -> Any:
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        if sub.closed:
            if iterating:
                return None
            sub.receive(timeout=0)  # raises the closed error
        # Asked for before trying, so that an empty try arms it.
        fd = sub.fileno()
        msg = sub.receive(timeout=0)
        if msg is not None:
            return msg
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            return None
        fut: "asyncio.Future[None]" = loop.create_future()
        entry = (loop, fut)
        waiters = _waiting.setdefault(sub, set())
        # One reader per descriptor and loop, shared by its coroutines.
        if not any(w is loop for w, _ in waiters):
            loop.add_reader(fd, _wake_all, weakref.ref(sub), loop)
        waiters.add(entry)
        try:
            await asyncio.wait_for(fut, left)
        except asyncio.TimeoutError:
            return None
        finally:
            waiters = _waiting.get(sub, set())
            waiters.discard(entry)
            if not any(w is loop for w, _ in waiters):
                loop.remove_reader(fd)


async def areceive(sub: Any, timeout: Optional[float] = None) -> Any:
    """``await sub.areceive(timeout)``: the next message, or None on timeout."""
    return await _receive(sub, timeout, False)


async def anext(sub: Any) -> Any:
    """``async for msg in sub``: ends when the subscriber is closed."""
    msg = await _receive(sub, None, True)
    if msg is None:
        raise StopAsyncIteration
    return msg
