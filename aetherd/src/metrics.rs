//! The daemon's statistics in the Prometheus text exposition format (0.0.4,
//! written by the `prometheus` crate's encoder): for scrapers, through the
//! optional HTTP listener (`--metrics-listen ADDR`, off by default), and
//! for node-exporter's textfile collector (`aether-cli stats --prometheus`).
//!
//! Who may read them: anyone who can connect to the listener's address
//! (there is no authentication: bind it to loopback or a private network);
//! they show topic names, counts and rates, subscriber slots and client ids,
//! never payloads, pids or uids. The admin pipe's `stats` needs the
//! `monitor` right; the listener is the operator's choice to publish them.

use crate::stats::Stats;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// `stats` as Prometheus text.
pub fn render(stats: &Stats) -> String {
    let registry = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
        registry.register(Box::new(c.clone())).expect("registered once");
        c
    };
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
        registry.register(Box::new(g.clone())).expect("registered once");
        g
    };
    let fgauge = |name: &str, help: &str, labels: &[&str]| {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
        registry.register(Box::new(g.clone())).expect("registered once");
        g
    };
    let d = &stats.daemon;
    let none: [&str; 0] = [];
    gauge("aether_up", "1 while the daemon serves (0 while it drains)", &[])
        .with_label_values(&none)
        .set(i64::from(!d.draining));
    fgauge("aether_uptime_seconds", "Seconds since the daemon started", &[])
        .with_label_values(&none)
        .set(d.uptime_s);
    gauge("aether_clients", "Connected clients", &[])
        .with_label_values(&none)
        .set(d.clients as i64);
    counter(
        "aether_dead_clients_total",
        "Clients found dead rather than closed",
        &[],
    )
    .with_label_values(&none)
    .inc_by(d.dead_clients);
    gauge("aether_segment_bytes", "Shared memory of every topic's segment", &[])
        .with_label_values(&none)
        .set(d.segment_bytes as i64);

    let t = ["topic"];
    let published = counter("aether_topic_published_total", "Messages published", &t);
    let lost = counter("aether_topic_lost_total", "Messages its current subscribers lost", &t);
    let aborted = counter("aether_topic_aborted_total", "Loans given up", &t);
    let overruns = counter(
        "aether_topic_overruns_total",
        "Reliable claims over unread space after the timeout",
        &t,
    );
    let waits = counter(
        "aether_topic_waits_total",
        "Subscribers' sleeps waiting for messages",
        &t,
    );
    let space_waits = counter(
        "aether_topic_space_waits_total",
        "Publishers' sleeps waiting for space",
        &t,
    );
    let wakes = counter("aether_topic_wakes_total", "Futex wake calls", &t);
    let publishers = gauge("aether_topic_publishers", "Publishers open", &t);
    let subscribers = gauge("aether_topic_subscribers", "Subscribers open", &t);
    let rate = fgauge(
        "aether_topic_messages_per_second",
        "Messages per second, last sample",
        &t,
    );
    let bytes_rate = fgauge(
        "aether_topic_ring_bytes_per_second",
        "Ring bytes per second, last sample",
        &t,
    );
    let ring = gauge("aether_topic_ring_bytes", "The topic's ring size", &t);
    let log_bytes = gauge("aether_topic_log_bytes", "A durable topic's log on disk", &t);
    let log_oldest = gauge(
        "aether_topic_log_oldest_seq",
        "The oldest message a durable topic's log holds",
        &t,
    );
    let log_next = gauge(
        "aether_topic_log_next_seq",
        "The next message a durable topic's log will write",
        &t,
    );
    let commit_lag = gauge(
        "aether_durable_subscription_lag_messages",
        "Messages published after a durable subscription's commit",
        &["topic", "subscription"],
    );
    for topic in &stats.topics {
        let l = [topic.name.as_str()];
        published.with_label_values(&l).inc_by(topic.published);
        lost.with_label_values(&l).inc_by(topic.lost);
        aborted.with_label_values(&l).inc_by(topic.aborted);
        overruns.with_label_values(&l).inc_by(topic.overruns);
        waits.with_label_values(&l).inc_by(topic.waits);
        space_waits.with_label_values(&l).inc_by(topic.space_waits);
        wakes.with_label_values(&l).inc_by(topic.wakes);
        publishers.with_label_values(&l).set(topic.publishers as i64);
        subscribers.with_label_values(&l).set(topic.subscribers as i64);
        rate.with_label_values(&l).set(topic.rate_msgs_per_s);
        bytes_rate.with_label_values(&l).set(topic.rate_bytes_per_s);
        ring.with_label_values(&l).set(topic.ring_size as i64);
        if let Some(log) = &topic.log {
            log_bytes.with_label_values(&l).set(log.bytes as i64);
            log_oldest.with_label_values(&l).set(log.oldest_seq as i64);
            log_next.with_label_values(&l).set(log.next_seq as i64);
            for s in &log.subscriptions {
                commit_lag
                    .with_label_values(&[topic.name.as_str(), s.name.as_str()])
                    .set(s.lag_messages as i64);
            }
        }
    }
    let s = ["topic", "slot", "client", "delivery"];
    let delivered = counter(
        "aether_subscriber_delivered_total",
        "Messages a subscriber received",
        &s,
    );
    let sub_lost = counter("aether_subscriber_lost_total", "Messages a subscriber missed", &s);
    let lag = gauge(
        "aether_subscriber_lag_messages",
        "Messages published that a subscriber has not read",
        &s,
    );
    for sub in &stats.subscribers {
        let (slot, client) = (sub.slot.to_string(), sub.client.to_string());
        let l = [
            sub.topic.as_str(),
            slot.as_str(),
            client.as_str(),
            sub.delivery.as_str(),
        ];
        delivered.with_label_values(&l).inc_by(sub.delivered);
        sub_lost.with_label_values(&l).inc_by(sub.lost);
        lag.with_label_values(&l).set(sub.lag_messages as i64);
    }
    if let Some(b) = &stats.bridge {
        let name = [b.name.as_str()];
        let n = ["bridge"];
        for (metric, help, v) in [
            (
                "aether_bridge_sent_total",
                "Local messages sent to other brokers",
                b.sent,
            ),
            (
                "aether_bridge_sent_bytes_total",
                "Payload bytes sent to other brokers",
                b.sent_bytes,
            ),
            (
                "aether_bridge_sent_samples_total",
                "Zenoh samples the sent messages went in (a batch counts once)",
                b.sent_samples,
            ),
            (
                "aether_bridge_unsent_total",
                "Local messages that could not leave (lapped, or nobody listened)",
                b.unsent,
            ),
            (
                "aether_bridge_refused_total",
                "Remote messages refused (access, patterns, malformed)",
                b.refused,
            ),
        ] {
            counter(metric, help, &n).with_label_values(&name).inc_by(v);
        }
        let l = ["bridge", "broker"];
        let up = gauge("aether_bridge_link_up", "1 while the remote broker is reachable", &l);
        let received = counter("aether_bridge_received_total", "Remote messages published here", &l);
        let dropped = counter("aether_bridge_dropped_total", "Remote messages the network lost", &l);
        for (broker, link) in &b.links {
            let labels = [b.name.as_str(), broker.as_str()];
            up.with_label_values(&labels).set(i64::from(link.up));
            received.with_label_values(&labels).inc_by(link.received);
            dropped.with_label_values(&labels).inc_by(link.dropped);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into memory");
    String::from_utf8(out).expect("the encoder writes UTF-8")
}

/// Serves `GET /metrics` on `addr` until the process exits: each request
/// gets a fresh snapshot from `snapshot`. Other paths get 404. Binds before
/// it returns, so that a taken address is the caller's error.
pub fn serve(addr: &str, snapshot: impl Fn() -> Stats + Send + 'static) -> std::io::Result<std::net::SocketAddr> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    let local = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("not an IP address"))?;
    std::thread::Builder::new()
        .name("aetherd-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" && *request.method() == tiny_http::Method::Get {
                    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"text/plain; version=0.0.4"[..])
                        .expect("a valid header");
                    tiny_http::Response::from_string(render(&snapshot())).with_header(header)
                } else {
                    tiny_http::Response::from_string("only GET /metrics here\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::*;

    #[test]
    fn a_snapshot_becomes_prometheus_text() {
        let stats: Stats = serde_json::from_value(serde_json::json!({
            "daemon": {"version": "0.1.0", "pid": 1, "instance_id": "ab", "socket": "/s", "uptime_s": 2.5,
                       "topics": 1, "clients": 3, "dead_clients": 1, "segment_bytes": 4096, "draining": false},
            "topics": [{"name": "orders", "policy": "reliable", "ring_size": 65536, "max_message": 64,
                        "publishers": 1, "subscribers": 2, "published": 42, "rate_msgs_per_s": 10.5,
                        "rate_bytes_per_s": 640.0, "lost": 0, "aborted": 1, "overruns": 0, "waits": 7,
                        "space_waits": 0, "wakes": 9, "durability": "wal (fsync never)",
                        "log": {"bytes": 1000, "oldest_seq": 0, "next_seq": 42, "synced_seq": 0, "dir": "/d",
                                "subscriptions": [{"name": "billing", "committed_seq": 40, "lag_messages": 2,
                                                   "connected": true}]}}],
            "subscribers": [{"topic": "orders", "slot": 1, "client": 7, "pid": 4141, "uid": 4242, "delivery": "shm",
                             "delivered": 40, "lost": 0, "lag_messages": 2, "lag_bytes": 128, "idle_s": 0.1}],
            "clients": [],
            "bridge": {"name": "a", "sent": 5, "sent_bytes": 320, "unsent": 1, "refused": 2, "echoes": 0,
                       "links": {"b": {"up": true, "received": 3, "received_bytes": 30, "dropped": 1,
                                       "ups": 1, "downs": 0, "last_error": null}}}
        }))
        .expect("a stats document");
        let text = render(&stats);
        for line in [
            "# TYPE aether_topic_published_total counter",
            "aether_topic_published_total{topic=\"orders\"} 42",
            "aether_topic_messages_per_second{topic=\"orders\"} 10.5",
            "aether_topic_log_next_seq{topic=\"orders\"} 42",
            "aether_durable_subscription_lag_messages{subscription=\"billing\",topic=\"orders\"} 2",
            "aether_subscriber_lag_messages{client=\"7\",delivery=\"shm\",slot=\"1\",topic=\"orders\"} 2",
            "aether_clients 3",
            "aether_up 1",
            "aether_bridge_sent_total{bridge=\"a\"} 5",
            "aether_bridge_link_up{bridge=\"a\",broker=\"b\"} 1",
            "aether_bridge_dropped_total{bridge=\"a\",broker=\"b\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("4141") && !text.contains("4242"),
            "no pid or uid: {text}"
        );
    }
}
