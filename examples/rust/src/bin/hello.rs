//! Publish one message and receive it: `cargo run -p aether-examples --bin hello`.
//! Uses this user's private broker (started on first use) unless
//! `AETHER_SOCKET` names another.

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use std::time::Duration;

fn main() -> Result<(), aether::Error> {
    let client = Client::connect(None)?;
    let params = TopicParams {
        policy: Policy::Reliable,
        ..TopicParams::default()
    };
    match client.create_topic("greetings", &params) {
        Err(e) if e.status == Status::Exists => {} // another program made it: fine
        other => other?,
    }
    let mut sub = client.subscriber("greetings", &SubscriberConfig::default())?;
    let mut publ = client.publisher("greetings")?;
    publ.publish(b"hello")?;
    match sub.receive(Some(Duration::from_secs(1)))? {
        Some(msg) => println!("got {} (seq {})", String::from_utf8_lossy(&msg.data), msg.seq),
        None => eprintln!("hello: no message within 1 s"),
    }
    Ok(())
}
