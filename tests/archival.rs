//! Archival, disappearing messages and orphaned uploads, run as an
//! operator would run the jobs by hand (`bluetick job run NAME`), with that process's clock
//! skewed forward (`BLUETICK_CLOCK_SKEW_SECS`) to age the messages.

mod common;

use client::AppEvent;
use common::chat::App;
use common::http::{page_ids, request};
use common::media;
use common::mqtt;
use common::rows::count;
use common::{run_job, Server};
use protocol::messages::ReceiptStatus;
use serde_json::{json, Value};
use std::time::Duration;
use store::on_both_backends;

const DAY: i64 = 86_400;

/// Files in the server's local object store, leaving out backups.
fn media_files(server: &Server) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| !p.ends_with("backups"))
                .map(|p| if p.is_dir() { walk(&p) } else { 1 })
                .sum()
        })
    }
    walk(&server.data_dir.path().join("media"))
}

fn get(server: &Server, path: &str, token: &str) -> Value {
    let response = request(server.http, "GET", path, None, Some(token));
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    response.json()
}

/// Sends from `app` and waits for the server's ack: the server id.
async fn send(app: &mut App, to: &str, body: &str) -> i64 {
    let client_id = app.client.send(to, body).await.unwrap();
    app.sent(&client_id).await
}

