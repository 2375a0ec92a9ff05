"""Ctrl-C during a blocking receive, and objects left alive at interpreter exit."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import run_python

BLOCKED = """
import signal, sys, time, aether
# Python leaves SIGINT ignored if it started so (a shell's background job
# does that): Ctrl-C's default handler, as any interactive Python has it.
signal.signal(signal.SIGINT, signal.default_int_handler)
sock, topic, how = sys.argv[1], sys.argv[2], sys.argv[3]
sub = aether.Subscriber(topic, socket=sock)
print("ready", flush=True)
try:
    if how == "receive":
        sub.receive()             # no timeout: blocks until a message or Ctrl-C
    else:
        for msg in sub:
            pass
except KeyboardInterrupt:
    # Still usable, and closable.
    assert sub.receive(timeout=0) is None
    sub.close()
    print("interrupted", flush=True)
    raise
"""


def _interrupt(sock, topic, how):
    child = subprocess.Popen(
        [sys.executable, "-c", BLOCKED, sock, topic, how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # well inside the blocking wait
        assert child.poll() is None
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "interrupted" in out, err
    assert "KeyboardInterrupt" in err
    assert child.returncode != 0
    assert elapsed < 2, f"took {elapsed:.2f} s to react to SIGINT"


def test_ctrl_c_interrupts_receive(sock, topic):
    _interrupt(sock, topic, "receive")


def test_ctrl_c_interrupts_iteration(sock, topic):
    _interrupt(sock, topic, "iterate")


LEFT_ALIVE = """
import sys, numpy as np, aether
sock, topic = sys.argv[1], sys.argv[2]
pub = aether.Publisher(topic, socket=sock)
sub = aether.Subscriber(topic, socket=sock)
sub2 = aether.Subscriber(topic, socket=sock)
pub.publish(np.arange(100, dtype=np.int32))
msg = sub.receive(2)
arr = np.frombuffer(msg, dtype=np.int32)       # an export alive at exit
pub2 = aether.Publisher(topic, socket=sock)
loan = pub2.loan(64)
buf = loan.__enter__()                          # a loan with a live view at exit
cycle = [sub2]; cycle.append(cycle)             # only the cyclic GC can free it
import asyncio
async def main():
    return await sub2.areceive(0.05)            # watches the descriptor
asyncio.run(main())
print("done", flush=True)
"""


def test_interpreter_exit_with_live_objects(sock, topic):
    r = run_python(LEFT_ALIVE, sock, topic)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "done"
    assert r.stderr == ""
