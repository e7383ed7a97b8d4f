//! Reading groups, against a real server: history inside each member's
//! membership windows with changes as system entries, the sender's
//! per-member receipts, groups in the chat list, search, media, stars,
//! export, archival, expiry, and backup and restore (issue 18).

mod common;

use common::chat::App;
use common::groups::{call, create_group};
use common::http::{page_ids, Response};
use common::jobs::{newest_backup, operator_ok};
use common::mqtt;
use common::rows::count;
use common::{eventually, run_job, Server};
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;
use store::on_both_backends;

const DAY: i64 = 86_400;

fn get_ok(server: &Server, path: &str, token: &str) -> Value {
    let response = call(server, "GET", path, None, token);
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    response.json()
}

/// Sends to a group over HTTP; the server message id.
fn send_group(server: &Server, token: &str, client_id: &str, group: i64, body: &str) -> i64 {
    send_group_json(server, token, json!({ "id": client_id, "group": group, "body": body }))
}

fn send_group_json(server: &Server, token: &str, message: Value) -> i64 {
    let sent = call(server, "POST", "/v1/messages", Some(message.clone()), token);
    assert_eq!(sent.status, 201, "send {message}: {}", sent.body);
    sent.json()["id"].as_i64().expect("message id")
}

/// Adds (`PUT`) or removes (`DELETE`) a member.
fn membership(server: &Server, token: &str, method: &str, group: i64, user: &str) {
    let path = format!("/v1/groups/{group}/members/{user}");
    let changed = call(server, method, &path, None, token);
    assert_eq!(changed.status, 200, "{method} {path}: {}", changed.body);
}

fn history(server: &Server, token: &str, group: i64, query: &str) -> Response {
    call(server, "GET", &format!("/v1/groups/{group}/messages{query}"), None, token)
}

/// A history page as a list of `m:ID` for messages and `CHANGE:USER` for
/// system entries, newest first: what a client would render.
fn rendered(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|item| match item["id"].as_i64() {
            Some(id) => format!("m:{id}"),
            None => format!(
                "{}:{}",
                item["change"].as_str().expect("a change"),
                item["user"].as_str().unwrap_or("-")
            ),
        })
        .collect()
}

fn m(id: i64) -> String {
    format!("m:{id}")
}

/// Connects `user.device`, syncs its inbox from the start and reads it
/// until an event matches `wanted`: the client and the events read.
async fn synced(
    server: &Server,
    user: &str,
    token: &str,
    device: &str,
    wanted: impl Fn(&Value) -> bool,
) -> (mqtt::Client, Vec<Value>) {
    let mut client = mqtt::connect(server.mqtt, &format!("{user}.{device}"), Some((user, token))).await.expect_connected();
    client.subscribe_ok(&format!("u/{user}/inbox")).await;
    client.publish(&format!("u/{user}/sync"), json!({ "after": 0 }).to_string()).await;
    let mut events = Vec::new();
    loop {
        // Fails the test if the event does not come in time.
        let event = client.next_inbox_event().await;
        let found = wanted(&event);
        events.push(event);
        if found {
            return (client, events);
        }
    }
}

/// A small PNG, different for each `seed`.
fn png(seed: u8) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, seed]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut bytes, image::ImageFormat::Png).expect("encode a PNG");
    bytes.into_inner()
}

/// Searches as `token`'s owner; the ids found.
fn search(server: &Server, token: &str, query: &str) -> Vec<i64> {
    page_ids(&get_ok(server, &format!("/v1/search?{query}"), token), "/id")
}

