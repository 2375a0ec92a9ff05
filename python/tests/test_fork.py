"""A handle belongs to the process that opened it (issue 15, case 7): after
os.fork() the child cannot read through its parent's cursor or publish from
its parent's slot, and the parent loses nothing."""

from __future__ import annotations

import os

import aether


def test_a_forked_child_cannot_use_its_parents_handles(sock, topic):
    count = 2000
    with aether.Subscriber(topic, socket=sock, policy="reliable") as sub, aether.Publisher(
        topic, socket=sock
    ) as pub:
        pid = os.fork()
        if pid == 0:  # the child: every call on the inherited handles refuses
            code = 0
            for call in (lambda: sub.receive(timeout=0), lambda: pub.publish(b"x")):
                try:
                    call()
                    code = 1
                except aether.InvalidArgument as e:
                    if "forked" not in str(e):
                        code = 2
                except BaseException:
                    code = 3
            try:
                pub.reopen()  # its own publisher, in one call
                pub.publish(b"child")
            except BaseException:
                code = 4
            os._exit(code)
        for i in range(count):
            pub.publish(f"parent {i}".encode())
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        got = []
        while (m := sub.receive(timeout=2.0)) is not None:
            with m:
                got.append(m.bytes())
        parent = [g for g in got if g.startswith(b"parent")]
        assert parent == [f"parent {i}".encode() for i in range(count)], "every message, in order"
        assert got.count(b"child") == 1
        assert sub.lost == 0
