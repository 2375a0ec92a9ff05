"""Python <-> Rust (aether-cli) and Python <-> Python across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

import aether

from conftest import run_python


def wait_for_line(stream, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise AssertionError(f"stream ended before {text!r}")
        if text in line:
            return
    raise AssertionError(f"no {text!r} within {timeout} s")


def test_python_publishes_rust_subscribes(cli_bin, sock, topic):
    cli = subprocess.Popen(
        [cli_bin, "--socket", sock, "sub", topic, "--count", "6", "--timeout", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(cli.stderr, "subscribed")
        with aether.Publisher(topic, socket=sock) as pub:
            for i in range(5):
                pub.publish(f"from python {i}".encode())
            with pub.loan(13) as buf:  # zero-copy publish reaches Rust too
                buf[:] = b"from a loan 5"
        out, err = cli.communicate(timeout=10)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 0, err
    assert out.splitlines() == [f"from python {i}" for i in range(5)] + ["from a loan 5"]


def test_rust_publishes_python_subscribes(cli_bin, sock, topic):
    with aether.Subscriber(topic, socket=sock) as sub:
        r = subprocess.run([cli_bin, "--socket", sock, "pub", topic, "hello from rust"], capture_output=True, timeout=10)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(
            [cli_bin, "--socket", sock, "pub", topic], input=b"line one\nline two\n", capture_output=True, timeout=10
        )
        assert r.returncode == 0, r.stderr
        got = []
        for _ in range(3):
            msg = sub.receive(timeout=5)
            assert msg is not None
            got.append((msg.seq, msg.bytes()))
        assert [b for _, b in got] == [b"hello from rust", b"line one", b"line two"]
        assert [s for s, _ in got] == [got[0][0], got[0][0] + 1, got[0][0] + 2]
        assert sub.lost == 0


CHILD_PUBLISHER = """
import sys, numpy as np, aether
sock, topic = sys.argv[1], sys.argv[2]
with aether.Publisher(topic, socket=sock, create=False) as pub:
    for i in range(100):
        pub.publish(np.full(1000, i, dtype=np.int64))
"""


def test_python_to_python_numpy(sock, topic):
    with aether.Subscriber(topic, socket=sock, policy="reliable", ring_size=1 << 16, max_message=8000) as sub:
        child = subprocess.Popen([sys.executable, "-c", CHILD_PUBLISHER, sock, topic], stderr=subprocess.PIPE, text=True)
        try:
            for i in range(100):
                with sub.receive(timeout=10) as msg:
                    a = np.frombuffer(msg, dtype=np.int64)
                    assert a.shape == (1000,) and (a == i).all()
                    del a
            assert child.wait(timeout=10) == 0, child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert sub.lost == 0


ABANDONING_PUBLISHER = """
import os, signal, sys, aether
sock, topic = sys.argv[1], sys.argv[2]
pub = aether.Publisher(topic, socket=sock, create=False)
buf = pub.loan(16).__enter__()
buf[:8] = b"half-way"
os.kill(os.getpid(), signal.SIGKILL)  # dies in the middle of the write
"""


def test_record_abandoned_by_a_killed_publisher_is_skipped(sock, topic):
    with aether.Subscriber(topic, socket=sock) as sub:
        r = run_python(ABANDONING_PUBLISHER, sock, topic)
        assert r.returncode == -9, r.stderr
        with aether.Publisher(topic, socket=sock) as pub:
            pub.publish(b"next")
        t0 = time.monotonic()
        msg = sub.receive(timeout=5)
        assert msg is not None and msg.bytes() == b"next"
        assert time.monotonic() - t0 < 2
        # The gap before "next" counts once "next" is released: the small
        # loan had no header to count it by when it was passed.
        msg.release()
        assert sub.lost == 1


DURABLE_READER = """
import sys, aether
sock, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with aether.Subscriber(topic, socket=sock, create=False, from_="durable=py") as sub:
    got = [sub.receive(timeout=5) for _ in range(n)]
    print(" ".join(str(m.seq) for m in got))
    sub.commit()
