//! Nothing is lost and nothing is shown twice when the server process is
//! killed with SIGKILL mid-flight and restarted.

mod common;

use client::AppEvent;
use common::chat::App;
use common::{eventually, rows, Options, Server};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use store::on_both_backends;

const SENDERS: usize = 10;
const RECIPIENTS: usize = 10;
const PER_SENDER: usize = 100;

/// Senders and recipients of the full-speed crash test.
const FAST_SENDERS: usize = 10;
const FAST_RECIPIENTS: usize = 10;
const FAST_PER_SENDER: usize = 300;

/// What `sender` has seen acknowledged so far: (client id, message id).
fn acked(sender: &App) -> Vec<(String, i64)> {
    sender
        .seen
        .iter()
        .filter_map(|e| match e {
            AppEvent::Sent { ack, own: true } => Some((ack.client_id.clone(), ack.id)),
            _ => None,
        })
        .collect()
}


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

    async fn a_crash_at_full_speed_loses_no_acked_message_and_duplicates_none(backend) {
        // The send quota lifted, so the senders go as fast as the server
        // takes them; the recipients stay offline, so nothing is pruned and
        // their inboxes show every event the server stored.
        let options = Options::default()
            .env("BLUETICK_QUOTAS__SENDS_PER_SECOND", "1000000")
            .env("BLUETICK_QUOTAS__SEND_BURST", "1000000");
        let mut server = Server::start_with(backend, options);
        let dir = tempfile::tempdir().unwrap();
        let recipients: Vec<(String, String)> = (0..FAST_RECIPIENTS)
            .map(|i| {
                let name = format!("reader_{i}");
                let token = server.register(&name);
                (name, token)
            })
            .collect();
        let mut senders = Vec::new();
        for i in 0..FAST_SENDERS {
            let name = format!("writer_{i}");
            let token = server.register(&name);
            senders.push(App::connect(&server, &name, &token, "phone", dir.path()).await);
        }
        for k in 0..FAST_PER_SENDER {
            for (i, sender) in senders.iter().enumerate() {
                let to = format!("reader_{}", (i + k) % FAST_RECIPIENTS);
                sender.client.send(&to, &format!("{i}:{k}")).await.unwrap();
            }
        }
        let total = (FAST_SENDERS * FAST_PER_SENDER) as i64;
        let store = server.store();
        let stored = |store: &store::Store| -> i64 {
            (0..FAST_RECIPIENTS).map(|i| store.inbox_head(&format!("reader_{i}")).unwrap_or(0)).sum()
        };
        assert!(eventually(Duration::from_secs(60), || stored(&store) >= total / 10).await, "messages are being stored before the crash");
        // Every ✓ that reached a sender before the kill.
        let mut acked_before = Vec::new();
        for sender in senders.iter_mut() {
            sender.settle(Duration::from_millis(1)).await;
            acked_before.extend(acked(sender));
        }
        server.crash_and_restart();
        eprintln!("crashed at full speed with {} of {total} ✓'d", acked_before.len());

        // The senders resend what was not ✓'d until every send is.
        let deadline = Instant::now() + Duration::from_secs(180);
        for sender in senders.iter_mut() {
            while acked(sender).len() < FAST_PER_SENDER && Instant::now() < deadline {
                sender.settle(Duration::from_millis(200)).await;
            }
            assert_eq!(acked(sender).len(), FAST_PER_SENDER, "every send is ✓'d after the restart");
        }

        // In the store: one message event per message, none twice, and
        // every message ✓'d before the crash among them.
        let events = rows::count(&server, "inbox WHERE kind = 'message'");
        assert_eq!(events, total, "one message event per sent message");
        let twice = rows::count(&server, "(SELECT message_id FROM inbox WHERE kind = 'message' GROUP BY user_name, message_id HAVING COUNT(*) > 1) AS twice");
        assert_eq!(twice, 0, "no message is in an inbox twice");
        for chunk in acked_before.chunks(500) {
            let ids: Vec<String> = chunk.iter().map(|(_, id)| id.to_string()).collect();
            let found = rows::count(&server, &format!("inbox WHERE kind = 'message' AND message_id IN ({})", ids.join(",")));
            assert_eq!(found, chunk.len() as i64, "every message ✓'d before the crash is in its recipient's inbox");
        }

        // And each recipient's app shows exactly its messages, once each.
        for (name, token) in &recipients {
            let mut app = App::connect(&server, name, token, "phone", dir.path()).await;
            let wanted = FAST_SENDERS * FAST_PER_SENDER / FAST_RECIPIENTS;
            while app.messages().len() < wanted && Instant::now() < deadline {
                app.settle(Duration::from_millis(300)).await;
            }
            app.settle(Duration::from_millis(300)).await;
            let messages = app.messages();
            let unique: HashSet<i64> = messages.iter().map(|m| m.id).collect();
            assert_eq!(messages.len(), wanted, "{name} got every message");
            assert_eq!(unique.len(), wanted, "{name} got none twice");
        }
    }
}