on_both_backends! {
    async fn group_history_shows_each_member_only_their_membership_windows(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let dave = server.register("dave");
        let eve = server.register("eve");
        let group = create_group(&server, &alice, "Team", &["bob", "carol"]);
        let first = send_group(&server, &alice, "a-1", group, "hello team");
        membership(&server, &alice, "DELETE", group, "carol");
        let second = send_group(&server, &bob, "b-1", group, "carol has gone");
        membership(&server, &alice, "PUT", group, "dave");
        let third = send_group(&server, &alice, "a-2", group, "welcome dave");

        // Bob was there throughout: every message, every change, in order.
        let everything = [m(third), "added:dave".into(), m(second), "removed:carol".into(), m(first), "created:-".into()];
        let page = history(&server, &bob, group, "").json();
        assert_eq!(rendered(&page), everything);
        assert_eq!(page["next"], Value::Null);
        let message = &page["items"][0];
        assert_eq!((message["group"].as_i64(), message["from"].as_str(), message["body"].as_str()), (Some(group), Some("alice"), Some("welcome dave")));
        assert!(message.get("to").is_none(), "a group message has no `to`: {message}");
        let change = &page["items"][1];
        assert_eq!((change["type"].as_str(), change["group"].as_i64(), change["by"].as_str()), (Some("group"), Some(group), Some("alice")));

        // Paged one message at a time, the same items, none twice.
        let mut paged = Vec::new();
        let mut query = "?limit=1".to_owned();
        loop {
            let page = history(&server, &bob, group, &query).json();
            paged.extend(rendered(&page));
            match page["next"].as_i64() {
                Some(next) => query = format!("?limit=1&before={next}"),
                None => break,
            }
        }
        assert_eq!(paged, everything);

        // Carol keeps the history up to her removal, nothing after.
        assert_eq!(rendered(&history(&server, &carol, group, "").json()), ["removed:carol".to_owned(), m(first), "created:-".into()]);
        // Dave sees from joining.
        assert_eq!(rendered(&history(&server, &dave, group, "").json()), [m(third), "added:dave".into()]);

        // A stranger cannot tell the group from one that does not exist.
        let stranger = history(&server, &eve, group, "");
        let missing = history(&server, &eve, group + 1000, "");
        assert_eq!((stranger.status, missing.status), (404, 404));
        assert_eq!(stranger.body, missing.body);
        assert_eq!(history(&server, &eve, group, "").error_code(), "not_a_member");
        assert_eq!(call(&server, "GET", "/v1/groups/x/messages", None, &eve).status, 404);
        assert_eq!(history(&server, &bob, group, "?limit=0").status, 400);
    }

    async fn the_sender_sees_delivered_and_read_by_all_with_each_members_times(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let off = call(&server, "PUT", "/v1/me/privacy", Some(json!({ "read_receipts": false })), &carol);
        assert_eq!(off.status, 200, "{}", off.body);
        let group = create_group(&server, &alice, "Team", &["bob", "carol"]);
        let sent = send_group(&server, &alice, "a-1", group, "who has it?");
        let receipts_path = format!("/v1/groups/{group}/messages/{sent}/receipts");
        let detail = get_ok(&server, &receipts_path, &alice);
        assert_eq!(detail, json!({ "items": [
            { "user": "bob", "delivered_at": null, "read_at": null },
            { "user": "carol", "delivered_at": null, "read_at": null },
        ] }));
        let own = |server: &Server| history(server, &alice, group, "").json()["items"][0].clone();
        assert_eq!((own(&server)["delivered_at"].clone(), own(&server)["read_at"].clone()), (Value::Null, Value::Null));

        // Bob's device stores it: delivered to Bob, not yet to all.
        let mut bob_phone = App::connect(&server, "bob", &bob, "phone", dir.path()).await;
        bob_phone.wait_for("the group message", |e| match e {
            client::AppEvent::Message(m) if m.id == sent => Some(()),
            _ => None,
        }).await;
        assert!(eventually(Duration::from_secs(30), || {
            get_ok(&server, &receipts_path, &alice)["items"][0]["delivered_at"].is_i64()
        }).await, "Bob's delivery shows in the detail");
        assert!(own(&server)["delivered_at"].is_null(), "Carol has not got it yet");

        // Carol's too: now delivered to all.
        let (carol_phone, events) = synced(&server, "carol", &carol, "phone", |e| e["type"] == "message" && e["id"].as_i64() == Some(sent)).await;
        let last = events.last().and_then(|e| e["seq"].as_i64()).expect("the message's seq");
        carol_phone.publish("u/carol/ack", json!({ "up_to": last, "device": "phone" }).to_string()).await;
        assert!(eventually(Duration::from_secs(30), || own(&server)["delivered_at"].is_i64()).await, "delivered to all");

        // Both read; Carol's read stays private, and the aggregate does not
        // wait for her.
        let bob_reader = mqtt::connect(server.mqtt, "bob.reader", Some(("bob", &bob))).await.expect_connected();
        bob_reader.publish("u/bob/read", json!({ "group": group, "up_to": sent }).to_string()).await;
        carol_phone.publish("u/carol/read", json!({ "group": group, "up_to": sent }).to_string()).await;
        assert!(eventually(Duration::from_secs(30), || own(&server)["read_at"].is_i64()).await, "read by all");
        let detail = get_ok(&server, &receipts_path, &alice);
        let items = detail["items"].as_array().unwrap();
        assert!(items[0]["read_at"].is_i64(), "{detail}");
        assert!(items[1]["delivered_at"].is_i64(), "{detail}");
        assert_eq!(items[1]["read_at"], Value::Null, "Carol has read receipts off: {detail}");

        // Only the sender may ask.
        for (token, path) in [(&bob, receipts_path.clone()), (&carol, receipts_path.clone()), (&alice, format!("/v1/groups/{group}/messages/{}/receipts", sent + 1000))] {
            assert_eq!(call(&server, "GET", &path, None, token).status, 404, "{path}");
        }
    }

    async fn the_chat_list_shows_groups_beside_one_to_one_chats(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        server.register("carol");
        let group = create_group(&server, &alice, "Team", &["bob", "carol"]);
        let one_to_one = send_group_json(&server, &bob, json!({ "id": "b-1", "to": "alice", "body": "just us" }));
        send_group(&server, &alice, "a-1", group, "one");
        let newest = send_group(&server, &alice, "a-2", group, "two");
        let timer = call(&server, "PUT", &format!("/v1/groups/{group}/timer"), Some(json!({ "seconds": DAY })), &alice);
        assert_eq!(timer.status, 200, "{}", timer.body);

        let chats = get_ok(&server, "/v1/chats", &bob);
        let items = chats["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{chats}");
        assert_eq!(items[0]["group"].as_i64(), Some(group));
        assert_eq!(items[0]["name"], "Team");
        assert!(items[0].get("peer").is_none(), "{chats}");
        assert_eq!(items[0]["last_message"]["id"].as_i64(), Some(newest));
        assert_eq!(items[0]["unread"], 2);
        assert_eq!(items[0]["timer_seconds"].as_i64(), Some(DAY));
        assert_eq!(items[1]["peer"], "alice");
        assert_eq!(items[1]["last_message"]["id"].as_i64(), Some(one_to_one));
        // Paged by the last message, groups and chats alike.
        let first = get_ok(&server, "/v1/chats?limit=1", &bob);
        assert_eq!(first["items"][0]["group"].as_i64(), Some(group));
        let next = first["next"].as_i64().expect("a second page");
        let second = get_ok(&server, &format!("/v1/chats?limit=1&before={next}"), &bob);
        assert_eq!(second["items"][0]["peer"], "alice");

        // Reading the group clears its unread count.
        let reader = mqtt::connect(server.mqtt, "bob.phone", Some(("bob", &bob))).await.expect_connected();
        reader.publish("u/bob/read", json!({ "group": group, "up_to": newest }).to_string()).await;
        assert!(eventually(Duration::from_secs(30), || {
            get_ok(&server, "/v1/chats", &bob)["items"][0]["unread"] == 0
        }).await, "unread cleared");
        // Alice's own messages are never unread to her.
        assert_eq!(get_ok(&server, "/v1/chats", &alice)["items"][0]["unread"], 0);
    }

    async fn search_and_media_follow_membership_and_a_stranger_gets_nothing(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let eve = server.register("eve");
        let group = create_group(&server, &alice, "Fruit", &["bob", "carol"]);
        let before_photo = common::media::upload_ok(server.http, &alice, "image/png", &png(1));
        let before = send_group_json(&server, &alice, json!({ "id": "a-1", "group": group, "body": "pineapple for everyone", "media": { "id": before_photo } }));
        membership(&server, &alice, "DELETE", group, "carol");
        let after_photo = common::media::upload_ok(server.http, &alice, "image/png", &png(2));
        let after = send_group_json(&server, &alice, json!({ "id": "a-2", "group": group, "body": "pineapple and mango", "media": { "id": after_photo } }));
        // A 1:1 message with the same word, to see the filters apart.
        let private = send_group_json(&server, &bob, json!({ "id": "b-1", "to": "alice", "body": "pineapple between us" }));
        server.searchable(private).await;

        assert_eq!(search(&server, &bob, "q=pineapple"), [private, after, before]);
        assert_eq!(search(&server, &bob, &format!("q=pineapple&group={group}")), [after, before]);
        assert_eq!(search(&server, &bob, "q=pineapple&peer=alice"), [private]);
        assert_eq!(search(&server, &alice, "q=MANGO"), [after]);
        // Carol finds what she saw, not what came after her removal.
        assert_eq!(search(&server, &carol, "q=pineapple"), [before]);
        assert_eq!(search(&server, &carol, "q=mango"), Vec::<i64>::new());
        assert_eq!(search(&server, &carol, &format!("q=pineapple&group={group}")), [before]);
        // A stranger finds nothing, with or without the group named.
        assert_eq!(search(&server, &eve, "q=pineapple"), Vec::<i64>::new());
        assert_eq!(search(&server, &eve, &format!("q=pineapple&group={group}")), Vec::<i64>::new());
        assert_eq!(call(&server, "GET", &format!("/v1/search?q=x&peer=alice&group={group}"), None, &bob).status, 400);
        // A group message is indexed once, under its group, not once per
        // member: a row per word on PostgreSQL, one document on SQLite.
        let (indexed_as, expected) = match server.store().backend() {
            store::Backend::Postgres => (count(&server, &format!("search_terms WHERE message_id = {after}")), 3),
            store::Backend::Sqlite => (common::rows::indexed(&server, &format!("message_id = {after}")), 1),
        };
        assert_eq!(indexed_as, expected);

        for suffix in ["", "/thumbnail"] {
            let fetch = |token: &str, media: &str| common::media::get(server.http, Some(token), &format!("/v1/media/{media}{suffix}"), None).status;
            assert_eq!((fetch(&bob, &before_photo), fetch(&bob, &after_photo)), (200, 200), "{suffix}");
            assert_eq!((fetch(&carol, &before_photo), fetch(&carol, &after_photo)), (200, 404), "Carol keeps what she saw{suffix}");
            assert_eq!((fetch(&eve, &before_photo), fetch(&eve, &after_photo)), (404, 404), "{suffix}");
        }
    }

    async fn members_star_group_messages_and_export_their_groups(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let eve = server.register("eve");
        let group = create_group(&server, &alice, "Team", &["bob", "carol"]);
        let first = send_group(&server, &alice, "a-1", group, "keep this");
        membership(&server, &alice, "DELETE", group, "carol");
        let second = send_group(&server, &alice, "a-2", group, "after carol");

        let star = |token: &str, id: i64| call(&server, "PUT", &format!("/v1/messages/{id}/star"), None, token).status;
        assert_eq!((star(&bob, first), star(&bob, second)), (200, 200));
        assert_eq!((star(&carol, first), star(&carol, second)), (200, 404), "Carol may star what she saw only");
        assert_eq!(star(&eve, first), 404);
        let stars = get_ok(&server, "/v1/stars", &bob);
        assert_eq!(page_ids(&stars, "/message/id"), [second, first]);
        assert_eq!(stars["items"][0]["message"]["group"].as_i64(), Some(group));
        assert!(stars["items"][0].get("peer").is_none(), "{stars}");
        assert_eq!(history(&server, &bob, group, "").json()["items"][0]["starred"], true);

        let out = tempfile::tempdir().unwrap();
        let export = |user: &str| {
            let path = out.path().join(format!("{user}.zip"));
            operator_ok(&server, &["user", "export", user, "--output", path.to_str().unwrap()]);
            let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
            let mut read = |name: &str| {
                let mut text = String::new();
                zip.by_name(name).unwrap().read_to_string(&mut text).unwrap();
                serde_json::from_str::<Value>(&text).unwrap()
            };
            (read("messages.json"), read("groups.json"))
        };
        let (messages, groups) = export("carol");
        let bodies: Vec<&str> = messages.as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
        assert_eq!(bodies, ["keep this"]);
        assert_eq!(messages[0]["group"].as_i64(), Some(group));
        assert_eq!(groups[0]["id"].as_i64(), Some(group));
        assert_eq!(groups[0]["name"], "Team");
        assert!(groups[0]["memberships"][0]["left_at"].is_i64(), "{groups}");
        let (messages, groups) = export("bob");
        assert_eq!(messages.as_array().unwrap().len(), 2);
        assert_eq!(groups[0]["memberships"][0]["left_at"], Value::Null);
        let (messages, groups) = export("eve");
        assert_eq!((messages, groups), (json!([]), json!([])));
    }

    async fn archived_group_messages_read_the_same_and_expiry_tombstones_every_members_events(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let group = create_group(&server, &alice, "Team", &["bob", "carol"]);
        let old = send_group(&server, &alice, "a-1", group, "an old plan");
        // Every member's device stores it, so it may move to the archive.
        let mut phones = Vec::new();
        for (user, token) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
            phones.push(App::connect(&server, user, token, "phone", dir.path()).await);
        }
        assert!(eventually(Duration::from_secs(30), || {
            count(&server, "inbox WHERE message_id IS NOT NULL") == 0
        }).await, "devices acked their inboxes");
        drop(phones);
        run_job(&server, "archival", 8 * DAY);
        assert_eq!(count(&server, &format!("messages_archive WHERE id = {old}")), 1);
        assert_eq!(rendered(&history(&server, &carol, group, "").json()), [m(old), "created:-".into()]);

        // Under the admin's timer, a message disappears for everyone.
        let timer = call(&server, "PUT", &format!("/v1/groups/{group}/timer"), Some(json!({ "seconds": DAY })), &alice);
        assert_eq!(timer.status, 200, "{}", timer.body);
        let fleeting = send_group(&server, &alice, "a-2", group, "gone tomorrow");
        let shown = history(&server, &bob, group, "").json();
        let message = shown["items"].as_array().unwrap().iter().find(|i| i["id"].as_i64() == Some(fleeting)).cloned().unwrap();
        assert!(message["expires_at"].is_i64(), "{message}");
        run_job(&server, "expiry", 2 * DAY);
        assert_eq!(count(&server, &format!("messages WHERE id = {fleeting}")), 0);
        for (user, token) in [("bob", &bob), ("carol", &carol)] {
            let (_, events) = synced(&server, user, token, "tablet", |e| e["type"] == "expired" && e["message_id"].as_i64() == Some(fleeting)).await;
            assert!(!events.iter().any(|e| e["type"] == "message" && e["id"].as_i64() == Some(fleeting)), "{user}: {events:?}");
        }
        let ids: Vec<Option<i64>> = history(&server, &bob, group, "").json()["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64()).collect();
        assert!(!ids.contains(&Some(fleeting)) && ids.contains(&Some(old)), "{ids:?}");
    }

    async fn backup_and_restore_keep_groups_memberships_and_history(backend) {
        let mut server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let carol = server.register("carol");
        let group = create_group(&server, &alice, "Team", &["bob", "carol"]);
        let first = send_group(&server, &alice, "a-1", group, "before the backup");
        membership(&server, &alice, "DELETE", group, "carol");
        let second = send_group(&server, &bob, "b-1", group, "carol is out");
        let bob_before = history(&server, &bob, group, "").json();
        let carol_before = history(&server, &carol, group, "").json();
        let group_before = get_ok(&server, &format!("/v1/groups/{group}"), &bob);

        operator_ok(&server, &["job", "run", "backup"]);
        let key = newest_backup(&server);
        assert!(server.terminate().success());
        server.database.wipe();
        let restored = operator_ok(&server, &["restore", &key]);
        assert!(restored.contains("restore complete"), "{restored}");
        server.start_again();

        assert_eq!(history(&server, &bob, group, "").json(), bob_before);
        assert_eq!(history(&server, &carol, group, "").json(), carol_before);
        assert_eq!(rendered(&bob_before), [m(second), "removed:carol".into(), m(first), "created:-".into()]);
        assert_eq!(get_ok(&server, &format!("/v1/groups/{group}"), &bob), group_before);
        // The group carries on: Bob sends, Carol still may not read on.
        let third = send_group(&server, &bob, "b-2", group, "after the restore");
        assert!(third > second);
        assert_eq!(rendered(&history(&server, &carol, group, "").json()), ["removed:carol".to_owned(), m(first), "created:-".into()]);
        server.searchable(third).await;
        assert_eq!(search(&server, &bob, "q=restore"), [third]);
    }
}
