//! Group chats (issue 18) against a real server: creating and changing
//! groups over MQTT and HTTP, with every member seeing every change.

mod common;

use common::groups::{call, create_group};
use common::mqtt::{self, Client};
use common::{Options, Server};
use serde_json::{json, Value};
use std::time::Duration;
use store::on_both_backends;

/// `method path` with an optional JSON body, as `token`'s user.
/// `name`, online over MQTT and subscribed to their inbox.
async fn online(server: &Server, name: &str, token: &str) -> Client {
    let mut client = mqtt::connect(server.mqtt, name, Some((name, token)))
        .await
        .expect_connected();
    client.subscribe_ok(&format!("u/{name}/inbox")).await;
    client
}

/// The next inbox event, which must be of type `kind`.
async fn next(client: &mut Client, kind: &str) -> Value {
    let event = client.next_inbox_event().await;
    assert_eq!(event["type"], kind, "expected a {kind} event: {event}");
    event
}

/// Asserts that `event` is the group change `change` of `user`.
fn is_change(event: &Value, group: i64, change: &str, user: Option<&str>, by: Option<&str>) {
    assert_eq!(
        (&event["group"], &event["change"], &event["user"], &event["by"]),
        (&json!(group), &json!(change), &json!(user), &json!(by)),
        "{event}"
    );
}

/// The members of a GROUP as (user, admin), oldest first.
fn members(group: &Value) -> Vec<(String, bool)> {
    group["members"]
        .as_array()
        .unwrap_or_else(|| panic!("not a group: {group}"))
        .iter()
        .map(|m| (m["user"].as_str().unwrap().to_owned(), m["admin"].as_bool().unwrap()))
        .collect()
}

fn names(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(n, a)| (n.to_string(), *a)).collect()
}

/// Publishes a send of `body` to `group` as `user`.
async fn send(client: &Client, user: &str, group: i64, id: &str, body: &str) {
    let payload = json!({"id": id, "group": group, "body": body});
    client.publish(&format!("u/{user}/send"), payload.to_string()).await;
}

/// The inbox events of one type among `events`.
fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Acknowledges `user`'s inbox up to `seq` (device: the bare client id).
async fn ack(client: &Client, user: &str, seq: &Value) {
    let payload = json!({"up_to": seq, "device": ""});
    client.publish(&format!("u/{user}/ack"), payload.to_string()).await;
}

/// Events until `client` has been quiet a while.
async fn settle(client: &mut Client) -> Vec<Value> {
    client.inbox_events(Duration::from_millis(700)).await
}