"""


def test_durable_topic_history_and_a_durable_subscription_across_processes(sock, topic):
    aether.create_topic(topic, socket=sock, durability="wal", fsync="always")
    with aether.Publisher(topic, socket=sock, create=False) as pub:
        for i in range(10):
            assert pub.publish(b"m%d" % i) == i
    st = aether.topic_stats(topic, socket=sock)
    assert st["published"] == 10 and st["durable"] and st["log_next_seq"] == 10, st
    with pytest.raises(aether.NotFound):
        aether.topic_stats(topic + "-none", socket=sock)
    # History from the log, then the live ring.
    with aether.Subscriber(topic, socket=sock, create=False, from_="earliest") as sub:
        assert [sub.receive(timeout=5).bytes() for _ in range(4)] == [b"m%d" % i for i in range(4)]
        st = sub.stats()
        assert (st["published"], st["delivered"], st["lag"]) == (10, 4, 6), st  # each released as it went
        assert [sub.receive(timeout=5).bytes() for _ in range(6)] == [b"m%d" % i for i in range(4, 10)]
    with aether.Subscriber(topic, socket=sock, create=False, from_=7) as sub:
        assert [sub.receive(timeout=5).seq for _ in range(3)] == [7, 8, 9]
    # A durable subscription in two child processes: the second resumes where the first committed.
    first = run_python(DURABLE_READER, sock, topic, "4")
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["0", "1", "2", "3"]
    second = run_python(DURABLE_READER, sock, topic, "6")
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["4", "5", "6", "7", "8", "9"]
    with pytest.raises(ValueError, match="durable"):
        with aether.Subscriber(topic, socket=sock, create=False) as plain:
            plain.commit()
    aether.delete_topic(topic, socket=sock)


LOSSY_PUBLISHER = """
import sys, aether
sock, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with aether.Publisher(topic, socket=sock, create=False) as pub:
    for i in range(n):
        pub.publish(b"%08d" % i)
"""


def test_a_lapped_subscriber_of_a_lossy_durable_topic_fills_its_gaps(sock, topic):
    # A lossy durable topic with a ring of about 100 messages: a publisher in
    # another process publishes 5000 while two subscribers read nothing. It
    # waits for neither; the plain one loses most; the one with fill_gaps
    # reads every message, from the log then the ring.
    aether.create_topic(topic, socket=sock, policy="lossy", ring_size=8192, max_message=64, durability="wal")
    n = 5000
    with aether.Subscriber(topic, socket=sock, create=False) as plain, aether.Subscriber(
        topic, socket=sock, create=False, fill_gaps=True
    ) as filler:
        r = run_python(LOSSY_PUBLISHER, sock, topic, str(n))
        assert r.returncode == 0, r.stderr
        got = []
        while (m := plain.receive(timeout=0.2)) is not None:
            got.append(m.seq)
        assert got == sorted(got) and plain.lost > n // 2 and len(got) + plain.lost == n
        seqs = []
        for _ in range(n):
            m = filler.receive(timeout=5)
            seqs.append((m.seq, m.bytes()))  # (a message's bytes last until the next receive)
        assert seqs == [(i, b"%08d" % i) for i in range(n)]
        assert filler.lost == 0
    with pytest.raises(ValueError, match="not durable"):
        aether.Subscriber(topic + "-mem", socket=sock, fill_gaps=True)
    aether.delete_topic(topic, socket=sock)


def test_durable_topic_retention_of_its_own(cli_bin, sock, topic):
    own, default = topic + "-own", topic + "-default"
    aether.create_topic(own, socket=sock, durability="wal", retain_bytes=1 << 20, retain_seconds=0)
    aether.create_topic(default, socket=sock, durability="wal")
    with aether.Publisher(own, socket=sock, create=False) as pub:
        assert pub.publish(b"kept") == 0
    # What the daemon applies (aether-cli, another process): the topic's own
    # limits, else the daemon's [log] ones (none here).
    r = subprocess.run([cli_bin, "--socket", sock, "--json", "topics"], capture_output=True, timeout=10, text=True)
    assert r.returncode == 0, r.stderr
    logs = {t["name"]: t["log"] for t in json.loads(r.stdout)}
    assert (logs[own]["retain_bytes"], logs[own]["retain_bytes_from"]) == (1 << 20, "topic"), logs[own]
    assert (logs[own]["retain_seconds"], logs[own]["retain_seconds_from"]) == (0, "topic"), logs[own]
    assert (logs[default]["retain_bytes"], logs[default]["retain_bytes_from"]) == (0, "log"), logs[default]
    assert logs[default]["retain_seconds_from"] == "log", logs[default]
    with aether.Subscriber(own, socket=sock, create=False, from_="earliest") as sub:
        assert sub.receive(timeout=5).bytes() == b"kept"
    # Retention is for a durable topic's log: refused on any other, nothing made.
    for kw in ({"retain_bytes": 4096}, {"retain_seconds": 0}):
        with pytest.raises(aether.InvalidArgument, match="not durable"):
            aether.create_topic(topic + "-memory", socket=sock, **kw)
        with pytest.raises(aether.NotFound):
            aether.topic_stats(topic + "-memory", socket=sock)
    with pytest.raises(OverflowError):
        aether.create_topic(topic + "-neg", socket=sock, durability="wal", retain_bytes=-1)
    aether.delete_topic(own, socket=sock)
    aether.delete_topic(default, socket=sock)
