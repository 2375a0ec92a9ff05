"""Publish one message and receive it (pip install aether-pubsub).

Uses this user's private broker (started on first use) unless
AETHER_SOCKET names another, e.g. the system broker's
/run/aether/aetherd.sock.
"""

import aether

with aether.Publisher("greetings") as pub, aether.Subscriber("greetings") as sub:
    pub.publish(b"hello")
    msg = sub.receive(timeout=1.0)
    if msg is None:
        raise SystemExit("hello: no message within 1 s")
    with msg:  # a zero-copy view into the ring, until the block ends
        print(f"got {msg.bytes().decode()} (seq {msg.seq})")
