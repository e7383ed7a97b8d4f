//! Group chats (issue 18) against a real server: creating and changing
//! groups over MQTT and HTTP, with every member seeing every change.

mod common;

use common::http::{self, Response};
use common::mqtt::{self, Client};
use common::{Options, Server};
use serde_json::{json, Value};
use std::time::Duration;
use store::on_both_backends;

/// `method path` with an optional JSON body, as `token`'s user.
fn call(server: &Server, method: &str, path: &str, body: Option<Value>, token: &str) -> Response {
    let body = body.map(|b| b.to_string());
    http::request(server.http, method, path, body.as_deref(), Some(token))
}

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
        let too_many = call(&server, "POST", "/v1/groups", Some(json!({"name": "Big", "members": ["bob", "carol", "dave"]})), &tokens[0]);
        assert_eq!((too_many.status, too_many.error_code()), (409, "group_full".to_owned()));
        let created = call(&server, "POST", "/v1/groups", Some(json!({"name": "Three", "members": ["bob", "carol"]})), &tokens[0]);
        assert_eq!(created.status, 201, "{}", created.body);
        let group = created.json()["id"].as_i64().unwrap();
        let fourth = call(&server, "PUT", &format!("/v1/groups/{group}/members/dave"), None, &tokens[0]);
        assert_eq!((fourth.status, fourth.error_code()), (409, "group_full".to_owned()));
        let mut alice = online(&server, "alice", &tokens[0]).await;
        alice.publish("u/alice/group", json!({"op": "add", "group": group, "user": "dave"}).to_string()).await;
        let refused = next(&mut alice, "error").await;
        assert_eq!(refused["code"], "group_full", "{refused}");
    }
}
