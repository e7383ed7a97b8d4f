//! The client SDK against a server that lies. A stock Mosquitto plays the
//! server: the test publishes into the app's inbox topic what no bluetick
//! would send, and the app must hear about it, not go silently deaf.

mod common;

use client::inbox::ServerFault;
use client::AppEvent;
use common::chat::App;
use common::mqtt;
use common::tools::Mosquitto;
use protocol::messages::MAX_SEQ;
use serde_json::json;
use std::time::Duration;

fn message(seq: i64, body: &str) -> String {
    json!({
        "seq": seq, "type": "message", "id": seq, "client_id": format!("c{seq}"),
        "from": "mallory", "to": "alice", "body": body, "sent_at": 1,
    })
    .to_string()
}

fn synced(through: i64, pruned_through: i64) -> String {
    json!({ "type": "synced", "through": through, "more": false, "pruned_through": pruned_through })
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_pruned_through_is_reported_to_the_app_and_later_messages_still_arrive() {
    let broker = Mosquitto::start().expect("start mosquitto");
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::connect_to(broker.addr, "alice", "any-token", "phone", dir.path()).await;
    let server = mqtt::connect(broker.addr, "fake-server", None)
        .await
        .expect_connected();
    let inbox = "u/alice/inbox";

    // The app subscribes after its CONNACK; repeat the first event until it
    // lands (repeats are duplicates the SDK drops).
    let first = tokio::spawn({
        let client = server.client.clone();
        async move {
            for _ in 0..200 {
                let _ = client
                    .publish(inbox, rumqttc::QoS::AtLeastOnce, false, message(1, "first"))
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    app.message_from("mallory", "first").await;
    first.abort();

    // pruned_through = i64::MAX would make every later seq look old.
    server.publish(inbox, synced(i64::MAX, i64::MAX)).await;
    let fault = app
        .wait_for("a server fault for the synced", |e| match e {
            AppEvent::ServerFault(fault) => Some(fault.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        fault,
        ServerFault::Synced {
            through: i64::MAX,
            pruned_through: Some(i64::MAX)
        }
    );
    server.publish(inbox, message(2, "second")).await;
    app.message_from("mallory", "second").await;

    // A lie within range is believed (a new device may really find its
    // inbox pruned), but an event from the range it claimed gone is then
    // reported, not dropped as a duplicate.
    server.publish(inbox, synced(MAX_SEQ, MAX_SEQ)).await;
    server.publish(inbox, message(3, "third")).await;
    let fault = app
        .wait_for("a server fault for seq 3", |e| match e {
            AppEvent::ServerFault(ServerFault::Pruned { seq, .. }) => Some(*seq),
            _ => None,
        })
        .await;
    assert_eq!(fault, 3);
    // And a seq past the protocol's bound is refused outright.
    server.publish(inbox, message(MAX_SEQ + 1, "too far")).await;
    app.wait_for("a server fault for a seq past MAX_SEQ", |e| match e {
        AppEvent::ServerFault(ServerFault::Seq(seq)) if *seq == MAX_SEQ + 1 => Some(()),
        _ => None,
    })
    .await;
    app.client.close().await;
    server.disconnect().await;
}