on_both_backends! {
    async fn admins_manage_a_group_and_every_member_sees_each_change(backend) {
        let server = Server::start(backend);
        let tokens: Vec<String> = ["alice", "bob", "carol", "dave"].iter().map(|n| server.register(n)).collect();
        let (alice_t, bob_t, carol_t, dave_t) = (&tokens[0], &tokens[1], &tokens[2], &tokens[3]);
        let mut alice = online(&server, "alice", alice_t).await;
        let mut bob = online(&server, "bob", bob_t).await;
        let mut carol = online(&server, "carol", carol_t).await;
        let mut dave = online(&server, "dave", dave_t).await;

        // Created over MQTT: the creator and both members hear of it.
        let create = json!({"op": "create", "id": "c-1", "name": "  Climbing ", "members": ["bob", "carol", "bob"]});
        alice.publish("u/alice/group", create.to_string()).await;
        let created = next(&mut alice, "group").await;
        let group = created["group"].as_i64().expect("a group id");
        is_change(&created, group, "created", None, Some("alice"));
        assert_eq!((&created["name"], &created["members"], &created["client_id"]),
            (&json!("Climbing"), &json!(["alice", "bob", "carol"]), &json!("c-1")));
        assert!(created["seq"].as_i64().is_some(), "stored with a seq: {created}");
        for client in [&mut bob, &mut carol] {
            assert_eq!(next(client, "group").await["members"], json!(["alice", "bob", "carol"]));
        }

        // A plain member may not add.
        bob.publish("u/bob/group", json!({"op": "add", "group": group, "user": "dave"}).to_string()).await;
        let refused = next(&mut bob, "error").await;
        assert_eq!((&refused["on"], &refused["code"]), (&json!("group"), &json!("not_admin")), "{refused}");

        // Added over HTTP; the answer is the group after the change.
        let added = call(&server, "PUT", &format!("/v1/groups/{group}/members/dave"), None, alice_t);
        assert_eq!(added.status, 200, "{}", added.body);
        assert_eq!(members(&added.json()), names(&[("alice", true), ("bob", false), ("carol", false), ("dave", false)]));
        for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
            is_change(&next(client, "group").await, group, "added", Some("dave"), Some("alice"));
        }
        // Adding a member twice changes nothing and says nothing: the next
        // event anyone gets is the promotion.
        let again = call(&server, "PUT", &format!("/v1/groups/{group}/members/dave"), None, alice_t);
        assert_eq!(again.status, 200, "{}", again.body);
        alice.publish("u/alice/group", json!({"op": "promote", "group": group, "user": "bob"}).to_string()).await;
        for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
            is_change(&next(client, "group").await, group, "promoted", Some("bob"), Some("alice"));
        }

        let renamed = call(&server, "PATCH", &format!("/v1/groups/{group}"), Some(json!({"name": "Bouldering"})), alice_t);
        assert_eq!((renamed.status, &renamed.json()["name"]), (200, &json!("Bouldering")), "{}", renamed.body);
        for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
            let event = next(client, "group").await;
            is_change(&event, group, "renamed", None, Some("alice"));
            assert_eq!(event["name"], "Bouldering");
        }

        // Carol is removed: she hears it last of all, and then nothing.
        let removed = call(&server, "DELETE", &format!("/v1/groups/{group}/members/carol"), None, alice_t);
        assert_eq!(removed.status, 200, "{}", removed.body);
        for client in [&mut alice, &mut bob, &mut dave, &mut carol] {
            is_change(&next(client, "group").await, group, "removed", Some("carol"), Some("alice"));
        }
        let gone = call(&server, "GET", &format!("/v1/groups/{group}"), None, carol_t);
        assert_eq!((gone.status, gone.error_code().as_str()), (404, "not_a_member"));

        // Bob (admin) demotes alice, then leaves: as the last admin
        // leaves, the oldest remaining member is promoted by the server.
        bob.publish("u/bob/group", json!({"op": "demote", "group": group, "user": "alice"}).to_string()).await;
        for client in [&mut alice, &mut bob, &mut dave] {
            is_change(&next(client, "group").await, group, "demoted", Some("alice"), Some("bob"));
        }
        bob.publish("u/bob/group", json!({"op": "leave", "group": group}).to_string()).await;
        for client in [&mut alice, &mut dave, &mut bob] {
            is_change(&next(client, "group").await, group, "left", Some("bob"), Some("bob"));
        }
        for client in [&mut alice, &mut dave] {
            is_change(&next(client, "group").await, group, "promoted", Some("alice"), None);
        }
        let now = call(&server, "GET", &format!("/v1/groups/{group}"), None, dave_t);
        assert_eq!(now.status, 200, "{}", now.body);
        assert_eq!(members(&now.json()), names(&[("alice", true), ("dave", false)]));
        assert_eq!(now.json()["name"], "Bouldering");
        let listed = call(&server, "GET", "/v1/groups", None, dave_t).json();
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
        let none = call(&server, "GET", "/v1/groups", None, bob_t).json();
        assert_eq!(none["items"], json!([]), "bob left");

        // Nobody got anything they should not have.
        for client in [&mut bob, &mut carol] {
            let extra = client.inbox_events(Duration::from_millis(300)).await;
            assert!(extra.is_empty(), "after leaving: {extra:?}");
        }
    }

    async fn a_resent_create_makes_one_group(backend) {
        let server = Server::start(backend);
        let (alice_t, _) = (server.register("alice"), server.register("bob"));
        let mut alice = online(&server, "alice", &alice_t).await;
        let create = json!({"op": "create", "id": "same", "name": "Once", "members": ["bob"]}).to_string();
        alice.publish("u/alice/group", create.clone()).await;
        let first = next(&mut alice, "group").await;
        alice.publish("u/alice/group", create).await;
        let over_http = call(&server, "POST", "/v1/groups", Some(json!({"id": "same", "name": "Once", "members": ["bob"]})), &alice_t);
        assert_eq!(over_http.status, 201, "{}", over_http.body);
        assert_eq!(over_http.json()["id"], first["group"]);
        let extra = alice.inbox_events(Duration::from_millis(300)).await;
        assert!(extra.is_empty(), "no second created event: {extra:?}");
        let listed = call(&server, "GET", "/v1/groups", None, &alice_t).json();
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
    }

    async fn strangers_cannot_see_or_change_a_group_and_cannot_tell_it_exists(backend) {
        let server = Server::start(backend);
        let (alice_t, mallory_t) = (server.register("alice"), server.register("mallory"));
        let created = call(&server, "POST", "/v1/groups", Some(json!({"name": "Private"})), &alice_t);
        assert_eq!(created.status, 201, "{}", created.body);
        let group = created.json()["id"].as_i64().unwrap();
        for (method, path, body) in [
            ("GET", format!("/v1/groups/{group}"), None),
            ("GET", format!("/v1/groups/{}", group + 1000), None),
            ("GET", "/v1/groups/nonsense".to_owned(), None),
            ("PATCH", format!("/v1/groups/{group}"), Some(json!({"name": "Mine"}))),
            ("PUT", format!("/v1/groups/{group}/members/mallory"), None),
            ("PUT", format!("/v1/groups/{}/members/mallory", group + 1000), None),
        ] {
            let answer = call(&server, method, &path, body, &mallory_t);
            assert_eq!((answer.status, answer.error_code()), (404, "not_a_member".to_owned()), "{method} {path}");
        }
        let mut mallory = online(&server, "mallory", &mallory_t).await;
        mallory.publish("u/mallory/group", json!({"op": "leave", "group": group}).to_string()).await;
        let refused = next(&mut mallory, "error").await;
        assert_eq!((&refused["on"], &refused["code"]), (&json!("group"), &json!("not_a_member")), "{refused}");
        // Bad input gets its own answers.
        let blank = call(&server, "POST", "/v1/groups", Some(json!({"name": "   "})), &alice_t);
        assert_eq!((blank.status, blank.error_code()), (400, "bad_request".to_owned()));
        let unknown = call(&server, "POST", "/v1/groups", Some(json!({"name": "X", "members": ["nobody"]})), &alice_t);
        assert_eq!((unknown.status, unknown.error_code()), (404, "unknown_recipient".to_owned()));
        let timer = call(&server, "PUT", &format!("/v1/groups/{group}/timer"), Some(json!({"seconds": 5})), &alice_t);
        assert_eq!((timer.status, timer.error_code()), (400, "bad_request".to_owned()));
        let timer = call(&server, "PUT", &format!("/v1/groups/{group}/timer"), Some(json!({"seconds": 86400})), &alice_t);
        assert_eq!((timer.status, &timer.json()["timer_seconds"]), (200, &json!(86400)), "{}", timer.body);
    }

    async fn a_group_never_grows_past_its_member_limit(backend) {
        let options = Options::default().env("BLUETICK_GROUPS__MAX_MEMBERS", "3");
        let server = Server::start_with(backend, options);
        let tokens: Vec<String> = ["alice", "bob", "carol", "dave"].iter().map(|n| server.register(n)).collect();
        let mut alice = online(&server, "alice", &tokens[0]).await;
        let too_many = call(&server, "POST", "/v1/groups", Some(json!({"name": "Big", "members": ["bob", "carol", "dave"]})), &tokens[0]);
        assert_eq!((too_many.status, too_many.error_code()), (409, "group_full".to_owned()));
        let created = call(&server, "POST", "/v1/groups", Some(json!({"name": "Three", "members": ["bob", "carol"]})), &tokens[0]);
        assert_eq!(created.status, 201, "{}", created.body);
        let group = created.json()["id"].as_i64().unwrap();
        let fourth = call(&server, "PUT", &format!("/v1/groups/{group}/members/dave"), None, &tokens[0]);
        assert_eq!((fourth.status, fourth.error_code()), (409, "group_full".to_owned()));
        // Refusals over HTTP are in the caller's inbox too, as over MQTT.
        assert_eq!(next(&mut alice, "error").await["code"], "group_full");
        assert_eq!(next(&mut alice, "group").await["change"], "created");
        assert_eq!(next(&mut alice, "error").await["code"], "group_full");
        alice.publish("u/alice/group", json!({"op": "add", "group": group, "user": "dave"}).to_string()).await;
        let refused = next(&mut alice, "error").await;
        assert_eq!(refused["code"], "group_full", "{refused}");

        // An operator replaying that dead letter runs it under the same
        // limit: it is refused again, and dave stays out.
        let listed = server.operator(&["dlq", "list"]);
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let letter = listed
            .lines()
            .find(|line| line.contains("u/alice/group") && line.contains("\"dave\""))
            .and_then(|line| line.split('\t').next())
            .unwrap_or_else(|| panic!("the refused add is a dead letter: {listed}"))
            .to_owned();
        let replayed = server.operator(&["dlq", "replay", &letter]);
        let replayed = String::from_utf8_lossy(&replayed.stdout).into_owned();
        assert!(replayed.contains("refused again (group_full"), "{replayed}");
        let now = call(&server, "GET", &format!("/v1/groups/{group}"), None, &tokens[0]).json();
        assert_eq!(members(&now).len(), 3, "{now}");
    }

    async fn a_group_message_reaches_every_member_once_in_order_even_one_who_was_offline(backend) {
        let server = Server::start(backend);
        let people = ["alice", "bob", "carol", "dave", "erin"];
        let tokens: Vec<String> = people.iter().map(|n| server.register(n)).collect();
        let group = create_group(&server, &tokens[0], "Crew", &people[1..]);
        // Erin is offline throughout; the others are online.
        let mut online_members = Vec::new();
        for (name, token) in people.iter().zip(&tokens).take(4) {
            online_members.push((*name, online(&server, name, token).await));
        }
        let sends = [("alice", "a1"), ("bob", "b1"), ("alice", "a2"), ("carol", "c1"), ("alice", "a3"), ("bob", "b2")];
        for (from, body) in sends {
            let client = &online_members.iter().find(|(n, _)| *n == from).unwrap().1;
            send(client, from, group, &format!("{from}-{body}"), body).await;
        }
        let mut ids: std::collections::HashMap<String, i64> = Default::default();
        let mut seen_by: Vec<(&str, Vec<(String, String, i64)>)> = Vec::new();
        for (name, client) in &mut online_members {
            let mut events = Vec::new();
            // Every member's stream: its own acks and the others' messages.
            let own = sends.iter().filter(|(f, _)| f == name).count();
            let expected = sends.len() - own;
            while of_type(&events, "message").len() < expected || of_type(&events, "ack").len() < own {
                events.push(client.next_inbox_event().await);
            }
            events.extend(settle(client).await);
            for ack in of_type(&events, "ack") {
                assert_eq!(ack["group"], group, "{ack}");
                assert!(ack.get("to").is_none(), "no `to` on a group ack: {ack}");
                ids.insert(ack["body"].as_str().unwrap().to_owned(), ack["id"].as_i64().unwrap());
            }
            let messages: Vec<(String, String, i64)> = of_type(&events, "message")
                .iter()
                .map(|m| {
                    assert_eq!(m["group"], group, "{m}");
                    assert!(m.get("to").is_none(), "no `to` on a group message: {m}");
                    (m["from"].as_str().unwrap().to_owned(), m["body"].as_str().unwrap().to_owned(), m["id"].as_i64().unwrap())
                })
                .collect();
            assert_eq!(messages.len(), expected, "{name} got each message once: {messages:?}");
            seen_by.push((name, messages));
        }
        // Everyone saw the others' messages in the one order they were
        // stored, each sender's in the order sent.
        let mut order: Vec<(&str, &str)> = sends.to_vec();
        order.sort_by_key(|(_, body)| ids[*body]);
        for (from, _) in ["alice", "bob"].iter().map(|f| (*f, ())) {
            let bodies: Vec<&str> = order.iter().filter(|(f, _)| *f == from).map(|(_, b)| *b).collect();
            let sent: Vec<&str> = sends.iter().filter(|(f, _)| *f == from).map(|(_, b)| *b).collect();
            assert_eq!(bodies, sent, "{from}'s messages keep their order");
        }
        for (name, messages) in &seen_by {
            let expected: Vec<(String, String, i64)> = order
                .iter()
                .filter(|(f, _)| f != name)
                .map(|(f, b)| (f.to_string(), b.to_string(), ids[*b]))
                .collect();
            assert_eq!(messages, &expected, "{name}'s stream");
        }
        // Erin syncs later and gets the created event, then every message once.
        let mut erin = online(&server, "erin", &tokens[4]).await;
        erin.publish("u/erin/sync", json!({"after": 0}).to_string()).await;
        let mut events = Vec::new();
        loop {
            let event = erin.next_inbox_event().await;
            if event["type"] == "synced" {
                break;
            }
            events.push(event);
        }
        assert_eq!(events[0]["change"], "created", "{events:?}");
        let got: Vec<(String, String, i64)> = of_type(&events, "message")
            .iter()
            .map(|m| (m["from"].as_str().unwrap().to_owned(), m["body"].as_str().unwrap().to_owned(), m["id"].as_i64().unwrap()))
            .collect();
        let all: Vec<(String, String, i64)> = order.iter().map(|(f, b)| (f.to_string(), b.to_string(), ids[*b])).collect();
        assert_eq!(got, all, "erin's sync");
        // Stored once: one row per message, not one per member.
        let rows = common::rows::count(&server, &format!("messages WHERE recipient = '#{group}'"));
        assert_eq!(rows, sends.len() as i64);
    }

    async fn the_sender_hears_delivered_and_read_by_all_only_after_the_last_member(backend) {
        let server = Server::start(backend);
        let people = ["alice", "bob", "carol"];
        let tokens: Vec<String> = people.iter().map(|n| server.register(n)).collect();
        let mut alice = online(&server, "alice", &tokens[0]).await;
        let mut bob = online(&server, "bob", &tokens[1]).await;
        let mut carol = online(&server, "carol", &tokens[2]).await;
        let group = create_group(&server, &tokens[0], "Crew", &people[1..]);
        for client in [&mut alice, &mut bob, &mut carol] {
            assert_eq!(next(client, "group").await["change"], "created");
        }
        send(&alice, "alice", group, "m1", "who is in?").await;
        let id = next(&mut alice, "ack").await["id"].clone();
        let for_bob = next(&mut bob, "message").await;
        let for_carol = next(&mut carol, "message").await;

        // Bob's device stores it: not yet delivered to all.
        ack(&bob, "bob", &for_bob["seq"]).await;
        let early = settle(&mut alice).await;
        assert!(of_type(&early, "receipt").is_empty(), "no receipt before the last member: {early:?}");
        ack(&carol, "carol", &for_carol["seq"]).await;
        let delivered = next(&mut alice, "receipt").await;
        assert_eq!((&delivered["status"], &delivered["group"], &delivered["up_to"]), (&json!("delivered"), &json!(group), &id), "{delivered}");
        assert!(delivered.get("peer").is_none(), "an aggregate names no peer: {delivered}");

        // Read: by bob, then by carol.
        bob.publish("u/bob/read", json!({"group": group, "up_to": id}).to_string()).await;
        let early = settle(&mut alice).await;
        assert!(of_type(&early, "receipt").is_empty(), "no read receipt before the last reader: {early:?}");
        carol.publish("u/carol/read", json!({"group": group, "up_to": id}).to_string()).await;
        let read = next(&mut alice, "receipt").await;
        assert_eq!((&read["status"], &read["group"], &read["up_to"]), (&json!("read"), &json!(group), &id), "{read}");

        // A member removed before acking no longer holds a message back.
        send(&alice, "alice", group, "m2", "still there?").await;
        let second = next(&mut alice, "ack").await["id"].clone();
        let for_bob = next(&mut bob, "message").await;
        ack(&bob, "bob", &for_bob["seq"]).await;
        let early = settle(&mut alice).await;
        assert!(of_type(&early, "receipt").is_empty(), "carol has not acked: {early:?}");
        let removed = call(&server, "DELETE", &format!("/v1/groups/{group}/members/carol"), None, &tokens[0]);
        assert_eq!(removed.status, 200, "{}", removed.body);
        let events = settle(&mut alice).await;
        let receipts = of_type(&events, "receipt");
        assert_eq!(receipts.len(), 1, "{events:?}");
        assert_eq!((&receipts[0]["status"], &receipts[0]["up_to"]), (&json!("delivered"), &second));
    }

    async fn a_non_member_cannot_send_and_a_removed_member_receives_nothing_more(backend) {
        let server = Server::start(backend);
        let people = ["alice", "bob", "carol", "mallory"];
        let tokens: Vec<String> = people.iter().map(|n| server.register(n)).collect();
        let mut alice = online(&server, "alice", &tokens[0]).await;
        let mut bob = online(&server, "bob", &tokens[1]).await;
        let mut carol = online(&server, "carol", &tokens[2]).await;
        let mut mallory = online(&server, "mallory", &tokens[3]).await;
        let group = create_group(&server, &tokens[0], "Crew", &["bob", "carol"]);
        for client in [&mut alice, &mut bob, &mut carol] {
            assert_eq!(next(client, "group").await["change"], "created");
        }

        send(&mallory, "mallory", group, "x1", "let me in").await;
        let refused = next(&mut mallory, "error").await;
        assert_eq!((&refused["code"], &refused["on"], &refused["client_id"]), (&json!("not_a_member"), &json!("send"), &json!("x1")), "{refused}");
        send(&mallory, "mallory", group + 1000, "x2", "or here").await;
        assert_eq!(next(&mut mallory, "error").await["code"], "not_a_member");
        let over_http = call(&server, "POST", "/v1/messages", Some(json!({"id": "x3", "group": group, "body": "hi"})), &tokens[3]);
        assert_eq!((over_http.status, over_http.error_code()), (404, "not_a_member".to_owned()));
        let both = call(&server, "POST", "/v1/messages", Some(json!({"id": "x4", "group": group, "to": "bob", "body": "hi"})), &tokens[0]);
        assert_eq!((both.status, both.error_code()), (400, "malformed_json".to_owned()));
        assert_eq!(common::rows::count(&server, &format!("messages WHERE recipient = '#{group}'")), 0);

        let removed = call(&server, "DELETE", &format!("/v1/groups/{group}/members/carol"), None, &tokens[0]);
        assert_eq!(removed.status, 200, "{}", removed.body);
        assert_eq!(next(&mut carol, "group").await["change"], "removed");
        send(&alice, "alice", group, "after", "carol is gone").await;
        assert_eq!(next(&mut bob, "group").await["change"], "removed");
        assert_eq!(next(&mut bob, "message").await["body"], "carol is gone");
        let late = settle(&mut carol).await;
        assert!(late.is_empty(), "a removed member receives nothing: {late:?}");
        // Nor can she send any more.
        send(&carol, "carol", group, "c9", "hello?").await;
        assert_eq!(next(&mut carol, "error").await["code"], "not_a_member");
        // A member sends over HTTP too.
        let sent = call(&server, "POST", "/v1/messages", Some(json!({"id": "h1", "group": group, "body": "over http"})), &tokens[0]);
        assert_eq!((sent.status, &sent.json()["group"]), (201, &json!(group)), "{}", sent.body);
        assert_eq!(next(&mut bob, "message").await["body"], "over http");
    }

    async fn a_group_of_1024_members_works_and_the_1025th_is_refused(backend) {
        let server = Server::start(backend);
        let alice_t = server.register("alice");
        let names: Vec<String> = (0..1024).map(|i| format!("m{i:04}")).collect();
        server
            .store()
            .create_users_with_tokens(&names, "member password", Duration::from_secs(3600))
            .expect("bulk users");
        let members: Vec<&str> = names[..1023].iter().map(String::as_str).collect();
        let mut alice = online(&server, "alice", &alice_t).await;
        let group = create_group(&server, &alice_t, "Crew", &members);
        assert_eq!(next(&mut alice, "group").await["change"], "created");
        let full = call(&server, "GET", &format!("/v1/groups/{group}"), None, &alice_t).json();
        assert_eq!(full["members"].as_array().map(Vec::len), Some(1024));
        let one_more = call(&server, "PUT", &format!("/v1/groups/{group}/members/{}", names[1023]), None, &alice_t);
        assert_eq!((one_more.status, one_more.error_code()), (409, "group_full".to_owned()));
        assert_eq!(next(&mut alice, "error").await["code"], "group_full");

        let started = std::time::Instant::now();
        send(&alice, "alice", group, "big-1", "hello everyone").await;
        let ack = next(&mut alice, "ack").await;
        eprintln!("a send to 1,024 members: ✓ after {:?}", started.elapsed());
        let id = ack["id"].as_i64().unwrap();
        // One message row, and one inbox row for each of the 1,023 others.
        assert_eq!(common::rows::count(&server, &format!("messages WHERE recipient = '#{group}'")), 1);
        assert_eq!(common::rows::count(&server, &format!("inbox WHERE message_id = {id} AND kind = 'message'")), 1023);
        // The last member reads it after a sync.
        let last = &names[1022];
        let token = server.login(last, "member password");
        let mut member = online(&server, last, &token).await;
        member.publish(&format!("u/{last}/sync"), json!({"after": 0}).to_string()).await;
        assert_eq!(next(&mut member, "group").await["change"], "created");
        let message = next(&mut member, "message").await;
        assert_eq!((&message["id"], &message["from"], &message["body"]), (&json!(id), &json!("alice"), &json!("hello everyone")));
    }

    async fn typing_in_a_group_reaches_its_online_members_and_never_a_stranger(backend) {
        let server = Server::start(backend);
        let people = ["alice", "bob", "carol", "mallory"];
        let tokens: Vec<String> = people.iter().map(|n| server.register(n)).collect();
        let group = create_group(&server, &tokens[0], "Crew", &["bob", "carol"]);
        let alice = online(&server, "alice", &tokens[0]).await;
        let mallory = online(&server, "mallory", &tokens[3]).await;
        let mut watchers = Vec::new();
        for (name, token) in [("bob", &tokens[1]), ("carol", &tokens[2])] {
            let mut client = mqtt::connect(server.mqtt, &format!("{name}.phone"), Some((name, token))).await.expect_connected();
            client.subscribe_ok(&format!("u/{name}/live")).await;
            watchers.push((name, client));
        }
        let store = server.store();
        assert!(common::eventually(mqtt::TIMEOUT, || store.is_online("bob").unwrap() && store.is_online("carol").unwrap()).await);
        // A stranger's typing reaches no one.
        let typing = json!({"group": group, "state": "typing"}).to_string();
        mallory.client.publish("u/mallory/typing", rumqttc::QoS::AtMostOnce, false, typing.clone()).await.unwrap();
        for (name, client) in &mut watchers {
            assert!(client.next_message(Duration::from_millis(500)).await.is_none(), "{name} heard a stranger");
        }
        // Typing is best effort: alice types until each member has heard it.
        for (name, client) in &mut watchers {
            let heard = loop {
                alice.client.publish("u/alice/typing", rumqttc::QoS::AtMostOnce, false, typing.clone()).await.unwrap();
                if let Some(publish) = client.next_message(Duration::from_millis(300)).await {
                    break publish;
                }
            };
            assert_eq!(heard.topic, format!("u/{name}/live"));
            let event: Value = serde_json::from_slice(&heard.payload).unwrap();
            assert_eq!(event, json!({"type": "typing", "from": "alice", "group": group, "state": "typing"}));
        }
        assert!(server.metric(r#"bluetick_typing_dropped_total{reason="not_a_member"}"#) >= 1.0);
    }

    async fn read_by_all_leaves_out_members_who_hide_read_receipts_and_senders_who_hide_theirs(backend) {
        let server = Server::start(backend);
        let people = ["alice", "bob", "carol"];
        let tokens: Vec<String> = people.iter().map(|n| server.register(n)).collect();
        let mut clients = Vec::new();
        for (name, token) in people.iter().zip(&tokens) {
            clients.push(online(&server, name, token).await);
        }
        let group = create_group(&server, &tokens[0], "Crew", &people[1..]);
        for client in &mut clients {
            assert_eq!(next(client, "group").await["change"], "created");
        }
        let private = call(&server, "PUT", "/v1/me/privacy", Some(json!({"read_receipts": false})), &tokens[2]);
        assert_eq!(private.status, 200, "{}", private.body);
        let [alice, bob, carol] = &mut clients[..] else { unreachable!() };

        send(alice, "alice", group, "p1", "read me").await;
        let id = next(alice, "ack").await["id"].clone();
        for (name, client) in [("bob", &mut *bob), ("carol", &mut *carol)] {
            let message = next(client, "message").await;
            ack(client, name, &message["seq"]).await;
        }
        assert_eq!(next(alice, "receipt").await["status"], "delivered");
        // Carol hides read receipts: bob's read alone is "read by all".
        bob.publish("u/bob/read", json!({"group": group, "up_to": id}).to_string()).await;
        let read = next(alice, "receipt").await;
        assert_eq!((&read["status"], &read["up_to"]), (&json!("read"), &id), "{read}");

        // Now alice hides hers: she gets delivered receipts, never read ones.
        let private = call(&server, "PUT", "/v1/me/privacy", Some(json!({"read_receipts": false})), &tokens[0]);
        assert_eq!(private.status, 200, "{}", private.body);
        send(alice, "alice", group, "p2", "and me").await;
        let second = next(alice, "ack").await["id"].clone();
        for (name, client) in [("bob", &mut *bob), ("carol", &mut *carol)] {
            let message = next(client, "message").await;
            ack(client, name, &message["seq"]).await;
            client.publish(&format!("u/{name}/read"), json!({"group": group, "up_to": second}).to_string()).await;
        }
        assert_eq!(next(alice, "receipt").await["status"], "delivered");
        let late = settle(alice).await;
        assert!(of_type(&late, "receipt").is_empty(), "no read receipt for a sender who hides hers: {late:?}");
    }
}
