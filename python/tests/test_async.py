"""asyncio: areceive, async iteration with two subscribers, cancellation, no polling,
no helper thread; fileno() under selectors; delivery="mqueue"."""

from __future__ import annotations

import asyncio
import selectors
import threading
import time

import pytest

import aether


def os_threads() -> int:
    """This process's threads, as the kernel counts them (not only Python's)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_two_subscribers_async_for(sock, topic):
    n = 200
    subs = [aether.Subscriber(topic, socket=sock, policy="reliable") for _ in range(2)]
    pub = aether.Publisher(topic, socket=sock)

    async def consume(sub):
        got = []
        async for msg in sub:
            got.append((msg.seq, msg.bytes()))
            if len(got) == n:
                break
        return got

    async def produce():
        for i in range(n):
            pub.publish(i.to_bytes(4, "little"))
            if i % 50 == 0:
                await asyncio.sleep(0.01)

    async def main():
        tasks = [asyncio.create_task(consume(s)) for s in subs]
        await produce()
        return await asyncio.wait_for(asyncio.gather(*tasks), 20)

    results = asyncio.run(main())
    for got in results:
        assert [int.from_bytes(b, "little") for _, b in got] == list(range(n))
        seqs = [s for s, _ in got]
        assert seqs == list(range(seqs[0], seqs[0] + n))
    for s in subs:
        assert s.lost == 0
        s.close()
    pub.close()


def test_areceive_timeout_and_value(sock, topic):
    async def main():
        with aether.Subscriber(topic, socket=sock) as sub, aether.Publisher(topic, socket=sock) as pub:
            t0 = time.monotonic()
            assert await sub.areceive(timeout=0.2) is None
            assert 0.19 <= time.monotonic() - t0 < 2
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, pub.publish, b"later")
            msg = await sub.areceive(timeout=5)
            assert msg.bytes() == b"later"

    asyncio.run(main())


def test_cancelled_areceive_loses_nothing(sock, topic):
    async def main():
        with aether.Subscriber(topic, socket=sock, policy="reliable") as sub, aether.Publisher(
            topic, socket=sock
        ) as pub:
            got = []
            timeouts = 0
            for i in range(40):
                try:
                    msg = await asyncio.wait_for(sub.areceive(), 0.001 if i % 2 else 0.03)
                    got.append(msg.bytes()[0])
                except asyncio.TimeoutError:
                    timeouts += 1
                pub.publish(bytes([i]))
            while (msg := await sub.areceive(timeout=0.5)) is not None:
                got.append(msg.bytes()[0])
            assert timeouts > 0
            assert got == list(range(40))  # none lost, none twice, in order

    asyncio.run(main())


def test_async_for_ends_on_close(sock, topic):
    async def main():
        sub = aether.Subscriber(topic, socket=sock)
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, sub.close)
        got = [m async for m in sub]
        assert got == [] and sub.closed

    asyncio.run(main())


def test_event_loop_does_not_poll(sock, topic):
    """While a task awaits a message, the process uses (almost) no CPU."""

    async def main():
        with aether.Subscriber(topic, socket=sock) as sub:
            await sub.areceive(0.05)  # the descriptor exists
            c0, t0 = time.process_time(), time.monotonic()
            assert await sub.areceive(timeout=1.0) is None
            cpu, wall = time.process_time() - c0, time.monotonic() - t0
            assert wall >= 0.99
            assert cpu < 0.1, f"{cpu:.3f} s of CPU while idle for {wall:.2f} s"

    asyncio.run(main())


def test_sync_and_async_other_thread(sock, topic):
    """A loop in another thread; the publisher in this one."""
    result = {}

    def run():
        async def main():
            with aether.Subscriber(topic, socket=sock) as sub:
                result["ready"] = True
                msg = await sub.areceive(timeout=5)
                result["data"] = msg.bytes()

        asyncio.run(main())

    t = threading.Thread(target=run)
    t.start()
    while not result.get("ready"):
        time.sleep(0.01)
    with aether.Publisher(topic, socket=sock) as pub:
        time.sleep(0.05)
        pub.publish(b"cross-thread")
    t.join(10)
    assert result["data"] == b"cross-thread"


@pytest.mark.parametrize("delivery", ["shm", "mqueue"])
def test_asyncio_needs_no_thread(sock, topic, delivery):
    """Issue 16: 3 subscribers awaited by one event loop, 300 messages each,
    and the process has exactly the threads it had before (none per
    subscriber, none per process)."""
    n = 300
    before = os_threads()

    async def main():
        subs = [aether.Subscriber(topic, socket=sock, policy="reliable", delivery=delivery) for _ in range(3)]
        pub = aether.Publisher(topic, socket=sock)

        async def consume(sub):
            got = []
            async for msg in sub:
                got.append(int.from_bytes(msg.bytes(), "little"))
                if len(got) == n:
                    return got

        tasks = [asyncio.create_task(consume(s)) for s in subs]
        await asyncio.sleep(0.05)
        during = os_threads()
        for i in range(n):
            pub.publish(i.to_bytes(4, "little"))
            if i % 20 == 0:
                await asyncio.sleep(0.002)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
        for s in subs:
            s.close()
        pub.close()
        return during, results

    during, results = asyncio.run(main())
    assert during == before, f"{during - before} thread(s) added while awaiting"
    assert all(r == list(range(n)) for r in results)


def test_fileno_under_selectors(sock, topic):
    """fileno() in a plain selector loop: readable once a message waits,
    quiet once everything is received."""
    with aether.Subscriber(topic, socket=sock, policy="reliable") as sub, aether.Publisher(topic, socket=sock) as pub:
        sel = selectors.DefaultSelector()
        sel.register(sub.fileno(), selectors.EVENT_READ)
        assert sel.select(timeout=0.05) == []
        got = []
        threading.Timer(0.05, lambda: [pub.publish(bytes([i])) for i in range(5)]).start()
        while len(got) < 5:
            assert sel.select(timeout=5), "no wake-up"
            while (msg := sub.receive(timeout=0)) is not None:
                got.append(msg.bytes()[0])
        assert got == [0, 1, 2, 3, 4]
        assert sel.select(timeout=0.05) == []
        sel.close()


def test_mqueue_delivery_copies_through_a_queue(sock, topic):
    with aether.Subscriber(topic, socket=sock, policy="reliable", delivery="mqueue") as sub, aether.Publisher(
        topic, socket=sock
    ) as pub:
        pub.publish(b"through the queue")
        msg = sub.receive(timeout=5)
        assert msg is not None and msg.bytes() == b"through the queue"
        assert bytes(memoryview(msg)) == b"through the queue"
        assert msg.seq == 0
        lo, hi = sub.mapping_range()
        assert not lo <= msg._address < hi, "a copy, not a view into the ring"
        assert sub.receive(timeout=0) is None
    with pytest.raises(aether.InvalidArgument, match="mqueue"):
        aether.Subscriber(topic, socket=sock, delivery="carrier-pigeon")
