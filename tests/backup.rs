//! Backup and restore as an operator sees them: a backup restored into a
//! wiped database, a backup under live traffic, moves between SQLite and
//! PostgreSQL, and backups on S3. Real server processes, real databases,
//! the real `bluetick` commands.

mod common;

use common::chat::App;
use common::http::request;
use common::jobs::{newest_backup, operator_ok, send_http};
use common::mqtt::{self, TIMEOUT};
use common::{eventually, Backend, Options, Server, TestDatabase};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::inbox::NewEvent;
use store::on_both_backends;

/// Every row of every data table, as the database renders it, by table:
/// what a restore must give back exactly. Tables added later (stars,
/// media, archives) are compared too, without changing this test.
fn all_rows(store: &store::Store) -> BTreeMap<String, Vec<String>> {
    let mut snapshot = store.snapshot().expect("snapshot");
    let mut rows = BTreeMap::new();
    for table in snapshot.tables().expect("tables") {
        // Derived tables are left out of backups and rebuilt after a restore.
        if jobs::backup::RUNTIME_TABLES.contains(&table.name.as_str())
            || store::indexer::DERIVED_TABLES.contains(&table.name.as_str())
        {
            continue;
        }
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let page = snapshot.rows(&table, after.as_deref(), 1000).expect("rows");
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            found.extend(page.into_iter().map(|(_, row)| row));
        }
        found.sort();
        rows.insert(table.name, found);
    }
    rows
}

/// The retained presence message of each of `users`, as a fresh watcher
/// receives it on subscribing.
async fn retained_presence(server: &Server, watcher: (&str, &str), users: &[String]) -> Vec<Value> {
    let (name, token) = watcher;
    let mut client = mqtt::connect(
        server.mqtt,
        &format!("{name}.presence"),
        Some((name, token)),
    )
    .await
    .expect_connected();
    let mut seen = Vec::new();
    for user in users {
        client.subscribe_ok(&format!("presence/{user}")).await;
        let publish = client
            .next_message(TIMEOUT)
            .await
            .expect("retained presence");
        assert_eq!(publish.topic, format!("presence/{user}"));
        seen.push(serde_json::from_slice(&publish.payload).unwrap());
    }
    client.disconnect().await;
    seen
}

