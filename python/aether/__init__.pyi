"""Type stubs for aether (hand-written; the implementation is aether._aether)."""

import builtins
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, TypedDict, final

from typing_extensions import Buffer, Self

class _ArrayInterface(Protocol):
    # numpy arrays, whose stubs declare the buffer protocol (__buffer__)
    # only for Python 3.12 and later, and arrays of libraries like them.
    @property
    def __array_interface__(self) -> dict[str, Any]: ...

# What `publish` takes: anything with the buffer protocol (PEP 688's Buffer,
# from typing_extensions before 3.12), numpy arrays on 3.11 included.
_Data = Buffer | _ArrayInterface

__all__ = [
    "BrokerShutdown",
    "BrokerUnavailable",
    "Corrupt",
    "Error",
    "Exists",
    "InternalError",
    "InvalidArgument",
    "IoError",
    "LimitReached",
    "Loan",
    "Message",
    "MessageTooLarge",
    "NotFound",
    "OutOfMemory",
    "Overwritten",
    "PermissionDenied",
    "ProtocolError",
    "Publisher",
    "Subscriber",
    "Timeout",
    "__version__",
    "broker_id",
    "create_topic",
    "delete_topic",
    "set_thread_affinity",
    "topic_stats",
]

__version__: str

_Socket = str | os.PathLike[str] | None
_Policy = Literal["lossy", "reliable"]
_LargeLaps = Literal["caught-up", "whole", "short", "measured"]

class Error(Exception):
    """Base class of every aether error."""

    status: ClassVar[int | None]
    status_name: ClassVar[str | None]

class InvalidArgument(Error, ValueError):
    status: ClassVar[int]

class Timeout(Error, TimeoutError):
    status: ClassVar[int]

class NotFound(Error):
    status: ClassVar[int]

class Exists(Error):
    status: ClassVar[int]

class PermissionDenied(Error, PermissionError):
    status: ClassVar[int]

class MessageTooLarge(Error):
    status: ClassVar[int]

class BrokerUnavailable(Error, ConnectionError):
    status: ClassVar[int]

class BrokerShutdown(Error):
    status: ClassVar[int]

class Corrupt(Error):
    status: ClassVar[int]

class Overwritten(Error):
    status: ClassVar[int]

class ProtocolError(Error):
    status: ClassVar[int]

class LimitReached(Error):
    status: ClassVar[int]

class OutOfMemory(Error):
    status: ClassVar[int]

class IoError(Error, OSError):
    status: ClassVar[int]

class InternalError(Error):
    status: ClassVar[int]

def create_topic(
    topic: str,
    *,
    policy: _Policy | None = None,
    ring_size: int | None = None,
    max_message: int | None = None,
    max_subscribers: int | None = None,
    socket: _Socket = None,
    exist_ok: bool = False,
    durability: Literal["none", "wal"] = "none",
    fsync: str | None = None,
    huge_pages: bool = False,
    retain_bytes: int | None = None,
    retain_seconds: int | None = None,
) -> None: ...
def delete_topic(topic: str, *, socket: _Socket = None) -> None: ...
def set_thread_affinity(cpus: Sequence[int]) -> None: ...
def broker_id(name: str) -> int: ...

class _TopicStats(TypedDict):
    published: int
    publishers: int
    subscribers: int
    lost: int
    aborted: int
    overruns: int
    waits: int
    space_waits: int
    wakes: int
    rate_msgs_per_s: float
    rate_bytes_per_s: float
    durable: bool
    log_bytes: int
    log_oldest_seq: int
    log_next_seq: int

def topic_stats(topic: str, *, socket: _Socket = None) -> _TopicStats: ...

@final
class Loan:
    """Space loaned in the ring: a context manager yielding a writable memoryview."""

    @property
    def size(self) -> int: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def active(self) -> bool: ...
    def commit(self, size: int | None = None) -> int: ...
    def abort(self) -> None: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __enter__(self) -> memoryview: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> bool: ...

@final
class Publisher:
    def __new__(
        cls,
        topic: str,
        *,
        create: bool = True,
        policy: _Policy = "lossy",
        ring_size: int | None = None,
        max_message: int | None = None,
        max_subscribers: int | None = None,
        socket: _Socket = None,
        timeout: float | None = 5.0,
    ) -> Self: ...
    def publish(self, data: _Data) -> int: ...
    def loan(self, size: int) -> Loan: ...
    def reopen(self) -> None: ...
    def mapping_range(self) -> tuple[int, int]: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def topic(self) -> str: ...
    @property
    def policy(self) -> _Policy: ...
    @property
    def max_message(self) -> int: ...
    @property
    def large_laps(self) -> _LargeLaps: ...
    @large_laps.setter
    def large_laps(self, laps: _LargeLaps) -> None: ...
    @property
    def timestamps(self) -> bool: ...
    @timestamps.setter
    def timestamps(self, on: bool) -> None: ...
    @property
    def has_loan(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> bool: ...

@final
class Message:
    """A received message: a read-only, zero-copy view of its bytes in the ring."""

    @property
    def seq(self) -> int: ...
    @property
    def timestamp_ns(self) -> int: ...
    @property
    def origin(self) -> tuple[int, int] | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def released(self) -> bool: ...
    @property
    def _address(self) -> int: ...
    def bytes(self) -> builtins.bytes: ...
    def release(self) -> None: ...
    def __bytes__(self) -> builtins.bytes: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> bool: ...

class _Stats(TypedDict):
    topic: str
    policy: _Policy
    delivered: int
    lost: int
    max_message: int
    holding: bool
    closed: bool
    published: int | None
    lag: int | None

@final
class Subscriber:
    def __new__(
        cls,
        topic: str,
        *,
        from_: str | int | None = None,
        delivery: Literal["shm", "mqueue"] = "shm",
        socket: _Socket = None,
        create: bool = True,
        policy: _Policy = "lossy",
        ring_size: int | None = None,
        max_message: int | None = None,
        max_subscribers: int | None = None,
        fill_gaps: bool = False,
    ) -> Self: ...
    def receive(self, timeout: float | None = None) -> Message | None: ...
    def fileno(self) -> int: ...
    async def areceive(self, timeout: float | None = None) -> Message | None: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...
    def commit(self) -> None: ...
    def stats(self) -> _Stats: ...
    def mapping_range(self) -> tuple[int, int]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def topic(self) -> str: ...
    @property
    def policy(self) -> _Policy: ...
    @property
    def max_message(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def delivered(self) -> int: ...
    def __iter__(self) -> Iterator[Message]: ...
    def __next__(self) -> Message: ...
    def __aiter__(self) -> AsyncIterator[Message]: ...
    async def __anext__(self) -> Message: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> bool: ...
