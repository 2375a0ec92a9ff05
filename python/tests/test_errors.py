"""The exception hierarchy, and each error we can provoke mapped to its class."""

from __future__ import annotations

import os
import re
import tempfile

import pytest

import aether
from conftest import REPO

# (class, status code, builtin it also derives from)
CLASSES = [
    (aether.InvalidArgument, -1, ValueError),
    (aether.Timeout, -2, TimeoutError),
    (aether.NotFound, -3, None),
    (aether.Exists, -4, None),
    (aether.PermissionDenied, -5, PermissionError),
    (aether.MessageTooLarge, -6, None),
    (aether.BrokerUnavailable, -7, ConnectionError),
    (aether.BrokerShutdown, -8, None),
    (aether.Corrupt, -9, None),
    (aether.Overwritten, -10, None),
    (aether.ProtocolError, -11, None),
    (aether.LimitReached, -12, None),
    (aether.OutOfMemory, -13, None),
    (aether.IoError, -14, OSError),
    (aether.InternalError, -15, None),
]


@pytest.mark.parametrize("cls,status,builtin", CLASSES, ids=[c[0].__name__ for c in CLASSES])
def test_hierarchy(cls, status, builtin):
    assert issubclass(cls, aether.Error) and issubclass(cls, Exception)
    assert cls.status == status
    assert cls.__module__ == "aether"
    if builtin is not None:
        assert issubclass(cls, builtin)
    e = cls("message")
    assert isinstance(e, aether.Error) and e.status == status and str(e) == "message"


def test_every_status_has_a_class():
    assert sorted(c.status for c, _, _ in CLASSES) == list(range(-15, 0))
    assert aether.Error.status is None
    # Against the C header and the module itself, not only this file's table:
    # a status added to the core without a Python class fails here.
    header = (REPO / "include" / "aether.h").read_text()
    c_codes = {int(v) for v in re.findall(r"AETHER_E_\w+ = (-\d+)", header)}
    module = {
        v.status
        for v in vars(aether).values()
        if isinstance(v, type) and issubclass(v, aether.Error) and v is not aether.Error
    }
    assert c_codes == module == {c.status for c, _, _ in CLASSES}


def test_not_found(sock, topic):
    with pytest.raises(aether.NotFound) as ei:
        aether.delete_topic(topic, socket=sock)
    assert ei.value.status == -3 and topic in str(ei.value)
    with pytest.raises(aether.NotFound):
        aether.Publisher(topic, socket=sock, create=False)
    with pytest.raises(aether.NotFound):
        aether.Subscriber(topic, socket=sock, create=False)


def test_exists(sock, topic):
    aether.create_topic(topic, socket=sock)
    with pytest.raises(aether.Exists):
        aether.create_topic(topic, socket=sock)
    aether.create_topic(topic, socket=sock, exist_ok=True)
    aether.delete_topic(topic, socket=sock)


def test_too_large(sock, topic):
    with aether.Publisher(topic, socket=sock, max_message=100) as pub:
        with pytest.raises(aether.MessageTooLarge) as ei:
            pub.publish(bytes(101))
        assert "101" in str(ei.value)
        with pytest.raises(aether.MessageTooLarge):
            pub.loan(101)
        pub.publish(bytes(100))


@pytest.mark.parametrize("name", ["", "bad name", "x/y", ".hidden", "a" * 500])
def test_invalid_topic_name(sock, name):
    with pytest.raises(aether.InvalidArgument) as ei:
        aether.Publisher(name, socket=sock)
    assert isinstance(ei.value, ValueError)
    with pytest.raises(aether.InvalidArgument):
        aether.Subscriber(name, socket=sock)


def test_invalid_topic_settings(sock, topic):
    with pytest.raises(aether.InvalidArgument, match="ring_size"):
        aether.create_topic(topic, socket=sock, ring_size=5000)
    with pytest.raises(aether.InvalidArgument, match="max_message"):
        aether.create_topic(topic, socket=sock, ring_size=4096, max_message=1 << 20)
    with pytest.raises(ValueError):
        aether.Publisher(topic, socket=sock, timeout=-1)


