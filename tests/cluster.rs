//! bluetick nodes on one PostgreSQL, routing live events through a real
//! 3-node NATS cluster (issue 15; docs/scaling.md).
//!
//! "Live" is shown with raw MQTT clients that never send `sync`: whatever
//! reaches them came over the bus, not from a replay.

mod common;

use common::chat::App;
use common::mqtt::{self, Client};
use common::nats::NatsCluster;
use common::{Backend, Options, Server};
use serde_json::{json, Value};
use std::time::Duration;

/// Every node seals message bodies with the same key, as a cluster must.
const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Longest wait for an event that should arrive; generous for a busy machine.
const WAIT: Duration = Duration::from_secs(20);

/// The options of node `name` in the cluster `nats`.
fn node(nats: &NatsCluster, name: &str) -> Options {
    Options::default()
        .env("BLUETICK_NODE", name)
        .env("BLUETICK_MESSAGES__KEY", KEY)
        .env("BLUETICK_CLUSTER__NATS_URLS", &nats.urls())
}

/// Three nodes, `a`, `b` and `c`, on one fresh PostgreSQL database.
fn three_nodes(nats: &NatsCluster) -> (Server, Server, Server) {
    let a = Server::start_with(Backend::Postgres, node(nats, "a"));
    let b = Server::start_on(a.database.share(), node(nats, "b"));
    let c = Server::start_on(a.database.share(), node(nats, "c"));
    (a, b, c)
}

/// A raw device of `user` on `server`, subscribed to its inbox; it never
/// syncs, so all it sees arrived live.
async fn device(server: &Server, user: &str, token: &str, device: &str) -> Client {
    subscribed(server, (user, device), token, &format!("u/{user}/inbox")).await
}

/// A raw client `user.device` on `server`, subscribed to `filter`.
async fn subscribed(
    server: &Server,
    (user, device): (&str, &str),
    token: &str,
    filter: &str,
) -> Client {
    let client_id = format!("{user}.{device}");
    let mut client = mqtt::connect(server.mqtt, &client_id, Some((user, token)))
        .await
        .expect_connected();
    client.subscribe_ok(filter).await;
    client
}

/// Waits for the JSON message on a topic `on` accepts that matches `wanted`.
async fn json_where(
    client: &mut Client,
    what: &str,
    on: impl Fn(&str) -> bool,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(publish) = client.next_message(left).await else {
            panic!("no live {what} within {WAIT:?}; saw {seen:#?}");
        };
        if !on(&publish.topic) {
            continue;
        }
        let value: Value = serde_json::from_slice(&publish.payload).expect("JSON");
        if wanted(&value) {
            return value;
        }
        seen.push(value);
    }
}

/// Waits for the inbox event matching `wanted`.
async fn live_event(client: &mut Client, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    json_where(client, what, |topic| topic.ends_with("/inbox"), wanted).await
}

async fn message(client: &mut Client, from: &str, body: &str) -> Value {
    live_event(client, &format!("message {body:?} from {from}"), |e| {
        e["type"] == "message" && e["from"] == from && e["body"] == body
    })
    .await
}

async fn ack(client: &mut Client, client_id: &str) -> Value {
    live_event(client, &format!("✓ of {client_id}"), |e| {
        e["type"] == "ack" && e["client_id"] == client_id
    })
    .await
}

async fn receipt(client: &mut Client, peer: &str, status: &str, id: i64) -> Value {
    live_event(
        client,
        &format!("{status} receipt from {peer} for {id}"),
        |e| {
            e["type"] == "receipt"
                && e["peer"] == peer
                && e["status"] == status
                && e["up_to"].as_i64() >= Some(id)
        },
    )
    .await
}

async fn send(client: &Client, from: &str, id: &str, to: &str, body: &str) {
    let request = json!({ "id": id, "to": to, "body": body });
    client
        .publish(&format!("u/{from}/send"), request.to_string())
        .await;
}

async fn ack_inbox(client: &Client, user: &str, device: &str, up_to: i64) {
    let request = json!({ "up_to": up_to, "device": device });
    client
        .publish(&format!("u/{user}/ack"), request.to_string())
        .await;
}

async fn read(client: &Client, user: &str, peer: &str, up_to: i64) {
    let request = json!({ "peer": peer, "up_to": up_to });
    client
        .publish(&format!("u/{user}/read"), request.to_string())
        .await;
}