on_both_backends! {
    async fn a_message_archived_before_it_was_indexed_is_still_found(backend) {
        // The indexer is paused while the message is sent, delivered and
        // archived, as a lagging one would be.
        let paused = common::Options::default().env("BLUETICK_SEARCH__INDEXER_ENABLED", "false");
        let mut server = Server::start_with(backend, paused);
        let dir = tempfile::tempdir().unwrap();
        let alice_token = server.register("alice");
        let bob_token = server.register("bob");
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        let id = send(&mut alice, "bob", "the axolotl itinerary").await;
        bob.message_from("alice", "the axolotl itinerary").await;
        assert!(common::eventually(Duration::from_secs(30), || {
            count(&server, "inbox WHERE message_id IS NOT NULL") == 0
        }).await, "devices acked their inboxes");
        run_job(&server, "archival", 8 * DAY);
        assert_eq!(count(&server, &format!("messages_archive WHERE id = {id}")), 1);
        assert_eq!(common::rows::indexed(&server, &format!("message_id = {id}")), 0, "not indexed yet");

        drop((alice, bob));
        server.crash_and_restart_with(common::Options::default());
        server.searchable(id).await;
        assert_eq!(page_ids(&get(&server, "/v1/search?q=axolotl", &bob_token), "/id"), [id]);
        assert_eq!(page_ids(&get(&server, "/v1/search?q=Itinerary", &alice_token), "/id"), [id]);
    }

    async fn old_messages_move_to_the_archive_and_stay_readable(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let alice_token = server.register("alice");
        let bob_token = server.register("bob");
        server.register("carol");
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;

        let first = send(&mut alice, "bob", "the zanzibar plan").await;
        let second = send(&mut alice, "bob", "second thoughts").await;
        bob.message_from("alice", "second thoughts").await;
        let reply = send(&mut bob, "alice", "sounds good").await;
        // Carol never connects: her message keeps an inbox event.
        let waiting = send(&mut alice, "carol", "waiting for carol").await;
        alice.receipt("bob", ReceiptStatus::Delivered, second).await;
        let star = request(server.http, "PUT", &format!("/v1/messages/{first}/star"), None, Some(&alice_token));
        assert_eq!(star.status, 200);
        // Every device has stored its events: only Carol's is left.
        assert!(common::eventually(Duration::from_secs(10), || {
            count(&server, "inbox WHERE message_id IS NOT NULL") == 1
        }).await, "devices acked their inboxes");

        // Nothing is seven days old yet.
        run_job(&server, "archival", 0);
        assert_eq!((count(&server, "messages"), count(&server, "messages_archive")), (4, 0));

        // Eight days on, the delivered ones move; Carol's stays hot.
        run_job(&server, "archival", 8 * DAY);
        assert_eq!(count(&server, "messages_archive"), 3);
        assert_eq!(count(&server, &format!("messages WHERE id = {waiting}")), 1);
        assert_eq!(count(&server, "messages"), 1);
        run_job(&server, "archival", 8 * DAY);
        assert_eq!((count(&server, "messages"), count(&server, "messages_archive")), (1, 3), "a rerun changes nothing");

        // History, stars, search and the chat list read the archive alike.
        server.searchable(waiting).await;
        let history = get(&server, "/v1/chats/bob/messages", &alice_token);
        assert_eq!(page_ids(&history, "/id"), [reply, second, first]);
        assert_eq!(history["items"][2]["body"], "the zanzibar plan");
        assert_eq!(history["items"][2]["starred"], true);
        assert_eq!(page_ids(&get(&server, "/v1/stars", &alice_token), "/message/id"), [first]);
        assert_eq!(page_ids(&get(&server, "/v1/search?q=Zanzibar", &alice_token), "/id"), [first]);
        assert_eq!(page_ids(&get(&server, "/v1/search?q=zanzibar", &bob_token), "/id"), [first]);
        let chats = get(&server, "/v1/chats", &alice_token);
        assert_eq!(chats["items"][0]["last_message"]["id"], waiting);
        assert_eq!(chats["items"][1]["last_message"]["id"], reply);
        assert_eq!(chats["items"][1]["unread"], 1, "Alice has not read Bob's reply");

        // A late read of an archived message still counts, and is told.
        bob.client.read("alice", second).await.unwrap();
        alice.receipt("bob", ReceiptStatus::Read, second).await;
        let history = get(&server, "/v1/chats/bob/messages", &alice_token);
        assert!(history["items"][1]["read_at"].is_i64(), "{history}");
    }

    async fn a_resend_after_archival_gets_the_first_copy_and_stores_nothing(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let alice_token = server.register("alice");
        let bob_token = server.register("bob");
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        // Alice's phone stores the ack of what her browser sends over HTTP.
        let _alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let send = r#"{"id":"sent-once","to":"bob","body":"only once"}"#;
        let first = request(server.http, "POST", "/v1/messages", Some(send), Some(&alice_token));
        assert_eq!(first.status, 201, "{}", first.body);
        let id = first.json()["id"].as_i64().unwrap();
        bob.message_from("alice", "only once").await;
        assert!(common::eventually(Duration::from_secs(10), || {
            count(&server, "inbox WHERE message_id IS NOT NULL") == 0
        }).await, "Bob's phone stored the message, Alice's phone the ack");
        run_job(&server, "archival", 8 * DAY);
        assert_eq!((count(&server, "messages"), count(&server, "messages_archive")), (0, 1));

        // The browser, which never saw its answer, sends the same id again.
        let again = request(server.http, "POST", "/v1/messages", Some(send), Some(&alice_token));
        assert_eq!(again.status, 201, "{}", again.body);
        assert_eq!(again.json()["id"], id, "the first copy's ack");
        assert_eq!((count(&server, "messages"), count(&server, "messages_archive")), (0, 1));
        bob.settle(Duration::from_millis(500)).await;
        assert_eq!(bob.messages().len(), 1, "Bob is not shown it twice");
        assert_eq!(page_ids(&get(&server, "/v1/chats/alice/messages", &bob_token), "/id"), [id]);
    }

    async fn expired_messages_are_gone_from_every_table_on_time(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let alice_token = server.register("alice");
        let bob_token = server.register("bob");
        let carol_token = server.register("carol");
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;

        let stays = send(&mut alice, "bob", "this quetzal stays").await;
        // A timer needs a chat: Carol, offline, has written to Alice once.
        let hello = json!({ "id": "carol-hi", "to": "alice", "body": "hello alice" }).to_string();
        let sent = request(server.http, "POST", "/v1/messages", Some(&hello), Some(&carol_token));
        assert_eq!(sent.status, 201, "{}", sent.body);
        alice.message_from("carol", "hello alice").await;
        for (token, peer) in [(&bob_token, "alice"), (&alice_token, "carol")] {
            let body = json!({ "seconds": DAY }).to_string();
            let set = request(server.http, "PUT", &format!("/v1/chats/{peer}/timer"), Some(&body), Some(token));
            assert_eq!(set.status, 200, "{}", set.body);
        }
        let to_bob = send(&mut alice, "bob", "a vanishing quetzal").await;
        let to_carol = send(&mut alice, "carol", "a vanishing quetzal for carol").await;
        bob.message_from("alice", "a vanishing quetzal").await;
        // And a media message, whose upload must go with it.
        let media_id = media::upload_ok(server.http, &alice_token, "application/pdf", b"%PDF-1.4 a vanishing document");
        let tablet = mqtt::connect(server.mqtt, "alice.tablet", Some(("alice", &alice_token))).await.expect_connected();
        let photo = json!({ "id": "vanishing-doc", "to": "bob", "media": { "id": media_id, "caption": "see this" } });
        tablet.publish("u/alice/send", photo.to_string()).await;
        let document = bob
            .wait_for("the media message", |e| match e {
                AppEvent::Message(m) if m.media.is_some() => Some(m.id),
                _ => None,
            })
            .await;
        let download = media::get(server.http, Some(&bob_token), &format!("/v1/media/{media_id}"), None);
        assert_eq!(download.status, 200, "Bob may download what he was sent");
        assert_eq!(media_files(&server), 1, "the upload is in the object store");
        let star = request(server.http, "PUT", &format!("/v1/messages/{to_bob}/star"), None, Some(&bob_token));
        assert_eq!(star.status, 200);
        // Left: Carol's message event and the ack of her hello.
        assert!(common::eventually(Duration::from_secs(10), || {
            count(&server, "inbox WHERE message_id IS NOT NULL") == 2
        }).await, "devices acked their inboxes");
        // Bob's chat is old enough to be archived; Carol's is still waiting.
        run_job(&server, "archival", 8 * DAY);
        assert_eq!(count(&server, &format!("messages_archive WHERE id = {document}")), 1);
        assert_eq!(count(&server, &format!("messages_archive WHERE id = {to_bob}")), 1);
        assert_eq!(count(&server, &format!("messages WHERE id = {to_carol}")), 1);
        let gone = format!("({to_bob}, {to_carol}, {document})");
        let traces = |server: &Server| -> [i64; 5] {
            [
                count(server, &format!("messages WHERE id IN {gone}")),
                count(server, &format!("messages_archive WHERE id IN {gone}")),
                count(server, &format!("stars WHERE message_id IN {gone}")),
                common::rows::indexed(server, &format!("message_id IN {gone}")),
                count(server, &format!("inbox WHERE message_id IN {gone}")),
            ]
        };
        server.searchable(document.max(to_carol)).await;
        // All three are indexed: the two texts and the document's caption.
        assert_eq!(traces(&server), [1, 2, 1, 3, 1], "hot, archived, star, indexed, Carol's event");
        // Archived, the media message still gives Bob its media.
        let download = media::get(server.http, Some(&bob_token), &format!("/v1/media/{media_id}"), None);
        assert_eq!(download.status, 200, "archived media stays readable to its recipient");

        // A minute before the day is up, nothing goes.
        run_job(&server, "expiry", DAY - 60);
        assert_eq!(traces(&server)[..2], [1, 2]);
        // A minute after, everything does, hot and archived alike.
        let expired = run_job(&server, "expiry", DAY + 60);
        assert_eq!(traces(&server), [0, 0, 0, 0, 0]);
        assert!(expired.contains(r#""media":1"#), "{expired}");
        assert_eq!(count(&server, "media"), 0, "the media row");
        assert_eq!(media_files(&server), 0, "the object in the store");
        let download = media::get(server.http, Some(&bob_token), &format!("/v1/media/{media_id}"), None);
        assert_eq!(download.status, 404);
        let history = get(&server, "/v1/chats/alice/messages", &bob_token);
        assert_eq!(page_ids(&history, "/id"), [stays], "only the message sent before the timer is left");
        assert_eq!(page_ids(&get(&server, "/v1/stars", &bob_token), "/message/id"), Vec::<i64>::new());
        assert_eq!(page_ids(&get(&server, "/v1/search?q=quetzal", &bob_token), "/id"), [stays]);
        assert_eq!(page_ids(&get(&server, "/v1/search?q=vanishing", &alice_token), "/id"), Vec::<i64>::new());

        // Carol's device comes online: the message's place in her inbox
        // holds a tombstone, so her seqs have no gap.
        let mut carol = App::connect(&server, "carol", &carol_token, "phone", dir.path()).await;
        carol
            .wait_for("the expired tombstone", |e| match e {
                AppEvent::Expired(expired) if expired.message_id == to_carol => Some(()),
                _ => None,
            })
            .await;
        carol.settle(Duration::from_millis(300)).await;
        assert!(carol.messages().is_empty(), "{:?}", carol.seen);
        assert!(carol.seen.iter().any(|e| matches!(e, AppEvent::Timer(t) if t.by == "alice")));
    }

    async fn cleanup_removes_uploads_no_message_refers_to_after_a_day(backend) {
        let server = Server::start(backend);
        let alice_token = server.register("alice");
        server.register("bob");
        let orphan = media::upload_ok(server.http, &alice_token, "application/pdf", b"%PDF-1.4 never sent");
        let sent = media::upload_ok(server.http, &alice_token, "application/pdf", b"%PDF-1.4 sent to bob");
        let with_media = json!({ "id": "doc-1", "to": "bob", "media": { "id": sent } }).to_string();
        let stored = request(server.http, "POST", "/v1/messages", Some(&with_media), Some(&alice_token));
        assert_eq!(stored.status, 201, "{}", stored.body);
        assert_eq!(media_files(&server), 2);

        // Within the day, nothing goes: the client may still send it.
        run_job(&server, "cleanup", 23 * 3600);
        assert_eq!(count(&server, "media"), 2);
        // After it, the unsent upload goes, row and object; the sent one stays.
        let cleaned = run_job(&server, "cleanup", 25 * 3600);
        assert!(cleaned.contains(r#""media":1"#), "{cleaned}");
        assert_eq!(count(&server, &format!("media WHERE id = '{orphan}'")), 0);
        assert_eq!(count(&server, &format!("media WHERE id = '{sent}'")), 1);
        assert_eq!(media_files(&server), 1);
        let gone = media::get(server.http, Some(&alice_token), &format!("/v1/media/{orphan}"), None);
        assert_eq!(gone.status, 404);
        let kept = media::get(server.http, Some(&alice_token), &format!("/v1/media/{sent}"), None);
        assert_eq!(kept.status, 200);
    }
}