on_both_backends! {
    async fn a_backup_restored_into_a_wiped_database_serves_the_same_users_messages_stars_and_tokens(backend) {
        let mut server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        for i in 0..5 {
            send_http(&server, &alice, &format!("a-{i}"), "bob", &format!("hello bob {i}"));
        }
        // A timer needs a chat, which the messages above make.
        let timer = request(server.http, "PUT", "/v1/chats/bob/timer", Some(r#"{"seconds":604800}"#), Some(&alice));
        assert_eq!(timer.status, 200, "{}", timer.body);
        send_http(&server, &bob, "b-0", "alice", "hi alice");
        for (token, path) in [(&alice, "/v1/messages/1/star"), (&bob, "/v1/messages/6/star")] {
            let starred = request(server.http, "PUT", path, None, Some(token));
            assert_eq!(starred.status, 200, "{path}: {}", starred.body);
        }
        let device_backup = "encrypted-by-the-phone \u{1F512}".repeat(100);
        let put = request(server.http, "PUT", "/v1/me/backup", Some(&device_backup), Some(&alice));
        assert_eq!(put.status, 201, "{}", put.body);
        server.searchable(6).await;
        let before = all_rows(&server.store());
        assert_eq!(before["users"].len(), 2);
        assert_eq!(before["messages"].len(), 6);
        assert_eq!(before["stars"].len(), 2);
        assert_eq!(before["chat_timers"].len(), 1);
        assert!(!before["inbox"].is_empty() && !before["tokens"].is_empty());

        // The steps of docs/operations.md, "Restoring a backup".
        let ran = operator_ok(&server, &["job", "run", "backup"]);
        assert!(ran.contains("job backup run"), "{ran}");
        let key = newest_backup(&server);
        let status = server.terminate();
        assert!(status.success());
        server.database.wipe();
        let restored = operator_ok(&server, &["restore", &key]);
        eprintln!("{restored}");
        assert!(restored.contains("checksums verified"), "{restored}");
        assert!(restored.contains("restored messages: 6 rows"), "{restored}");
        assert!(restored.contains("restore complete"), "{restored}");
        assert!(!restored.contains("restored search_terms"), "backups carry no search index: {restored}");
        assert_eq!(all_rows(&server.store()), before, "restored rows differ from the originals");

        // Restoring over data is refused and changes nothing.
        let again = server.operator(&["restore", &key]);
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&again.stderr));

        server.start_again();
        // Old passwords and old tokens work; the inbox replays with bodies.
        server.login("alice", "alice-password");
        let privacy = request(server.http, "GET", "/v1/me/privacy", None, Some(&alice));
        assert_eq!(privacy.status, 200, "{}", privacy.body);
        let dir = tempfile::tempdir().unwrap();
        let mut phone = App::connect(&server, "bob", &bob, "phone", dir.path()).await;
        for i in 0..5 {
            phone.message_from("alice", &format!("hello bob {i}")).await;
        }
        // Stars and search work on the restored rows: the indexer rebuilt
        // the index the backup left out.
        server.searchable(6).await;
        let restored_hit = request(server.http, "GET", "/v1/search?q=hi+ALICE", None, Some(&alice)).json();
        assert_eq!(restored_hit["items"][0]["body"], "hi alice", "{restored_hit}");
        let stars = request(server.http, "GET", "/v1/stars", None, Some(&bob)).json();
        assert_eq!(stars["items"][0]["message"]["body"], "hi alice");
        let found = request(server.http, "GET", "/v1/search?q=Hello+BOB+3", None, Some(&bob)).json();
        assert_eq!(found["items"][0]["body"], "hello bob 3");
        let fetched = request(server.http, "GET", "/v1/me/backup", None, Some(&alice));
        assert_eq!((fetched.status, fetched.body.as_str()), (200, device_backup.as_str()));
        // New rows get new ids after the restored ones.
        send_http(&server, &bob, "b-1", "alice", "back again");
        let ids: BTreeSet<i64> = all_rows(&server.store())["messages"]
            .iter()
            .map(|row| serde_json::from_str::<Value>(row).unwrap()["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids.len(), 7);
    }

    async fn a_backup_under_live_traffic_never_stalls_delivery_and_leaves_last_seen_alone(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let bob = server.register("bob");
        let idle: Vec<String> = (0..6).map(|i| format!("idle{i}")).collect();
        for name in &idle {
            let token = server.register(name);
            mqtt::visit(&server, name, &token).await;
        }
        // Enough history that the snapshot takes a while to read.
        let store = server.store();
        let filler = 30_000;
        for chunk in 0..filler / 1000 {
            store.transaction(|tx| {
                for i in 0..1000 {
                    let id = format!("filler-{chunk}-{i}");
                    if let store::messages::Stored::New { id } =
                        tx.store_message(&store::messages::NewMessage {
                            sender: "idle0",
                            recipient: "idle1",
                            client_id: &id,
                            body: "an old message with some words in it",
                            media: None,
                            sent_at: 1,
                            expires_at: None,
                        })?
                    {
                        tx.append("idle1", &[NewEvent::Message { message_id: id }])?;
                    }
                }
                Ok::<_, store::StoreError>(())
            }).unwrap();
        }
        // Watching presence connects and leaves, which moves the watcher's
        // own last seen, so the watcher is not among the users compared.
        let watcher = server.register("watcher");
        let everyone: Vec<String> = ["alice", "bob"].iter().map(|s| s.to_string()).chain(idle.clone()).collect();
        let last_seen_before: Vec<_> = everyone.iter().map(|u| store.presence_of(u).unwrap()).collect();
        let presence_before = retained_presence(&server, ("watcher", &watcher), &idle).await;

        let mut receiver = mqtt::connect(server.mqtt, "bob.phone", Some(("bob", &bob))).await.expect_connected();
        receiver.subscribe_ok("u/bob/inbox").await;
        let sender = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice))).await.expect_connected();
        let stop = Arc::new(AtomicBool::new(false));
        let sending = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) {
                    let payload = json!({"id": format!("live-{sent}"), "to": "bob", "body": format!("live {sent}")});
                    sender.publish("u/alice/send", payload.to_string()).await;
                    sent += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                sender.publish("u/alice/send", json!({"id": "live-end", "to": "bob", "body": "end"}).to_string()).await;
                (sender, sent)
            })
        };
        let receiving = tokio::spawn(async move {
            let mut arrivals: Vec<(Instant, String)> = Vec::new();
            while let Some(publish) = receiver.next_message(Duration::from_secs(10)).await {
                let event: Value = serde_json::from_slice(&publish.payload).unwrap();
                if event["type"] == "message" {
                    let body = event["body"].as_str().unwrap().to_owned();
                    let end = body == "end";
                    arrivals.push((Instant::now(), body));
                    if end {
                        break;
                    }
                }
            }
            (receiver, arrivals)
        });

        tokio::time::sleep(Duration::from_secs(1)).await;
        let backup_started = Instant::now();
        let ran = tokio::task::block_in_place(|| operator_ok(&server, &["job", "run", "backup"]));
        let backup_ended = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::SeqCst);
        let (sender, sent) = sending.await.unwrap();
        let (receiver, arrivals) = receiving.await.unwrap();
        assert!(ran.contains("\"rows\":"), "{ran}");

        // The longest wait between two deliveries that overlaps the backup.
        let times: Vec<Instant> = arrivals.iter().map(|(at, _)| *at).collect();
        let first = times.iter().rposition(|t| *t <= backup_started).unwrap_or(0);
        let last = times.iter().position(|t| *t >= backup_ended).unwrap_or(times.len() - 1);
        let longest = times[first..=last].windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        let overall = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        eprintln!(
            "{backend:?}: backup of {filler}+ messages took {:?}; longest delivery gap during it {longest:?} \
             (whole stream {overall:?}); {sent} live messages sent, {} delivered",
            backup_ended - backup_started,
            arrivals.len() - 1
        );
        assert_eq!(arrivals.len() - 1, sent, "every live message was delivered once");
        assert!(longest < Duration::from_secs(1), "delivery stalled for {longest:?} during the backup");

        sender.disconnect().await;
        receiver.disconnect().await;
        assert!(eventually(TIMEOUT, || !store.is_online("bob").unwrap() && !store.is_online("alice").unwrap()).await);
        // Alice and bob left after the backup, so their last seen moved then;
        // nobody else's did, and nobody's retained presence did.
        let last_seen_after: Vec<_> = everyone.iter().map(|u| store.presence_of(u).unwrap()).collect();
        assert_eq!(last_seen_after[2..], last_seen_before[2..], "the backup changed a last seen");
        assert_eq!(last_seen_before[..2], [(false, None), (false, None)]);
        let presence_after = retained_presence(&server, ("watcher", &watcher), &idle).await;
        assert_eq!(presence_after, presence_before, "the backup changed a retained presence");
    }
}