fn seq(event: &Value) -> i64 {
    event["seq"].as_i64().expect("a seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_receipts_reach_devices_on_other_nodes_live() {
    let nats = NatsCluster::start();
    let (a, b, c) = three_nodes(&nats);
    let alice_token = a.register("alice");
    let bob_token = b.register("bob");

    let mut alice = device(&a, "alice", &alice_token, "phone").await;
    let mut bob = device(&b, "bob", &bob_token, "phone").await;
    let mut bob_tablet = device(&c, "bob", &bob_token, "tablet").await;
    nats.interest("bt.u.alice.*").await;
    nats.interest("bt.u.bob.*").await;

    // alice on A → bob on B and on C.
    send(&alice, "alice", "a-1", "bob", "hello from A").await;
    let sent = ack(&mut alice, "a-1").await;
    let id = sent["id"].as_i64().expect("message id");
    let on_b = message(&mut bob, "alice", "hello from A").await;
    let on_c = message(&mut bob_tablet, "alice", "hello from A").await;
    assert_eq!(on_b["id"].as_i64(), Some(id));
    assert_eq!(on_b, on_c, "both of bob's devices see the same event");

    // bob's phone on B stores it: ✓✓ reaches alice on A.
    ack_inbox(&bob, "bob", "phone", seq(&on_b)).await;
    receipt(&mut alice, "bob", "delivered", id).await;
    // bob reads it on B: blue ticks on A.
    read(&bob, "bob", "alice", id).await;
    receipt(&mut alice, "bob", "read", id).await;

    // bob on B answers → alice on A; bob's own ack reaches his tablet on C.
    send(&bob, "bob", "b-1", "alice", "hi from B").await;
    ack(&mut bob, "b-1").await;
    let answer = message(&mut alice, "bob", "hi from B").await;
    ack(&mut bob_tablet, "b-1").await;
    ack_inbox(&alice, "alice", "phone", seq(&answer)).await;
    let answer_id = answer["id"].as_i64().expect("message id");
    receipt(&mut bob, "alice", "delivered", answer_id).await;
    receipt(&mut bob_tablet, "alice", "delivered", answer_id).await;

    assert!(
        b.metric(r#"bluetick_cluster_events_total{way="in"}"#) > 0.0,
        "node B republished events from the bus"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committing_node_delivers_its_own_events_once() {
    let nats = NatsCluster::start();
    let (a, b, _c) = three_nodes(&nats);
    let alice_token = a.register("alice");
    let bob_token = a.register("bob");
    // bob has a device on A (where alice's message commits) and on B, so
    // both nodes follow his subject and A also gets its own event back.
    let mut bob_here = device(&a, "bob", &bob_token, "phone").await;
    let mut bob_there = device(&b, "bob", &bob_token, "tablet").await;
    let alice = device(&a, "alice", &alice_token, "phone").await;
    nats.interest("bt.u.bob.*").await;

    for i in 0..5 {
        send(
            &alice,
            "alice",
            &format!("m-{i}"),
            "bob",
            &format!("note {i}"),
        )
        .await;
    }
    for (name, device) in [("A", &mut bob_here), ("B", &mut bob_there)] {
        let mut seqs = Vec::new();
        while seqs.len() < 5 {
            let event = live_event(device, &format!("5 messages on node {name}"), |e| {
                e["type"] == "message"
            })
            .await;
            seqs.push(seq(&event));
        }
        // Anything more within a quiet second would be a second copy.
        let extra = device.inbox_events(Duration::from_secs(1)).await;
        let expected: Vec<i64> = (seqs[0]..seqs[0] + 5).collect();
        assert_eq!(
            seqs, expected,
            "node {name}: each message once, in seq order"
        );
        assert!(
            extra.iter().all(|e| e["type"] != "message"),
            "node {name} delivered a message twice: {extra:#?}"
        );
    }
}

/// `/readyz`'s `cluster` field on `server`.
fn bus_state(server: &Server) -> String {
    let ready = common::http::request(server.http, "GET", "/readyz", None, None);
    assert_eq!(
        ready.status, 200,
        "a node without NATS stays ready: {}",
        ready.body
    );
    ready.json()["cluster"].as_str().unwrap_or("").to_owned()
}

async fn bus_becomes(server: &Server, state: &str) {
    let reached = common::eventually(WAIT, || bus_state(server) == state).await;
    assert!(reached, "/readyz never said cluster {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_each_node_serves_its_users_and_the_rest_arrives_by_sync() {
    let mut nats = NatsCluster::start();
    let a = Server::start_with(Backend::Postgres, node(&nats, "a"));
    let b = Server::start_on(a.database.share(), node(&nats, "b"));
    let (alice_token, carol_token, bob_token) =
        (a.register("alice"), a.register("carol"), b.register("bob"));
    let dir = tempfile::tempdir().expect("app state dir");
    let mut alice = App::connect(&a, "alice", &alice_token, "phone", dir.path()).await;
    let mut carol = App::connect(&a, "carol", &carol_token, "phone", dir.path()).await;
    let mut bob = App::connect(&b, "bob", &bob_token, "phone", dir.path()).await;
    bus_becomes(&a, "connected").await;
    assert_eq!(a.metric("bluetick_cluster_nats_connected"), 1.0);

    nats.kill_all();
    bus_becomes(&a, "nats_unreachable").await;
    bus_becomes(&b, "nats_unreachable").await;
    assert_eq!(a.metric("bluetick_cluster_nats_connected"), 0.0);

    // Each node goes on serving its own users, live and with ✓.
    let local = alice
        .client
        .send("carol", "same node, no bus")
        .await
        .expect("send");
    alice.sent(&local).await;
    carol.message_from("alice", "same node, no bus").await;
    let early = alice
        .client
        .send("bob", "while NATS is down")
        .await
        .expect("send");
    alice.sent(&early).await;
    let reply = bob
        .client
        .send("alice", "bob, also while down")
        .await
        .expect("send");
    bob.sent(&reply).await;

    nats.restart_all();
    bus_becomes(&a, "connected").await;
    bus_becomes(&b, "connected").await;
    nats.interest("bt.u.alice.*").await;
    nats.interest("bt.u.bob.*").await;

    // The next live events show each side a gap; its sync brings the rest.
    let late = alice
        .client
        .send("bob", "NATS is back")
        .await
        .expect("send");
    alice.sent(&late).await;
    let late_reply = bob.client.send("alice", "so it is").await.expect("send");
    bob.sent(&late_reply).await;
    bob.message_from("alice", "NATS is back").await;
    alice.message_from("bob", "so it is").await;
    bob.settle(Duration::from_secs(1)).await;
    alice.settle(Duration::from_secs(1)).await;

    let bodies = |app: &App, from: &str| -> Vec<String> {
        app.messages()
            .into_iter()
            .filter(|m| m.from == from)
            .map(|m| m.body.clone())
            .collect()
    };
    assert_eq!(
        bodies(&bob, "alice"),
        ["while NATS is down", "NATS is back"],
        "bob has alice's messages once each, in order"
    );
    assert_eq!(bodies(&alice, "bob"), ["bob, also while down", "so it is"]);
}

/// A raw client `user.device` on `server` watching `presence/{target}`.
async fn presence_watcher(
    server: &Server,
    (user, device): (&str, &str),
    token: &str,
    target: &str,
) -> Client {
    subscribed(server, (user, device), token, &format!("presence/{target}")).await
}

/// Waits for a presence message matching `wanted` on `client`.
async fn presence_where(client: &mut Client, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let presence = |topic: &str| topic.starts_with("presence/");
    json_where(client, &format!("presence {what}"), presence, wanted).await
}

fn set_privacy(server: &Server, token: &str, change: Value) {
    let path = "/v1/me/privacy";
    let body = change.to_string();
    let response = common::http::request(server.http, "PUT", path, Some(&body), Some(token));
    assert_eq!(response.status, 200, "{}", response.body);
}

fn post_message(server: &Server, token: &str, id: &str, to: &str) {
    let body = json!({ "id": id, "to": to, "body": "hi" }).to_string();
    let sent = common::http::request(
        server.http,
        "POST",
        "/v1/messages",
        Some(&body),
        Some(token),
    );
    assert_eq!(sent.status, 201, "{}", sent.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_the_same_on_every_node_and_each_guard_applies_privacy() {
    let nats = NatsCluster::start();
    let (a, b, c) = three_nodes(&nats);
    let (alice_token, bob_token, carol_token) =
        (a.register("alice"), a.register("bob"), a.register("carol"));
    // alice shows her presence to contacts only; bob is one, carol is not.
    set_privacy(&a, &alice_token, json!({ "last_seen": "contacts" }));
    post_message(&a, &bob_token, "hi-1", "alice");
    post_message(&a, &alice_token, "hi-2", "bob");

    let mut bob_on_b = presence_watcher(&b, ("bob", "phone"), &bob_token, "alice").await;
    let mut carol_on_b = presence_watcher(&b, ("carol", "phone"), &carol_token, "alice").await;
    let alice = device(&a, "alice", &alice_token, "phone").await;
    presence_where(&mut bob_on_b, "online on node B", |p| p["online"] == true).await;
    let hidden = presence_where(&mut carol_on_b, "for a stranger", |_| true).await;
    assert_eq!(
        hidden,
        json!({ "hidden": true }),
        "node B's guard hides alice from carol"
    );

    // A node that joins the watching later holds the same retained value.
    let mut bob_on_c = presence_watcher(&c, ("bob", "tablet"), &bob_token, "alice").await;
    presence_where(&mut bob_on_c, "retained online on node C", |p| {
        p["online"] == true
    })
    .await;

    alice.disconnect().await;
    let offline =
        presence_where(&mut bob_on_b, "offline on node B", |p| p["online"] == false).await;
    assert!(
        offline["last_seen"].is_i64(),
        "last seen shown to a contact: {offline}"
    );
    presence_where(&mut bob_on_c, "offline on node C", |p| p["online"] == false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_a_peer_on_another_node() {
    let nats = NatsCluster::start();
    let a = Server::start_with(Backend::Postgres, node(&nats, "a"));
    let b = Server::start_on(a.database.share(), node(&nats, "b"));
    let (alice_token, bob_token) = (a.register("alice"), a.register("bob"));
    let mut bob = mqtt::connect(b.mqtt, "bob.phone", Some(("bob", &bob_token)))
        .await
        .expect_connected();
    bob.subscribe_ok("u/bob/live").await;
    let alice = device(&a, "alice", &alice_token, "phone").await;
    nats.interest("bt.u.bob.*").await;

    let typing = json!({ "to": "bob", "state": "typing" }).to_string();
    alice.publish("u/alice/typing", typing).await;
    let live = bob.next_message(WAIT).await.expect("typing from node A");
    assert_eq!(live.topic, "u/bob/live");
    let event: Value = serde_json::from_slice(&live.payload).expect("JSON");
    assert_eq!(
        event,
        json!({ "type": "typing", "from": "alice", "state": "typing" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_id_on_another_node_closes_the_first() {
    let nats = NatsCluster::start();
    let a = Server::start_with(Backend::Postgres, node(&nats, "a"));
    let b = Server::start_on(a.database.share(), node(&nats, "b"));
    let bob_token = a.register("bob");
    let mut first = device(&a, "bob", &bob_token, "phone").await;
    nats.interest("bt.u.bob.*").await;

    let mut second = device(&b, "bob", &bob_token, "phone").await;
    assert!(
        first.closed_within(WAIT).await,
        "the older bob.phone on node A was closed"
    );
    assert!(
        second.is_alive("u/bob/inbox").await,
        "the newer bob.phone on node B stays"
    );
    // Counted once node A's closing connection has left again, which may
    // be a moment after the older one is gone.
    let counted = common::eventually(WAIT, || a.metric("bluetick_cluster_takeovers_total") >= 1.0);
    assert!(counted.await, "node A counts the takeover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_closes_the_tokens_idle_connections_on_another_at_once() {
    let nats = NatsCluster::start();
    let a = Server::start_with(Backend::Postgres, node(&nats, "a"));
    let b = Server::start_on(a.database.share(), node(&nats, "b"));
    let token = a.register("bob");
    let other_token = a.login("bob", "bob-password");
    let mut phone = device(&b, "bob", &token, "phone").await;
    let mut laptop = device(&b, "bob", &other_token, "laptop").await;
    nats.interest("bt.u.bob.*").await;

    let started = std::time::Instant::now();
    let path = "/v1/tokens/current";
    let logout = common::http::request(a.http, "DELETE", path, None, Some(&token));
    assert_eq!(logout.status, 204);
    // The phone sends nothing: without the bus it would be closed only at
    // its next packet after node B's poll of the revocations table.
    assert!(
        phone.closed_within(WAIT).await,
        "the idle phone on node B was closed"
    );
    eprintln!(
        "logout on A closed the phone on B after {:?}",
        started.elapsed()
    );
    assert!(
        laptop.is_alive("u/bob/inbox").await,
        "another token's connection stays"
    );
    let again = mqtt::connect(b.mqtt, "bob.phone", Some(("bob", &token))).await;
    assert!(
        matches!(again, mqtt::Outcome::Refused(_)),
        "node B admits the token no more"
    );
}

/// The p-th percentile (0–100) of sorted `values`.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Measures, does not assert: the latency a cross-node hop adds. One send
/// from alice on node A reaches bob's device on A (local publish) and his
/// device on B (through NATS); both arrival times are taken against the
/// moment of the send. `cargo test --release --test cluster -- --ignored
/// --nocapture cross_node_latency` (docs/scaling.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for docs/scaling.md, not a test"]
async fn cross_node_latency() {
    let count: usize = std::env::var("BT_LATENCY_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let nats = NatsCluster::start();
    let a = Server::start_with(Backend::Postgres, node(&nats, "a"));
    let b = Server::start_on(a.database.share(), node(&nats, "b"));
    let (alice_token, bob_token) = (a.register("alice"), a.register("bob"));
    let alice = device(&a, "alice", &alice_token, "phone").await;
    let mut bob_on_a = device(&a, "bob", &bob_token, "phone").await;
    let mut bob_on_b = device(&b, "bob", &bob_token, "tablet").await;
    nats.interest("bt.u.bob.*").await;

    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for i in 0..count {
        let body = format!("m{i}");
        let sent = std::time::Instant::now();
        send(&alice, "alice", &format!("lat-{i}"), "bob", &body).await;
        let (mut here, mut there) = (None, None);
        while here.is_none() || there.is_none() {
            tokio::select! {
                _ = message(&mut bob_on_a, "alice", &body), if here.is_none() => here = Some(sent.elapsed()),
                _ = message(&mut bob_on_b, "alice", &body), if there.is_none() => there = Some(sent.elapsed()),
            }
        }
        local.extend(here);
        remote.extend(there);
        // A steady trickle, not a flood: this measures the hop, not a queue.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    local.sort();
    remote.sort();
    eprintln!(
        "send → delivery over {count} messages: A→A p50 {:?} p99 {:?}; A→B p50 {:?} p99 {:?}",
        percentile(&local, 50),
        percentile(&local, 99),
        percentile(&remote, 50),
        percentile(&remote, 99),
    );
}

/// The live node (index into `nodes`) where `user`'s newest session is.
async fn node_of(nodes: &[Option<Server>], user: &str) -> usize {
    let names = ["a", "b", "c"];
    let live = nodes.iter().flatten().next().expect("a live node");
    let store = live.store();
    // After its node died, a device has a session again once it
    // reconnected (through HAProxy, to a live node); the dead node's row
    // stays, since no disconnect was ever written for it.
    common::eventually(WAIT, || {
        store.user_sessions(user).is_ok_and(|sessions| {
            sessions.iter().any(|s| {
                names
                    .iter()
                    .position(|n| *n == s.node)
                    .is_some_and(|i| nodes[i].is_some())
            })
        })
    })
    .await;
    let sessions = store.user_sessions(user).expect("sessions");
    sessions
        .iter()
        .filter_map(|s| {
            names
                .iter()
                .position(|n| *n == s.node)
                .filter(|i| nodes[*i].is_some())
                .map(|i| (s.connected_at, i))
        })
        .max()
        .map(|(_, i)| i)
        .unwrap_or_else(|| panic!("{user} has no session on a live node: {sessions:?}"))
}

/// Sends `count` messages from `app` to `to`, numbered from `first`;
/// returns their client ids.
async fn send_batch(app: &App, to: &str, first: usize, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in first..first + count {
        ids.push(app.client.send(to, &format!("{i}")).await.expect("send"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ids
}

/// The whole chain under failure, through HAProxy: alice and bob chat while
/// bob's node, then alice's node, then one NATS node are killed, and then,
/// when scripts/cluster-test runs PostgreSQL under Patroni and names the
/// command in `BT_CLUSTER_KILL_PRIMARY`, the PostgreSQL primary. Every send
/// is acked and each inbox holds each message once, in order. Needs
/// Debian's haproxy; run by scripts/cluster-test (`--ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow; scripts/cluster-test runs it"]
async fn chat_through_haproxy_survives_killing_nodes_and_a_nats_node() {
    const PER_PHASE: usize = 25;
    let mut nats = NatsCluster::start();
    // The database outlives every node: dropping a server kills it.
    let database = common::TestDatabase::new(Backend::Postgres);
    let a = Server::start_on(database.share(), node(&nats, "a"));
    let b = Server::start_on(database.share(), node(&nats, "b"));
    let c = Server::start_on(database.share(), node(&nats, "c"));
    let proxy = common::haproxy::Haproxy::start(&[a.mqtt, b.mqtt, c.mqtt]);
    let (alice_token, bob_token) = (a.register("alice"), a.register("bob"));
    let mut nodes = vec![Some(a), Some(b), Some(c)];
    let dir = tempfile::tempdir().expect("app state dir");
    let mut alice = App::connect_to(proxy.mqtt, "alice", &alice_token, "phone", dir.path()).await;
    let mut bob = App::connect_to(proxy.mqtt, "bob", &bob_token, "phone", dir.path()).await;

    let mut sent = (Vec::new(), Vec::new());
    let mut next = 0;
    // Messages that reached a device by sync, counted on each node before
    // it is killed and on the survivors at the end.
    let replayed = |server: &Server| server.metric("bluetick_bridge_replayed_messages_total");
    let mut by_sync = 0.0;
    let kill_primary = std::env::var("BT_CLUSTER_KILL_PRIMARY").ok();
    let mut phases = vec!["kill bob's node", "kill alice's node", "kill a NATS node"];
    if kill_primary.is_some() {
        phases.push("kill the PostgreSQL primary");
    }
    phases.push("settle");
    for phase in phases {
        sent.0
            .extend(send_batch(&alice, "bob", next, PER_PHASE).await);
        sent.1
            .extend(send_batch(&bob, "alice", next, PER_PHASE).await);
        next += PER_PHASE;
        match phase {
            "kill bob's node" | "kill alice's node" => {
                let user = if phase.contains("bob") {
                    "bob"
                } else {
                    "alice"
                };
                let victim = node_of(&nodes, user).await;
                eprintln!("{phase}: node {victim}");
                by_sync += nodes[victim].as_ref().map_or(0.0, replayed);
                // Dropping a server SIGKILLs it.
                nodes[victim] = None;
            }
            "kill a NATS node" => nats.kill(0),
            "kill the PostgreSQL primary" => {
                let command = kill_primary.as_deref().unwrap_or("false");
                let killed = std::process::Command::new("sh")
                    .args(["-c", command])
                    .status();
                assert!(killed.is_ok_and(|s| s.success()), "{command} failed");
                eprintln!("{phase}: done; waiting for the replica's promotion");
                let survivor = nodes.iter().flatten().next().expect("a live node");
                let ready = || {
                    common::http::request(survivor.http, "GET", "/readyz", None, None).status == 200
                };
                // Patroni promotes after its leader key expires (ttl 20 s).
                let killed_at = std::time::Instant::now();
                tokio::time::sleep(Duration::from_secs(2)).await;
                let promoted = common::eventually(Duration::from_secs(120), ready).await;
                assert!(promoted, "no writable PostgreSQL within 120 s");
                eprintln!("writable again after {:?}", killed_at.elapsed());
            }
            _ => {}
        }
    }
    for id in &sent.0 {
        alice.sent(id).await;
    }
    for id in &sent.1 {
        bob.sent(id).await;
    }
    let last = format!("{}", next - 1);
    bob.message_from("alice", &last).await;
    alice.message_from("bob", &last).await;
    bob.settle(Duration::from_secs(2)).await;
    alice.settle(Duration::from_secs(2)).await;

    let expected: Vec<String> = (0..next).map(|i| i.to_string()).collect();
    for (app, from) in [(&bob, "alice"), (&alice, "bob")] {
        let bodies: Vec<String> = app
            .messages()
            .into_iter()
            .filter(|m| m.from == from)
            .map(|m| m.body.clone())
            .collect();
        assert_eq!(
            bodies, expected,
            "from {from}: every message once, in order"
        );
    }
    by_sync += nodes.iter().flatten().map(replayed).sum::<f64>();
    let delivered = 2.0 * next as f64;
    println!(
        "{next} sends acked on each side, 0 lost, 0 duplicated, 0 out of order; \
         live share {:.1}% ({by_sync} of {delivered} messages came by sync)",
        100.0 * (1.0 - by_sync.min(delivered) / delivered)
    );
}
