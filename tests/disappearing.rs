//! Disappearing messages: either participant sets a chat's timer, both
//! hear of it, and later messages carry their expiry time.

mod common;

use client::AppEvent;
use common::chat::App;
use common::http::request;
use common::Server;
use serde_json::json;
use store::on_both_backends;

fn set_timer(server: &Server, token: &str, peer: &str, seconds: i64) -> common::http::Response {
    let body = json!({ "seconds": seconds }).to_string();
    request(
        server.http,
        "PUT",
        &format!("/v1/chats/{peer}/timer"),
        Some(&body),
        Some(token),
    )
}

async fn timer_event(app: &mut App, by: &str, seconds: i64) {
    app.wait_for("a timer event", |event| match event {
        AppEvent::Timer(t) if t.by == by && t.seconds == seconds => Some(()),
        _ => None,
    })
    .await;
}

on_both_backends! {
    async fn either_participant_sets_the_timer_and_both_hear_of_it(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let alice_token = server.register("alice");
        let bob_token = server.register("bob");
        let mut alice = App::connect(&server, "alice", &alice_token, "phone", dir.path()).await;
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;
        // A timer needs a chat.
        alice.client.send("bob", "hello").await.unwrap();
        bob.message_from("alice", "hello").await;

        let set = set_timer(&server, &bob_token, "alice", 86_400);
        assert_eq!(set.status, 200, "{}", set.body);
        assert_eq!(set.json(), json!({ "seconds": 86_400 }));
        timer_event(&mut alice, "bob", 86_400).await;
        timer_event(&mut bob, "bob", 86_400).await;

        // Messages sent from now on expire a day after they are sent.
        let client_id = alice.client.send("bob", "this will vanish").await.unwrap();
        let message = bob.message_from("alice", "this will vanish").await;
        let expires_at = message.expires_at.expect("the message carries its expiry");
        assert_eq!(expires_at - message.sent_at, 86_400_000);
        let ack = alice
            .wait_for("the ack", |e| match e {
                AppEvent::Sent { ack, .. } if ack.client_id == client_id => Some(ack.clone()),
                _ => None,
            })
            .await;
        assert_eq!(ack.expires_at, Some(expires_at));
        let chats = request(server.http, "GET", "/v1/chats", None, Some(&alice_token)).json();
        assert_eq!(chats["items"][0]["timer_seconds"], 86_400);
        assert_eq!(chats["items"][0]["last_message"]["expires_at"], expires_at);

        // The other side turns it off: later messages stay.
        assert_eq!(set_timer(&server, &alice_token, "bob", 0).status, 200);
        timer_event(&mut bob, "alice", 0).await;
        alice.client.send("bob", "this one stays").await.unwrap();
        let stays = bob.message_from("alice", "this one stays").await;
        assert_eq!(stays.expires_at, None);
        let chats = request(server.http, "GET", "/v1/chats", None, Some(&bob_token)).json();
        assert_eq!(chats["items"][0]["timer_seconds"], 0);

        // Setting the same value again changes nothing and says so quietly.
        assert_eq!(set_timer(&server, &alice_token, "bob", 0).status, 200);
        for (seconds, peer, status) in [(3_600, "bob", 400), (-1, "bob", 400), (86_400, "nobody", 404)] {
            let refused = set_timer(&server, &alice_token, peer, seconds);
            assert_eq!(refused.status, status, "{seconds} {peer}: {}", refused.body);
            assert!(refused.json()["error"]["code"].is_string());
        }
        bob.settle(std::time::Duration::from_millis(300)).await;
        let timers: Vec<&AppEvent> = bob.seen.iter().filter(|e| matches!(e, AppEvent::Timer(_))).collect();
        assert_eq!(timers.len(), 2, "one event per change: {timers:?}");
    }

    async fn a_stranger_cannot_set_a_timer_on_a_chat_that_does_not_exist(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let bob_token = server.register("bob");
        let mallory_token = server.register("mallory");
        let mut bob = App::connect(&server, "bob", &bob_token, "phone", dir.path()).await;

        let refused = set_timer(&server, &mallory_token, "bob", 86_400);
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(refused.error_code(), "no_chat");
        assert_eq!(server.store().timers("mallory", &["bob"]).unwrap().get("bob"), None);

        // Once they have talked, either may set it.
        let mallory = App::connect(&server, "mallory", &mallory_token, "phone", dir.path()).await;
        mallory.client.send("bob", "hi bob").await.unwrap();
        bob.message_from("mallory", "hi bob").await;
        assert_eq!(set_timer(&server, &mallory_token, "bob", 86_400).status, 200);
        timer_event(&mut bob, "mallory", 86_400).await;
        bob.settle(std::time::Duration::from_millis(300)).await;
        let timers = bob.seen.iter().filter(|e| matches!(e, AppEvent::Timer(_))).count();
        assert_eq!(timers, 1, "the refused timer put nothing in Bob's inbox: {:?}", bob.seen);
    }
}