def test_broker_unavailable():
    assert os.environ["AETHER_NO_AUTOSTART"] == "1"
    with tempfile.TemporaryDirectory() as d:
        nowhere = os.path.join(d, "none.sock")
        with pytest.raises(aether.BrokerUnavailable) as ei:
            aether.Publisher("t", socket=nowhere)
        assert isinstance(ei.value, ConnectionError)
        assert "AETHER_NO_AUTOSTART" in str(ei.value)
        with pytest.raises(aether.BrokerUnavailable):
            aether.Subscriber("t", socket=nowhere)
        with pytest.raises(aether.BrokerUnavailable):
            aether.create_topic("t", socket=nowhere)
        assert not os.path.exists(nowhere)  # nothing was started


def test_timeout(sock, topic):
    with aether.Publisher(
        topic, socket=sock, policy="reliable", ring_size=4096, max_message=1024, timeout=0.1
    ) as pub, aether.Subscriber(topic, socket=sock):
        with pytest.raises(aether.Timeout) as ei:
            for _ in range(100):
                pub.publish(bytes(1000))
        assert isinstance(ei.value, TimeoutError) and ei.value.status == -2


def test_use_after_close_and_release(sock, topic):
    pub = aether.Publisher(topic, socket=sock)
    sub = aether.Subscriber(topic, socket=sock)
    pub.publish(b"x")
    msg = sub.receive(2)
    msg.release()
    with pytest.raises(aether.InvalidArgument, match="released"):
        msg.bytes()
    with pytest.raises(aether.InvalidArgument, match="released"):
        memoryview(msg)
    loan = pub.loan(4)
    loan.commit()
    with pytest.raises(aether.InvalidArgument):
        loan.commit()
    with pytest.raises(aether.InvalidArgument):
        memoryview(loan)
    pub.close()
    sub.close()
    for op in (lambda: pub.publish(b"y"), lambda: pub.loan(1), lambda: sub.receive(0)):
        with pytest.raises(aether.InvalidArgument, match="closed"):
            op()


def test_overwritten_maps(sock, topic):
    with aether.Publisher(topic, socket=sock, ring_size=4096, max_message=64) as pub, aether.Subscriber(
        topic, socket=sock
    ) as sub:
        pub.publish(b"a")
        msg = sub.receive(2)
        for _ in range(200):
            pub.publish(b"b")
        with pytest.raises(aether.Overwritten) as ei:
            msg.release()
        assert ei.value.status == -10


def test_limit_reached(sock, topic):
    aether.create_topic(topic, socket=sock, max_subscribers=1)
    with aether.Subscriber(topic, socket=sock):
        with pytest.raises(aether.LimitReached):
            aether.Subscriber(topic, socket=sock)


def test_corrupt_segment(broker, sock, topic):
    import ctypes

    ring_size = 4096
    with aether.Publisher(topic, socket=sock, ring_size=ring_size, max_message=64) as pub, aether.Subscriber(
        topic, socket=sock
    ) as sub:
        pub.publish(b"victim")
        # Segments have no name: scribble through this process's own mapping,
        # as any publisher could (a subscriber's mapping is read-only).
        base, length = pub.mapping_range()
        ring = base + length - ring_size
        # Record header: stamp u64 | len u32 | stride u32 | seq u64 | timestamp u64.
        ctypes.c_uint32.from_address(ring + 12).value = 7  # a stride no record can have
        with pytest.raises(aether.Corrupt) as ei:
            sub.receive(2)
        assert ei.value.status == -9
        pub.publish(b"after")
        assert sub.receive(2).bytes() == b"after"  # it skipped past


def test_set_thread_affinity_pins_the_calling_thread_and_refuses_a_bad_list():
    import os
    import threading

    result = {}

    def body():
        before = os.sched_getaffinity(0)
        with pytest.raises(ValueError, match="may use"):
            aether.set_thread_affinity([100_000])
        with pytest.raises(ValueError, match="empty"):
            aether.set_thread_affinity([])
        result["unchanged"] = os.sched_getaffinity(0) == before
        cpu = max(before)
        aether.set_thread_affinity([cpu])
        result["pinned"] = os.sched_getaffinity(0) == {cpu}

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert result == {"unchanged": True, "pinned": True}
