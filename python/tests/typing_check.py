"""Checked by mypy --strict (scripts/python-tests.sh), for Python 3.11 and
3.12: what users write against aether's stubs type-checks. Not run."""

import sys

import numpy as np

import aether


def use(pub: aether.Publisher, sub: aether.Subscriber) -> float:
    pub.publish(np.arange(4, dtype=np.float32))  # an ndarray, on 3.11 too
    pub.publish(b"bytes")
    pub.publish(bytearray(b"bytearray"))
    pub.publish(memoryview(b"view"))
    msg = sub.receive(timeout=1.0)
    assert msg is not None
    mv = memoryview(msg)  # the buffer protocol (typing_extensions.Buffer)
    # numpy's stubs accept any Buffer from 3.12; on 3.11, a memoryview (equally zero-copy).
    if sys.version_info >= (3, 12):
        arr = np.frombuffer(msg, dtype=np.float32)
    else:
        arr = np.frombuffer(mv, dtype=np.float32)
    return float(arr.sum()) + len(mv) + sub.fileno() + len(msg.bytes())
