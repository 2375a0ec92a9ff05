"""``python -m aether.bench``: Python figures beside Rust ones, from one run.

Starts a private ``aetherd`` on a temporary socket (found via $AETHER_DAEMON,
``target/release/aetherd`` of the repository, or PATH) and stops it at the
end. Every measurement is made twice, by a Python loop and by the same loop
in Rust (``aether._aether._rust_*``, running natively with no Python in it):

* publish: messages/s of one publisher into a lossy topic, no subscriber;
* receive: messages/s of one subscriber draining messages already in the
  ring (published in batches, untimed), zero-copy (receive a view, take a
  memoryview, release) and with a copy (``msg.bytes()`` / ``receive_into``);
* round trip: a pinger here publishes on one topic, an echo in a child
  process publishes each message back on another (zero-copy, ring to ring),
  and the pinger times publish -> receive. Python pinger + Python echo,
  Rust pinger + Rust echo, and an asyncio pinger (``await sub.areceive()``)
  + Python echo, whose excess over the sync pinger is the wake-up latency
  that asyncio adds.

``--quick`` makes every count smaller (about 15 s in all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Literal, Optional

import aether
from aether import _aether

KIB = 1024
MIB = 1024 * 1024
SIZES = [(64, "64 B"), (MIB, "1 MiB")]


# --------------------------------------------------------------------- broker


def find_daemon() -> str:
    env = os.environ.get("AETHER_DAEMON")
    if env:
        return env
    here = Path(__file__).resolve()
    roots = [Path.cwd(), Path.cwd().parent, *here.parents]
    for root in roots:
        for profile in ("release", "debug"):
            p = root / "target" / profile / "aetherd"
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    found = shutil.which("aetherd")
    if found:
        return found
    sys.exit(
        "aether.bench: no aetherd found: set AETHER_DAEMON, run from the repository "
        "after `cargo build --release -p aetherd`, or put aetherd on PATH"
    )


class Broker:
    def __init__(self) -> None:
        self.exe = find_daemon()
        self.dir = tempfile.mkdtemp(prefix="aether-bench-")
        self.socket = os.path.join(self.dir, "s.sock")
        self.proc = subprocess.Popen(
            [self.exe, "--socket", self.socket],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                aether.create_topic("bench.probe", socket=self.socket, exist_ok=True)
                aether.delete_topic("bench.probe", socket=self.socket)
                return
            except aether.BrokerUnavailable:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    sys.exit(f"aether.bench: {self.exe} did not start")
                time.sleep(0.01)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def fresh(prefix: str) -> str:
    return f"bench.{prefix}.{uuid.uuid4().hex[:8]}"


def topic_for(broker: Broker, size: int, policy: Literal["lossy", "reliable"], prefix: str) -> str:
    t = fresh(prefix)
    ring = max(MIB, 1 << (4 * size - 1).bit_length())  # >= 4 messages, a power of two
    ring = max(ring, 16 * MIB) if size >= MIB else ring
    aether.create_topic(t, policy=policy, ring_size=ring, max_message=max(size, 64), socket=broker.socket)
    return t


def need(msg: Optional[aether.Message]) -> aether.Message:
    if msg is None:
        raise aether.Timeout("benchmark: no message within 10 s")
    return msg


def payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


# --------------------------------------------------------------- measurements


def py_publish(broker: Broker, size: int, count: int) -> float:
    t = topic_for(broker, size, "lossy", "pub")
    data = payload(size)
    with aether.Publisher(t, socket=broker.socket, create=False) as pub:
        publish = pub.publish
        t0 = time.perf_counter()
        for _ in range(count):
            publish(data)
        dt = time.perf_counter() - t0
    aether.delete_topic(t, socket=broker.socket)
    return dt


def rust_publish(broker: Broker, size: int, count: int) -> float:
    t = topic_for(broker, size, "lossy", "pub")
    dt = _aether._rust_publish(broker.socket, t, size, count)
    aether.delete_topic(t, socket=broker.socket)
    return dt


def batch_for(size: int) -> tuple[int, int]:
    """(ring size, messages per batch) for the receive benchmark: a batch
    fills at most half the ring, so publishing it never waits."""
    if size >= MIB:
        return 64 * MIB, 24
    return 4 * MIB, 8192


def py_receive(broker: Broker, size: int, count: int, mode: str) -> float:
    """Publishes a batch (untimed), then times receiving it; repeats until
    `count` messages are received. The publisher never slows the receiver."""
    ring, batch = batch_for(size)
    t = fresh("recv")
    aether.create_topic(t, policy="reliable", ring_size=ring, max_message=max(size, 64), socket=broker.socket)
    data = payload(size)
    dt = 0.0
    total = 0
    with aether.Subscriber(t, socket=broker.socket, create=False) as sub, aether.Publisher(
        t, socket=broker.socket, create=False
    ) as pub:
        receive, publish = sub.receive, pub.publish
        left = count
        while left:
            n = min(batch, left)
            for _ in range(n):
                publish(data)
            t0 = time.perf_counter()
            if mode == "view":
                for _ in range(n):
                    msg = need(receive(10))
                    mv = memoryview(msg)
                    total += mv.nbytes
                    mv.release()
                    msg.release()
            else:
                for _ in range(n):
                    total += len(need(receive(10)).bytes())
            dt += time.perf_counter() - t0
            left -= n
    aether.delete_topic(t, socket=broker.socket)
    assert total == size * count
    return dt


def rust_receive(broker: Broker, size: int, count: int, mode: str) -> float:
    ring, batch = batch_for(size)
    t = fresh("recv")
    aether.create_topic(t, policy="reliable", ring_size=ring, max_message=max(size, 64), socket=broker.socket)
    dt = _aether._rust_receive(broker.socket, t, size, count, batch, "view" if mode == "view" else "copy")
    aether.delete_topic(t, socket=broker.socket)
    return dt


def echo_main(args: argparse.Namespace) -> None:
    """The echo side of a round trip, in a child process."""

    def ready() -> None:
        print("ready", flush=True)

    if args.impl == "rust":
        _aether._rust_echo(args.socket, args.ping, args.pong, args.count, ready)
        return
    with aether.Subscriber(args.ping, socket=args.socket, create=False) as sub, aether.Publisher(
        args.pong, socket=args.socket, create=False
    ) as pub:
        ready()
        for _ in range(args.count):
            msg = need(sub.receive(10))
            pub.publish(msg)  # the message's buffer goes straight into the other ring
            msg.release()


def py_ping(socket: str, ping: str, pong: str, size: int, count: int, warmup: int) -> list[int]:
    data = payload(size)
    rtt = []
    now = time.perf_counter_ns
    with aether.Subscriber(pong, socket=socket, create=False) as sub, aether.Publisher(
        ping, socket=socket, create=False
    ) as pub:
        for i in range(warmup + count):
            t0 = now()
            pub.publish(data)
            msg = need(sub.receive(10))
            t1 = now()
            msg.release()
            if i >= warmup:
                rtt.append(t1 - t0)
    return rtt


def async_ping(socket: str, ping: str, pong: str, size: int, count: int, warmup: int) -> list[int]:
    data = payload(size)
    now = time.perf_counter_ns

    async def main() -> list[int]:
        rtt = []
        with aether.Subscriber(pong, socket=socket, create=False) as sub, aether.Publisher(
            ping, socket=socket, create=False
        ) as pub:
            for i in range(warmup + count):
                t0 = now()
                pub.publish(data)
                msg = need(await sub.areceive(10))
                t1 = now()
                msg.release()
                if i >= warmup:
                    rtt.append(t1 - t0)
        return rtt

    return asyncio.run(main())


def round_trip(broker: Broker, size: int, count: int, warmup: int, pinger: str, echo: str) -> list[int]:
    ping = topic_for(broker, size, "reliable", "ping")
    pong = topic_for(broker, size, "reliable", "pong")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aether.bench",
            "--echo",
            echo,
            "--socket",
            broker.socket,
            "--ping",
            ping,
            "--pong",
            pong,
            "--count",
            str(count + warmup),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError("the echo process did not start")
        if pinger == "rust":
            rtt = _aether._rust_ping(broker.socket, ping, pong, size, count, warmup)
        elif pinger == "asyncio":
            rtt = async_ping(broker.socket, ping, pong, size, count, warmup)
        else:
            rtt = py_ping(broker.socket, ping, pong, size, count, warmup)
        if child.wait(timeout=30) != 0:
            raise RuntimeError("the echo process failed")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    for t in (ping, pong):
        aether.delete_topic(t, socket=broker.socket)
    return rtt


def percentiles(ns: list[int]) -> dict[str, float]:
    s = sorted(ns)

    def p(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] / 1000.0

    return {"p50_us": p(0.50), "p99_us": p(0.99), "p999_us": p(0.999), "n": len(s)}


def call_overhead_ns() -> float:
    """The interpreter's cost of one call into the extension (a no-op)."""
    f = _aether._noop
    n = 200_000
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


