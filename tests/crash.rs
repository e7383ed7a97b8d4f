//! Nothing is lost and nothing is shown twice when the server process is
//! killed with SIGKILL mid-flight and restarted.

mod common;

use client::AppEvent;
use common::chat::App;
use common::{eventually, Server};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use store::on_both_backends;

const SENDERS: usize = 10;
const RECIPIENTS: usize = 10;
const PER_SENDER: usize = 100;

on_both_backends! {
    async fn every_message_arrives_exactly_once_in_order_across_a_server_crash(backend) {
        let mut server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let mut senders = Vec::new();
        let mut recipients = Vec::new();
        for i in 0..RECIPIENTS {
            let name = format!("recipient_{i}");
            let token = server.register(&name);
            recipients.push(App::connect(&server, &name, &token, "phone", dir.path()).await);
        }
        for i in 0..SENDERS {
            let name = format!("sender_{i}");
            let token = server.register(&name);
            senders.push(App::connect(&server, &name, &token, "phone", dir.path()).await);
        }
        // 1,000 messages go out at once: sender i's k-th message goes to
        // recipient (i + k) % 10 and says "i:k".
        for (i, sender) in senders.iter().enumerate() {
            for k in 0..PER_SENDER {
                let to = format!("recipient_{}", (i + k) % RECIPIENTS);
                sender.client.send(&to, &format!("{i}:{k}")).await.unwrap();
            }
        }
        // Kill the server while they are in flight.
        let store = server.store();
        let stored = |store: &store::Store| -> i64 { (0..RECIPIENTS).map(|i| store.inbox_head(&format!("recipient_{i}")).unwrap_or(0)).sum() };
        assert!(eventually(Duration::from_secs(30), || stored(&store) >= 50).await, "some messages are stored before the crash");
        let at_crash = stored(&store);
        server.crash_and_restart();
        eprintln!("crashed with {at_crash} of {} messages stored", SENDERS * PER_SENDER);

        // Every recipient app ends up with exactly its 100 messages.
        let deadline = Instant::now() + Duration::from_secs(120);
        for recipient in recipients.iter_mut() {
            while recipient.messages().len() < SENDERS * PER_SENDER / RECIPIENTS && Instant::now() < deadline {
                recipient.settle(Duration::from_millis(200)).await;
            }
        }
        for (r, recipient) in recipients.iter_mut().enumerate() {
            recipient.settle(Duration::from_millis(300)).await;
            let messages = recipient.messages();
            assert_eq!(messages.len(), SENDERS * PER_SENDER / RECIPIENTS, "recipient {r} got every message exactly once");
            let unique: HashSet<(&str, &str)> = messages.iter().map(|m| (m.from.as_str(), m.client_id.as_str())).collect();
            assert_eq!(unique.len(), messages.len(), "recipient {r}: no duplicates");
            // Per sender, in the order that sender sent them.
            let mut last_k: HashMap<&str, i64> = HashMap::new();
            for m in &messages {
                let (i, k) = m.body.split_once(':').expect("i:k");
                assert_eq!(m.from, format!("sender_{i}"));
                let k: i64 = k.parse().unwrap();
                let previous = last_k.insert(m.from.as_str(), k).unwrap_or(-1);
                assert!(k > previous, "recipient {r}: {} sent {previous} before {k}", m.from);
            }
        }
        // Every sender got every ack, and its outbox is empty.
        for (i, sender) in senders.iter_mut().enumerate() {
            let wanted = PER_SENDER;
            while sender.seen.iter().filter(|e| matches!(e, AppEvent::Sent { own: true, .. })).count() < wanted && Instant::now() < deadline {
                sender.settle(Duration::from_millis(200)).await;
            }
            let acked: HashSet<String> = sender
                .seen
                .iter()
                .filter_map(|e| match e { AppEvent::Sent { ack, own: true } => Some(ack.client_id.clone()), _ => None })
                .collect();
            assert_eq!(acked.len(), PER_SENDER, "sender {i} got every ack");
            assert_eq!(sender.client.pending().unwrap(), 0, "sender {i}'s outbox is empty");
        }
    }
}
