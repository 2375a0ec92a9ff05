"""A Python client that carries on across daemon restarts (the Python side
of scripts/restart-loop.sh, with the behaviour and output of
c-tests/restart_client.c).

Usage: python restart_client.py SOCKET TOPIC copy|zerocopy

Loops: publish message k on TOPIC (reliable; made if missing), receive it
back, check it. A call raising BrokerUnavailable (the daemon died) is
reported with how long it took (`down MS`), then the subscriber and
publisher are reopened, retrying every 20 ms (`up`). Prints `ok N` after
200 round trips (from the start and from each `up`), then every 100000;
any other error ends it with status 1; SIGTERM with 0.
"""

import signal
import sys
import time

import aether

stop = False


def on_term(_sig, _frame):
    global stop
    stop = True


def say(line):
    print(line, flush=True)


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("copy", "zerocopy"):
        print("usage: restart_client.py SOCKET TOPIC copy|zerocopy", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_term)
    sock, topic, zerocopy = sys.argv[1], sys.argv[2], sys.argv[3] == "zerocopy"
    opts = dict(socket=sock, policy="reliable", ring_size=1 << 16, max_message=64)
    sub = aether.Subscriber(topic, **opts)
    pub = aether.Publisher(topic, **opts)
    say("ready")
    k = ok = since_up = 0
    while not stop:
        msg = f"{topic} {k}".encode()
        t0 = time.monotonic()
        what = "publish"
        try:
            if zerocopy:
                with pub.loan(len(msg)) as buf:
                    buf[:] = msg
            else:
                pub.publish(msg)
            what = "receive"
            m = sub.receive(timeout=2.0)
            if m is None:
                say(f"error message {k}: none within 2 s")
                return 1
            with m:
                got = bytes(memoryview(m)) if zerocopy else m.bytes()
        except aether.BrokerUnavailable:
            say(f"down {int((time.monotonic() - t0) * 1000)} {what}")
            for h in (sub, pub):
                while not stop:
                    try:
                        h.reopen()
                        break
                    except aether.Error:
                        time.sleep(0.02)
            say("up")
            since_up = 0
            continue
        if got != msg:
            say(f"error message {k}: got {got!r}")
            return 1
        k += 1
        ok += 1
        since_up += 1
        if since_up == 200 or ok % 100000 == 0:
            say(f"ok {ok}")
    pub.close()
    sub.close()
    say(f"done {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
