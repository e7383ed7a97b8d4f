//! rumqttd acknowledges a publish and may then drop it when a subscriber
//! falls behind its segment budget (DESIGN.md). With that budget made tiny,
//! a 10,000-message burst still reaches every app exactly once and in
//! order: the SDK's timeout resend and its gap-triggered sync recover what
//! the broker drops.

mod common;

use common::chat::App;
use common::{Options, Server};
use store::on_both_backends;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const SENDERS: usize = 20;
const RECIPIENTS: usize = 5;
const PER_SENDER: usize = 500;

/// Small enough that the broker drops even for apps that read at once
/// (with `TCP_NODELAY` on both sides, 2 KiB segments no longer overflowed).
fn tiny_broker() -> Options {
    Options::default()
        .env("BLUETICK_MQTT__SEGMENT_SIZE", "1024")
        .env("BLUETICK_MQTT__SEGMENT_COUNT", "2")
        .env("BLUETICK_BRIDGE__SEGMENT_SIZE", "2048")
        .env("BLUETICK_BRIDGE__SEGMENT_COUNT", "2")
}

on_both_backends! {
    async fn a_burst_through_a_lossy_broker_arrives_exactly_once_in_order(backend) {
        let server = Server::start_with(backend, tiny_broker());
        let dir = tempfile::tempdir().unwrap();
        let mut recipients = Vec::new();
        for i in 0..RECIPIENTS {
            let name = format!("reader_{i}");
            let token = server.register(&name);
            recipients.push(App::connect(&server, &name, &token, "phone", dir.path()).await);
        }
        let mut senders = Vec::new();
        for i in 0..SENDERS {
            let name = format!("writer_{i}");
            let token = server.register(&name);
            senders.push(App::connect(&server, &name, &token, "phone", dir.path()).await);
        }
        let started = Instant::now();
        for (i, sender) in senders.iter().enumerate() {
            for k in 0..PER_SENDER {
                sender.client.send(&format!("reader_{}", (i + k) % RECIPIENTS), &format!("{i}:{k}")).await.unwrap();
            }
        }
        let per_recipient = SENDERS * PER_SENDER / RECIPIENTS;
        let deadline = Instant::now() + Duration::from_secs(240);
        for recipient in recipients.iter_mut() {
            while recipient.messages().len() < per_recipient && Instant::now() < deadline {
                recipient.settle(Duration::from_millis(200)).await;
            }
        }
        eprintln!("{} messages in {:?}", SENDERS * PER_SENDER, started.elapsed());
        for (r, recipient) in recipients.iter_mut().enumerate() {
            recipient.settle(Duration::from_millis(300)).await;
            let messages = recipient.messages();
            assert_eq!(messages.len(), per_recipient, "reader {r} got every message exactly once");
            let unique: HashSet<&str> = messages.iter().map(|m| m.body.as_str()).collect();
            assert_eq!(unique.len(), per_recipient, "reader {r}: no duplicates");
            let mut last_k: HashMap<&str, i64> = HashMap::new();
            for m in &messages {
                let k: i64 = m.body.split_once(':').unwrap().1.parse().unwrap();
                let previous = last_k.insert(m.from.as_str(), k).unwrap_or(-1);
                assert!(k > previous, "reader {r}: {} sent {previous} before {k}", m.from);
            }
        }
        // The broker really did drop messages along the way.
        let jumps = server.metric("bluetick_broker_cursor_jumps_total");
        eprintln!("the broker skipped subscribers ahead {jumps} times");
        assert!(jumps > 0.0, "the tiny segment budget should have made the broker drop messages");
    }
}
