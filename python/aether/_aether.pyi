"""Stubs of the native module (the public names are documented in aether/__init__.pyi)."""

import os
from collections.abc import Callable

from aether import (
    BrokerShutdown as BrokerShutdown,
    BrokerUnavailable as BrokerUnavailable,
    Corrupt as Corrupt,
    Error as Error,
    Exists as Exists,
    InternalError as InternalError,
    InvalidArgument as InvalidArgument,
    IoError as IoError,
    LimitReached as LimitReached,
    Loan as Loan,
    Message as Message,
    MessageTooLarge as MessageTooLarge,
    NotFound as NotFound,
    OutOfMemory as OutOfMemory,
    Overwritten as Overwritten,
    PermissionDenied as PermissionDenied,
    ProtocolError as ProtocolError,
    Publisher as Publisher,
    Subscriber as Subscriber,
    Timeout as Timeout,
    __version__ as __version__,
    create_topic as create_topic,
    delete_topic as delete_topic,
    set_thread_affinity as set_thread_affinity,
    topic_stats as topic_stats,
)

__all__ = [
    "BrokerShutdown", "BrokerUnavailable", "Corrupt", "Error", "Exists", "InternalError",
    "InvalidArgument", "IoError", "LimitReached", "Loan", "Message", "MessageTooLarge", "NotFound",
    "OutOfMemory", "Overwritten", "PermissionDenied", "ProtocolError", "Publisher", "Subscriber",
    "Timeout", "__version__", "create_topic", "delete_topic", "set_thread_affinity", "topic_stats",
    "_noop", "_rust_echo", "_rust_ping", "_rust_publish", "_rust_receive",
]

_Socket = str | os.PathLike[str] | None

def _rust_publish(socket: _Socket, topic: str, size: int, count: int) -> float: ...
def _rust_receive(socket: _Socket, topic: str, size: int, count: int, batch: int, mode: str) -> float: ...
def _rust_ping(socket: _Socket, ping: str, pong: str, size: int, count: int, warmup: int) -> list[int]: ...
def _rust_echo(socket: _Socket, ping: str, pong: str, count: int, ready: Callable[[], object]) -> None: ...
def _noop() -> None: ...