# ------------------------------------------------------------------- printing


def rate(count: int, secs: float, size: int, bandwidth: bool = True) -> str:
    r = count / secs
    gbs = f"{r * size / 1e9:7.2f} GB/s" if bandwidth else f"{'':12}"
    if r >= 1e6:
        s = f"{r / 1e6:6.2f} M msg/s"
    elif r >= 1e3:
        s = f"{r / 1e3:6.1f} k msg/s"
    else:
        s = f"{r:6.0f}   msg/s"
    return f"{s} {gbs}"


def lat(p: dict[str, float]) -> str:
    return f"{p['p50_us']:7.1f} {p['p99_us']:7.1f} {p['p999_us']:8.1f}"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aether.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts (about 15 s)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--echo", choices=["python", "rust"], help=argparse.SUPPRESS)
    ap.add_argument("--socket", help=argparse.SUPPRESS)
    ap.add_argument("--ping", help=argparse.SUPPRESS)
    ap.add_argument("--pong", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.echo:
        args.impl = args.echo
        echo_main(args)
        return 0

    os.environ["AETHER_NO_AUTOSTART"] = "1"  # never start a stray daemon
    q = args.quick
    n_pub = {64: 200_000 if q else 1_000_000, MIB: 500 if q else 3_000}
    n_recv = {64: 100_000 if q else 500_000, MIB: 300 if q else 2_000}
    n_rtt = {64: 3_000 if q else 20_000, MIB: 200 if q else 1_000}
    warm = {64: 300 if q else 2_000, MIB: 20 if q else 100}

    broker = Broker()
    results: dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        print(
            f"aether {aether.__version__} bench{' --quick' if q else ''}: CPython {platform.python_version()}, "
            f"{platform.machine()}, {os.cpu_count()} CPUs; private aetherd ({broker.exe}) on a temporary socket"
        )
        print("each line: the Python loop, then the same loop in Rust (native, no Python), same run, same broker")
        print()
        print(f"{'':34}{'Python':>34}   {'Rust':>30}   {'Py/Rust':>7}")
        # (name, kind, mode, size)
        rows = [(f"publish {label}", "publish", "", size) for size, label in SIZES]
        rows += [(f"receive {label} (view)", "receive", "view", size) for size, label in SIZES]
        rows += [("receive 1 MiB (copy: bytes())", "receive", "bytes", MIB)]
        for name, kind, mode, size in rows:
            if kind == "publish":
                count = n_pub[size]
                py_s, rs_s = py_publish(broker, size, count), rust_publish(broker, size, count)
            else:
                count = n_recv[size]
                py_s, rs_s = py_receive(broker, size, count, mode), rust_receive(broker, size, count, mode)
            results[name] = {"python_s": py_s, "rust_s": rs_s, "count": count, "size": size}
            bw = "view" not in name  # a view moves no bytes: no bandwidth to speak of
            print(
                f"{name:34}{rate(count, py_s, size, bw):>34}   {rate(count, rs_s, size, bw):>30}   {py_s / rs_s:6.1f}x"
            )

        view = results["receive 1 MiB (view)"]["python_s"]
        copy = results["receive 1 MiB (copy: bytes())"]["python_s"]
        ratio = copy / view
        results["view_vs_bytes_1MiB"] = ratio
        print(f"{'  1 MiB: memoryview vs bytes()':34}{ratio:>22.1f}x faster (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")

        print()
        print("round trip (publish -> echo -> receive), pinger here, echo in a child process, reliable topics;")
        print(f"{'microseconds':34}{'p50':>7} {'p99':>7} {'p99.9':>8}")
        for size, label in SIZES:
            for pinger, echo, what in (
                ("python", "python", "Python <-> Python"),
                ("rust", "rust", "Rust <-> Rust"),
                ("asyncio", "python", "asyncio <-> Python"),
            ):
                p = percentiles(round_trip(broker, size, n_rtt[size], warm[size], pinger, echo))
                results[f"rtt {label} {pinger}"] = p
                print(f"  {label:6} {what:26}{lat(p)}")
        # The asyncio wake-up cost: sync and asyncio pingers alternately, the
        # median of the p50 differences (machine load shifts single runs).
        diffs = []
        for _ in range(3):
            sync = percentiles(round_trip(broker, 64, n_rtt[64] // 2, warm[64], "python", "python"))
            asyn = percentiles(round_trip(broker, 64, n_rtt[64] // 2, warm[64], "asyncio", "python"))
            diffs.append(asyn["p50_us"] - sync["p50_us"])
        wakeup = sorted(diffs)[1]
        overhead = call_overhead_ns()
        results["call_overhead_ns"] = overhead
        py64, rs64 = (results[f"rtt 64 B {k}"]["p50_us"] for k in ("python", "rust"))
        # Per round trip the Python pinger and echo make 6 calls into the extension
        # (publish, receive, release on each side).
        budget = 3 * rs64 + 6 * overhead / 1000
        results["asyncio_wakeup_us"] = wakeup
        results["asyncio_wakeup_runs_us"] = diffs
        print()
        print(
            f"asyncio adds {wakeup:.1f} us to a 64 B round trip (median of 3 alternating sync/asyncio runs: "
            f"{', '.join(f'{d:.1f}' for d in diffs)}; p50; the event loop wakes on the subscriber's descriptor)"
        )
        print(
            f"64 B round trip: Python p50 {py64:.1f} us vs 3 x Rust ({rs64:.1f} us) + 6 calls x {overhead:.0f} ns "
            f"= {budget:.1f} us: {'met' if py64 <= budget else 'NOT met'}"
        )
        print(f"(total {time.monotonic() - t_start:.1f} s)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
