"""Aether: a local publish/subscribe broker whose data plane is shared memory.

    import aether

    with aether.Publisher("greetings") as pub, aether.Subscriber("greetings") as sub:
        pub.publish(b"hello")
        with sub.receive(timeout=1.0) as msg:      # a zero-copy view into the ring
            print(msg.seq, msg.bytes())

See README.md beside this package for the whole API.
"""

from ._aether import (
    BrokerShutdown,
    BrokerUnavailable,
    Corrupt,
    Error,
    Exists,
    InternalError,
    InvalidArgument,
    IoError,
    LimitReached,
    Loan,
    Message,
    MessageTooLarge,
    NotFound,
    OutOfMemory,
    Overwritten,
    PermissionDenied,
    ProtocolError,
    Publisher,
    Subscriber,
    Timeout,
    __version__,
    broker_id,
    create_topic,
    delete_topic,
    set_thread_affinity,
    topic_stats,
)

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
