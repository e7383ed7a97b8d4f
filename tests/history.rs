//! The HTTP read side, against a real server: stars (HTTP and MQTT, synced
//! to the user's other devices), the chat list, paged history while
//! messages keep arriving, word search over encrypted bodies, and the
//! OpenAPI document.

mod common;

use client::AppEvent;
use common::at_rest::assert_not_stored;
use common::chat::App;
use common::http::{page_ids, request, Response};
use common::mqtt::{self, TIMEOUT};
use common::{Backend, Server};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use store::on_both_backends;

fn get(server: &Server, path: &str, token: &str) -> Response {
    request(server.http, "GET", path, None, Some(token))
}

/// Sends over HTTP and returns the server message id.
fn send(server: &Server, token: &str, client_id: &str, to: &str, body: &str) -> i64 {
    let payload = json!({ "id": client_id, "to": to, "body": body }).to_string();
    let response = request(
        server.http,
        "POST",
        "/v1/messages",
        Some(&payload),
        Some(token),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()["id"].as_i64().unwrap()
}

fn star(server: &Server, token: &str, id: i64, starred: bool) -> Response {
    let method = if starred { "PUT" } else { "DELETE" };
    request(
        server.http,
        method,
        &format!("/v1/messages/{id}/star"),
        None,
        Some(token),
    )
}

/// Waits until `app` hears of a star change on message `id`.
async fn star_event(app: &mut App, id: i64, starred: bool) {
    app.wait_for("a star event", |event| match event {
        AppEvent::Star(star) if star.message_id == id && star.starred == starred => Some(()),
        _ => None,
    })
    .await;
}

on_both_backends! {
    async fn stars_are_per_user_paged_synced_and_private(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let first = send(&server, &alice, "m1", "bob", "first, to star");
        let second = send(&server, &bob, "m2", "alice", "second, a reply");
        let third = send(&server, &alice, "m3", "bob", "third");
        let mut laptop = App::connect(&server, "alice", &alice, "laptop", dir.path()).await;

        // Star over HTTP, twice: the same answer, one event.
        for _ in 0..2 {
            let starred = star(&server, &alice, first, true);
            assert_eq!(starred.status, 200, "{}", starred.body);
            assert_eq!(starred.json(), json!({ "message_id": first, "starred": true }));
        }
        star_event(&mut laptop, first, true).await;

        // Star over MQTT from another device.
        let mut phone = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice)))
            .await
            .expect_connected();
        phone.subscribe_ok("u/alice/inbox").await;
        phone
            .publish("u/alice/star", json!({ "id": second, "starred": true }).to_string())
            .await;
        star_event(&mut laptop, second, true).await;
        // And through the SDK.
        laptop.client.star(third, true).await.unwrap();
        star_event(&mut laptop, third, true).await;
        laptop.settle(Duration::from_millis(300)).await;
        let events = laptop
            .seen
            .iter()
            .filter(|e| matches!(e, AppEvent::Star(s) if s.message_id == first))
            .count();
        assert_eq!(events, 1, "starring twice is one change");

        // Newest message first, two per page.
        let page = get(&server, "/v1/stars?limit=2", &alice).json();
        assert_eq!(page_ids(&page, "/message/id"), [third, second]);
        let item = &page["items"][1];
        assert_eq!(item["peer"], "bob");
        assert_eq!(item["message"]["body"], "second, a reply");
        assert_eq!(item["message"]["from"], "bob");
        assert_eq!(item["message"]["starred"], true);
        assert!(item["starred_at"].as_i64().unwrap() > 0);
        let next = page["next"].as_i64().expect("a next page");
        let page = get(&server, &format!("/v1/stars?limit=2&before={next}"), &alice).json();
        assert_eq!(page_ids(&page, "/message/id"), [first]);
        assert_eq!(page["next"], Value::Null);

        // Unstar reaches the other device too, and is idempotent.
        assert_eq!(star(&server, &alice, third, false).status, 200);
        assert_eq!(star(&server, &alice, third, false).json()["starred"], false);
        star_event(&mut laptop, third, false).await;
        assert_eq!(page_ids(&get(&server, "/v1/stars", &alice).json(), "/message/id"), [second, first]);

        // Stars are the user's own: Bob sees none of Alice's, and may star too.
        assert_eq!(page_ids(&get(&server, "/v1/stars", &bob).json(), "/message/id"), Vec::<i64>::new());
        assert_eq!(star(&server, &bob, first, true).status, 200);
        assert_eq!(page_ids(&get(&server, "/v1/stars", &bob).json(), "/message/id"), [first]);

        // A non-participant gets the same 404 as for a message that does
        // not exist, over HTTP and over MQTT, and sees nothing of the chat.
        for id in [first, 999_999] {
            for starred in [true, false] {
                let refused = star(&server, &carol, id, starred);
                assert_eq!(refused.status, 404, "{}", refused.body);
                assert_eq!(refused.error_code(), "not_found");
                assert_eq!(refused.json()["error"]["message"], format!("no message {id}"));
            }
        }
        let mut intruder = mqtt::connect(server.mqtt, "carol", Some(("carol", &carol)))
            .await
            .expect_connected();
        intruder.subscribe_ok("u/carol/inbox").await;
        intruder
            .publish("u/carol/star", json!({ "id": first, "starred": true }).to_string())
            .await;
        let error = intruder.next_message(TIMEOUT).await.expect("an error event");
        let error: Value = serde_json::from_slice(&error.payload).unwrap();
        assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("not_found")));
        assert_eq!(page_ids(&get(&server, "/v1/stars", &carol).json(), "/message/id"), Vec::<i64>::new());
        let stranger = get(&server, "/v1/chats/alice/messages", &carol);
        assert_eq!((stranger.status, stranger.error_code().as_str()), (404, "not_found"), "carol has no chat with alice");
        let unknown = get(&server, "/v1/chats/nobody_here/messages", &carol);
        assert_eq!((unknown.status, unknown.error_code().as_str()), (404, "not_found"));
        assert_eq!(get(&server, "/v1/stars", "bt_not_a_token").status, 401);
    }

    async fn chat_list_and_history_show_each_side_its_own_view(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        server.register("carol");
        let hello = send(&server, &alice, "a1", "bob", "hello bob");
        let reply = send(&server, &bob, "b1", "alice", "hi alice");
        let to_carol = send(&server, &alice, "a2", "carol", "hello carol");
        let again = send(&server, &bob, "b2", "alice", "you there?");

        let chats = get(&server, "/v1/chats", &alice).json();
        let peers: Vec<&str> = chats["items"].as_array().unwrap().iter()
            .map(|c| c["peer"].as_str().unwrap()).collect();
        assert_eq!(peers, ["bob", "carol"], "newest conversation first");
        assert_eq!(chats["items"][0]["last_message"]["id"], again);
        assert_eq!(chats["items"][0]["unread"], 2);
        assert_eq!(chats["items"][1]["last_message"]["body"], "hello carol");
        assert_eq!(chats["items"][1]["unread"], 0);
        let first = get(&server, "/v1/chats?limit=1", &alice).json();
        assert_eq!(first["items"].as_array().unwrap().len(), 1);
        let rest = get(&server, &format!("/v1/chats?limit=1&before={}", first["next"]), &alice).json();
        assert_eq!(rest["items"][0]["peer"], "carol");
        assert_eq!(rest["next"], Value::Null);
        assert_eq!(to_carol, rest["items"][0]["last_message"]["id"].as_i64().unwrap());

        let history = get(&server, "/v1/chats/bob/messages", &alice).json();
        assert_eq!(page_ids(&history, "/id"), [again, reply, hello]);
        assert_eq!(history["items"][2]["body"], "hello bob");
        assert_eq!(history["items"][2]["client_id"], "a1");
        assert_eq!(history["items"][2]["from"], "alice");
        assert_eq!(history["items"][2].get("expires_at"), None, "no timer, no expires_at (not even null)");

        // Reading clears the unread count; the read shows to the sender
        // while both have read receipts on, and not once one turns them off.
        let bob_mqtt = mqtt::connect(server.mqtt, "bob", Some(("bob", &bob))).await.expect_connected();
        bob_mqtt.publish("u/bob/read", json!({ "peer": "alice", "up_to": hello }).to_string()).await;
        assert!(common::eventually(TIMEOUT, || {
            get(&server, "/v1/chats/alice/messages", &bob).json()["items"][2]["read_at"].is_i64()
        }).await, "Bob's read is stored");
        let sender_view = || get(&server, "/v1/chats/bob/messages", &alice).json()["items"][2].clone();
        assert!(sender_view()["read_at"].is_i64());
        let off = request(server.http, "PUT", "/v1/me/privacy", Some(r#"{"read_receipts":false}"#), Some(&bob));
        assert_eq!(off.status, 200, "{}", off.body);
        assert_eq!(sender_view()["read_at"], Value::Null);
        let bob_chats = get(&server, "/v1/chats", &bob).json();
        assert_eq!(bob_chats["items"][0]["unread"], 0, "Bob read up to the newest of Alice's");

        for bad in ["/v1/chats?limit=0", "/v1/chats?limit=201", "/v1/chats/bob/messages?before=x"] {
            let refused = get(&server, bad, &alice);
            assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
            assert!(refused.body.contains("\"code\""), "{bad}: {}", refused.body);
        }
    }

    async fn paging_ten_thousand_messages_while_more_arrive_has_no_gap_or_repeat(backend) {
        const STORED: usize = 10_000;
        const ARRIVING: usize = 1_000;
        // One raw publisher sends them all at once and never resends, so the
        // per-user send quota (a human-scale 50/s) is lifted for it.
        let server = Server::start_with(
            backend,
            common::Options::default()
                .env("BLUETICK_QUOTAS__SENDS_PER_SECOND", "1000000")
                .env("BLUETICK_QUOTAS__SEND_BURST", "1000000"),
        );
        let alice = server.register("alice");
        let bob = server.register("bob");
        let publisher = mqtt::connect(server.mqtt, "alice", Some(("alice", &alice))).await.expect_connected();
        for n in 0..STORED {
            let send = json!({ "id": format!("old-{n}"), "to": "bob", "body": format!("old {n}") });
            publisher.publish("u/alice/send", send.to_string()).await;
        }
        let newest_is = |client_id: &str| {
            let chats = get(&server, "/v1/chats", &bob).json();
            chats["items"][0]["last_message"]["client_id"] == client_id
        };
        assert!(common::eventually(Duration::from_secs(120), || newest_is(&format!("old-{}", STORED - 1))).await,
            "all {STORED} messages are stored");

        // More messages arrive, in order, while Bob pages back.
        let arriving = tokio::spawn(async move {
            for n in 0..ARRIVING {
                let send = json!({ "id": format!("new-{n}"), "to": "bob", "body": format!("new {n}") });
                publisher.publish("u/alice/send", send.to_string()).await;
                if n % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            publisher
        });
        let mut seen: Vec<(i64, String)> = Vec::new();
        let mut before: Option<i64> = None;
        let mut pages = 0;
        loop {
            let path = match before {
                Some(cursor) => format!("/v1/chats/alice/messages?limit=200&before={cursor}"),
                None => "/v1/chats/alice/messages?limit=200".to_owned(),
            };
            let page = get(&server, &path, &bob).json();
            pages += 1;
            for item in page["items"].as_array().unwrap() {
                seen.push((item["id"].as_i64().unwrap(), item["client_id"].as_str().unwrap().to_owned()));
            }
            match page["next"].as_i64() {
                Some(cursor) => before = Some(cursor),
                None => break,
            }
        }
        let publisher = arriving.await.unwrap();
        assert!(common::eventually(Duration::from_secs(60), || newest_is(&format!("new-{}", ARRIVING - 1))).await);
        drop(publisher);

        assert!(seen.windows(2).all(|w| w[0].0 > w[1].0), "ids strictly decrease: no repeat");
        let client_ids: HashSet<&str> = seen.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(client_ids.len(), seen.len(), "no message twice");
        for n in 0..STORED {
            assert!(client_ids.contains(format!("old-{n}").as_str()), "old-{n} is missing: a gap");
        }
        // Of the arriving ones, those stored before the first page was read
        // are in it, and they are the first ones sent: a prefix, no gap.
        let arrived = seen.len() - STORED;
        for n in 0..arrived {
            assert!(client_ids.contains(format!("new-{n}").as_str()), "new-{n} is missing");
        }
        eprintln!("paged {} messages in {pages} pages; {arrived} arrived before the first page", seen.len());
    }

    async fn search_finds_words_in_any_case_or_accent_and_only_the_callers(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let dave = server.register("dave");
        let cafe = send(&server, &alice, "a1", "bob", "Meet at the Café Zanzibarquux, near the École?");
        let closed = send(&server, &bob, "b1", "alice", "the CAFE is closed today");
        let unrelated = send(&server, &alice, "a2", "bob", "nothing to see");
        let with_carol = send(&server, &alice, "a3", "carol", "another cafe, Carol");
        let last = send(&server, &carol, "c1", "dave", "a secret cafe zanzibarquux");
        server.searchable(last).await;

        let search = |token: &str, query: &str| -> Vec<i64> {
            let response = get(&server, &format!("/v1/search?{query}"), token);
            assert_eq!(response.status, 200, "{query}: {}", response.body);
            page_ids(&response.json(), "/id")
        };
        assert_eq!(search(&alice, "q=cafe"), [with_carol, closed, cafe]);
        assert_eq!(search(&alice, "q=CAF%C3%89"), [with_carol, closed, cafe], "É finds e");
        assert_eq!(search(&alice, "q=%C3%A9cole+caf%C3%A9"), [cafe], "every word must match");
        assert_eq!(search(&alice, "q=zanzibarquux"), [cafe], "not Carol's message to Dave");
        assert_eq!(search(&alice, "q=cafe&peer=bob"), [closed, cafe]);
        assert_eq!(search(&alice, "q=cafe&peer=dave"), Vec::<i64>::new());
        assert_eq!(search(&alice, "q=see"), [unrelated]);
        assert_eq!(search(&alice, "q=caf"), Vec::<i64>::new(), "whole words only");
        assert_eq!(search(&bob, "q=Cafe"), [closed, cafe]);
        assert_eq!(search(&carol, "q=cafe").len(), 2, "Carol's own two");
        assert_eq!(search(&dave, "q=zanzibarquux").len(), 1);
        let page = get(&server, "/v1/search?q=cafe&limit=2", &alice).json();
        assert_eq!(page_ids(&page, "/id"), [with_carol, closed]);
        let rest = get(&server, &format!("/v1/search?q=cafe&limit=2&before={}", page["next"]), &alice).json();
        assert_eq!(page_ids(&rest, "/id"), [cafe]);
        assert_eq!(rest["items"][0]["body"], "Meet at the Café Zanzibarquux, near the École?");

        for bad in ["q=%21%3F", "q=", "limit=5"] {
            let refused = get(&server, &format!("/v1/search?{bad}"), &alice);
            assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
        }

        // The index holds no readable word, in any case or accent form.
        assert_not_stored(
            &server,
            &["Zanzibarquux", "zanzibarquux", "ZANZIBARQUUX", "Caf\u{e9}", "cafe", "CAFE", "cole"],
            "after indexing",
        );
    }

    async fn a_sent_message_becomes_searchable_once_the_indexer_catches_up(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let sent_at = std::time::Instant::now();
        let id = send(&server, &alice, "a1", "bob", "the numbat rendezvous");
        // The ✓ (the 201) comes before the index: search finds it soon after.
        let found = common::eventually(Duration::from_secs(60), || {
            page_ids(&get(&server, "/v1/search?q=numbat", &bob).json(), "/id") == [id]
        })
        .await;
        assert!(found, "Bob's search never found the message");
        eprintln!("searchable {:?} after the send", sent_at.elapsed());
        assert_eq!(page_ids(&get(&server, "/v1/search?q=rendezvous+numbat", &alice).json(), "/id"), [id]);
        assert!(common::eventually(Duration::from_secs(60), || {
            server.metric("bluetick_search_index_lag_messages") == 0.0
                && server.metric("bluetick_search_indexed_through") >= id as f64
        })
        .await, "operators see the indexer caught up");
        assert!(server.metric("bluetick_search_indexed_total") >= 1.0);
    }

    async fn messages_stored_but_not_yet_indexed_when_the_server_dies_are_found_after_a_restart(backend) {
        // A paused indexer stands for one that had not got to them yet.
        let paused = common::Options::default().env("BLUETICK_SEARCH__INDEXER_ENABLED", "false");
        let mut server = Server::start_with(backend, paused);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let first = send(&server, &alice, "a1", "bob", "a quokka at the Café");
        let second = send(&server, &bob, "b1", "alice", "QUOKKA selfie, please");
        let third = send(&server, &alice, "a2", "bob", "quokka café again");
        assert_eq!(page_ids(&get(&server, "/v1/search?q=quokka", &alice).json(), "/id"), Vec::<i64>::new(), "not indexed while paused");

        server.crash_and_restart_with(common::Options::default());
        server.searchable(third).await;
        assert_eq!(page_ids(&get(&server, "/v1/search?q=quokka", &alice).json(), "/id"), [third, second, first]);
        assert_eq!(page_ids(&get(&server, "/v1/search?q=cafe+quokka", &bob).json(), "/id"), [third, first]);
        // The restarted indexer resumed from its cursor: each message once.
        let terms: i64 = common::rows::indexed(&server, "message_id IN (SELECT id FROM messages)");
        let later = send(&server, &alice, "a3", "bob", "quokka");
        server.searchable(later).await;
        assert_eq!(common::rows::indexed(&server, &format!("message_id < {later}")), terms, "nothing indexed twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_valid_and_lists_every_route() {
    let server = Server::start(Backend::Sqlite);
    let response = request(server.http, "GET", "/v1/openapi.json", None, None);
    assert_eq!(response.status, 200);
    let document = response.json();
    let listed: HashSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    // Every route the server answers, as a client would call it.
    let routes = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/v1/openapi.json"),
        ("POST", "/v1/users"),
        ("POST", "/v1/tokens"),
        ("DELETE", "/v1/tokens/current"),
        ("POST", "/v1/messages"),
        ("PUT", "/v1/messages/{id}/star"),
        ("DELETE", "/v1/messages/{id}/star"),
        ("GET", "/v1/chats"),
        ("GET", "/v1/chats/{peer}/messages"),
        ("PUT", "/v1/chats/{peer}/timer"),
        ("GET", "/v1/stars"),
        ("GET", "/v1/search"),
        ("GET", "/v1/users/{name}/presence"),
        ("GET", "/v1/me/privacy"),
        ("PUT", "/v1/me/privacy"),
        ("PUT", "/v1/me/backup"),
        ("GET", "/v1/me/backup"),
        ("POST", "/v1/media"),
        ("GET", "/v1/media/config"),
        ("GET", "/v1/media/{id}"),
        ("GET", "/v1/media/{id}/thumbnail"),
        ("GET", "/v1/client-config"),
        ("POST", "/v1/groups"),
        ("GET", "/v1/groups"),
        ("GET", "/v1/groups/{id}"),
        ("PATCH", "/v1/groups/{id}"),
        ("PUT", "/v1/groups/{id}/members/{user}"),
        ("DELETE", "/v1/groups/{id}/members/{user}"),
        ("PUT", "/v1/groups/{id}/admins/{user}"),
        ("DELETE", "/v1/groups/{id}/admins/{user}"),
        ("PUT", "/v1/groups/{id}/timer"),
        ("GET", "/v1/groups/{id}/messages"),
        ("GET", "/v1/groups/{id}/messages/{message_id}/receipts"),
    ];
    for (method, path) in routes {
        assert!(
            listed.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    // ...and everything listed is served: no route answers the fallback's
    // "no such route".
    for (method, path) in &listed {
        let concrete = path
            .replace("{id}", "1")
            .replace("{peer}", "bob")
            .replace("{name}", "bob");
        let answer = request(server.http, method, &concrete, None, None);
        assert!(
            !answer.body.contains("no such route"),
            "{method} {path} is listed but not served"
        );
    }
    assert_eq!(listed.len(), routes.len(), "listed: {listed:?}");

    // The document validates against the OpenAPI specification.
    let file = server.data_dir.path().join("openapi.json");
    std::fs::write(&file, &response.body).unwrap();
    let validated = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run python3");
    assert!(
        validated.status.success(),
        "openapi-spec-validator (installed by scripts/test): {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
}
