//! A subscriber waiting in poll(2), as an event loop would:
//! `cargo run -p aether-examples --bin poll_subscriber -- TOPIC [COUNT]`,
//! then `aether-cli pub TOPIC hello`.
//!
//! `Subscriber::fd` is readable when a receive may not come back empty:
//! wait for it, receive with a zero timeout until nothing is there (which
//! re-arms it), then wait again.

use aether::{Client, Status, SubscriberConfig, TopicParams};
use std::os::fd::AsRawFd;
use std::time::Duration;

fn main() -> Result<(), aether::Error> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "greetings".into());
    let count: Option<u64> = args.next().and_then(|c| c.parse().ok());
    let client = Client::connect(None)?;
    match client.create_topic(&topic, &TopicParams::default()) {
        Err(e) if e.status == Status::Exists => {}
        other => other?,
    }
    let mut sub = client.subscriber(&topic, &SubscriberConfig::default())?;
    let fd = sub.fd()?.as_raw_fd();
    eprintln!("subscribed to {topic}");
    let mut got = 0;
    loop {
        while let Some(msg) = sub.receive(Some(Duration::ZERO))? {
            println!("{}", String::from_utf8_lossy(&msg.data));
            got += 1;
            if count == Some(got) {
                return Ok(());
            }
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd for a descriptor the subscriber keeps open.
        unsafe { libc::poll(&mut p, 1, -1) };
    }
}