/// Backs up a server on `from`, restores the backup into an empty database
/// on `to`, and checks a server there serves the same accounts, messages
/// and device backups.
async fn move_between_backends(from: Backend, to: Backend) {
    let key = "cd".repeat(32);
    let options = Options::default().env("BLUETICK_MESSAGES__KEY", &key);
    let mut old = Server::start_with(from, options.clone());
    let alice = old.register("alice");
    let bob = old.register("bob");
    for i in 0..3 {
        send_http(
            &old,
            &alice,
            &format!("a-{i}"),
            "bob",
            &format!("moving {i}"),
        );
    }
    let device_backup = "sealed on the phone".repeat(10);
    let put = request(
        old.http,
        "PUT",
        "/v1/me/backup",
        Some(&device_backup),
        Some(&bob),
    );
    assert_eq!(put.status, 201, "{}", put.body);
    old.searchable(3).await;
    let counts: BTreeMap<String, usize> = all_rows(&old.store())
        .into_iter()
        .map(|(table, rows)| (table, rows.len()))
        .collect();
    operator_ok(&old, &["job", "run", "backup"]);
    let archive = old.data_dir.path().join("media").join(newest_backup(&old));
    assert!(old.terminate().success());

    let target = TestDatabase::new(to);
    let restored = common::bluetick()
        .args([
            "restore",
            archive.to_str().unwrap(),
            "--database-url",
            &target.url,
        ])
        .env("BLUETICK_MESSAGES__KEY", &key)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(said.contains("converting rows"), "{said}");

    let new = Server::start_on(target, options);
    let moved: BTreeMap<String, usize> = all_rows(&new.store_with_key(&key))
        .into_iter()
        .map(|(table, rows)| (table, rows.len()))
        .collect();
    assert_eq!(moved, counts);
    new.login("alice", "alice-password");
    let fetched = request(new.http, "GET", "/v1/me/backup", None, Some(&bob));
    assert_eq!(
        (fetched.status, fetched.body.as_str()),
        (200, device_backup.as_str())
    );
    let privacy = request(new.http, "GET", "/v1/me/privacy", None, Some(&bob)).json();
    assert_eq!(privacy["read_receipts"], true);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = App::connect(&new, "bob", &bob, "phone", dir.path()).await;
    for i in 0..3 {
        phone.message_from("alice", &format!("moving {i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_restores_into_postgres() {
    move_between_backends(Backend::Sqlite, Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_restores_into_sqlite() {
    move_between_backends(Backend::Postgres, Backend::Sqlite).await;
}

/// On S3 the backup goes to the bucket (under the deployment's prefix),
/// `bluetick restore KEY` fetches it from there, and the restored server
/// serves the media messages whose bytes stayed in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_on_s3_restores_from_the_bucket_with_its_media_references() {
    use common::media::{self, MediaStore};
    let mut server = media::start(Backend::Postgres, MediaStore::S3, Options::default());
    let alice = server.register("alice");
    let bob = server.register("bob");
    let photo = b"\x89PNG not really, but bytes all the same".repeat(50);
    let media_id = media::upload_ok(server.http, &alice, "image/png", &photo);
    let sent = request(
        server.http,
        "POST",
        "/v1/messages",
        Some(&json!({"id": "photo-1", "to": "bob", "body": "", "media": {"id": media_id, "caption": "look"}}).to_string()),
        Some(&alice),
    );
    assert_eq!(sent.status, 201, "{}", sent.body);
    send_http(&server, &bob, "b-0", "alice", "nice photo");
    server.searchable(2).await;
    let before = all_rows(&server.store());
    assert_eq!((before["messages"].len(), before["media"].len()), (2, 1));

    operator_ok(&server, &["job", "run", "backup"]);
    let bucket = media::object_store(&server, MediaStore::S3);
    let backups = bucket.list("backups/").await.unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let key = backups[0].key.clone();
    assert!(
        !server.data_dir.path().join("media").exists(),
        "nothing was written locally"
    );

    assert!(server.terminate().success());
    server.database.wipe();
    let restored = operator_ok(&server, &["restore", &key]);
    assert!(restored.contains("restore complete"), "{restored}");
    assert_eq!(
        all_rows(&server.store()),
        before,
        "restored rows differ from the originals"
    );

    server.start_again();
    let history = request(
        server.http,
        "GET",
        "/v1/chats/alice/messages",
        None,
        Some(&bob),
    )
    .json();
    assert_eq!(
        history["items"][1]["media"]["id"],
        media_id.as_str(),
        "{history}"
    );
    let download = media::get(
        server.http,
        Some(&bob),
        &format!("/v1/media/{media_id}"),
        None,
    );
    assert_eq!(download.status, 200);
    assert_eq!(
        media::sha256_hex(&download.bytes),
        media::sha256_hex(&photo)
    );
    bucket.delete(&key).await.unwrap();
}
