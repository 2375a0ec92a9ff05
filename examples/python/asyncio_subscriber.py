"""Receive a topic's messages in an asyncio program, beside other tasks.

    python asyncio_subscriber.py TOPIC [COUNT]      # then: aether-cli pub TOPIC hello

The event loop waits on the subscriber's descriptor: no thread, no polling.
"""

import asyncio
import sys

import aether


async def consume(topic: str, count: int | None) -> None:
    with aether.Subscriber(topic) as sub:
        print(f"subscribed to {topic}", file=sys.stderr, flush=True)
        got = 0
        async for msg in sub:
            print(msg.bytes().decode(errors="replace"), flush=True)
            got += 1
            if count is not None and got == count:
                return


async def heartbeat() -> None:
    while True:  # another task, to show the loop stays free
        await asyncio.sleep(10)


async def main() -> None:
    topic = sys.argv[1] if len(sys.argv) > 1 else "greetings"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else None
    beat = asyncio.create_task(heartbeat())
    try:
        await consume(topic, count)
    finally:
        beat.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except aether.Error as e:
        raise SystemExit(f"asyncio_subscriber: {e}")
