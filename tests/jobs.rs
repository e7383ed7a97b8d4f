//! Operations jobs as an operator sees them: backup and restore, backups
//! under live traffic, the schedule across two servers, cleanup, exports
//! and device backups. Real server processes, real databases, the real
//! `bluetick` commands.

mod common;

use common::chat::App;
use common::http::request;
use common::mqtt::{self, TIMEOUT};
use common::{eventually, Backend, Options, Server, TestDatabase};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::inbox::NewEvent;

/// Every row of every data table, as the database renders it, by table:
/// what a restore must give back exactly. Tables added later (stars,
/// media, archives) are compared too, without changing this test.
fn all_rows(store: &store::Store) -> BTreeMap<String, Vec<String>> {
    let mut snapshot = store.snapshot().expect("snapshot");
    let mut rows = BTreeMap::new();
    for table in snapshot.tables().expect("tables") {
        if jobs::backup::RUNTIME_TABLES.contains(&table.name.as_str()) {
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

/// Runs an operator command against `server` and returns its stdout,
/// failing the test with its stderr if it failed.
fn operator_ok(server: &Server, args: &[&str]) -> String {
    let output = server.operator(args);
    assert!(
        output.status.success(),
        "bluetick {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The newest backup key in the server's backup directory.
/// The key of the newest backup in the server's object store (the media
/// directory, on the default local store).
fn newest_backup(server: &Server) -> String {
    let dir = server.data_dir.path().join("media").join("backups");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("backups directory")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".zip"))
        .collect();
    names.sort();
    format!("backups/{}", names.last().expect("a backup"))
}

fn send_http(server: &Server, token: &str, id: &str, to: &str, body: &str) {
    let sent = request(
        server.http,
        "POST",
        "/v1/messages",
        Some(&json!({ "id": id, "to": to, "body": body }).to_string()),
        Some(token),
    );
    assert_eq!(sent.status, 201, "send {id}: {}", sent.body);
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
        assert!(!before["search_terms"].is_empty());
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
        // Stars and search work on the restored rows.
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

    async fn the_scheduler_runs_backups_on_schedule_keeps_the_newest_and_metrics_show_them(backend) {
        let server = Server::start_with(backend, Options::default()
            .env("BLUETICK_JOBS__SCHEDULES__BACKUP", "* * * * * *")
            // Only backups run: expiry fires every minute, which a run
            // crossing a minute boundary would otherwise see.
            .env("BLUETICK_JOBS__SCHEDULES__CLEANUP", "off")
            .env("BLUETICK_JOBS__SCHEDULES__EXPIRY", "off")
            .env("BLUETICK_JOBS__SCHEDULES__ARCHIVAL", "off")
            .env("BLUETICK_JOBS__BACKUP_KEEP", "2"));
        server.register("alice");
        let store = server.store();
        assert!(eventually(Duration::from_secs(15), || {
            store.job_runs(Some("backup"), 10).unwrap().iter().filter(|r| r.status == "ok").count() >= 3
        }).await, "three scheduled backups within 15 s");
        let runs = store.job_runs(None, 100).unwrap();
        assert!(runs.iter().all(|r| r.job == "backup" && r.slot.is_some()), "only backups are scheduled: {runs:?}");
        assert!(runs.iter().all(|r| r.slot.unwrap() % 1000 == 0), "slots are whole seconds");
        let kept = || std::fs::read_dir(server.data_dir.path().join("media").join("backups")).unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".zip"))
            .count();
        // A backup writes its file, then deletes the oldest: between the
        // two there is one more, so look until retention has run.
        assert!(eventually(Duration::from_secs(5), || kept() == 2).await,
            "only the newest jobs.backup_keep backups stay: {}", kept());
        let last_success = server.metric(r#"bluetick_job_last_success_timestamp_seconds{job="backup"}"#);
        assert!((last_success * 1000.0 - store::clock::now_ms() as f64).abs() < 10_000.0, "{last_success}");
        assert!(server.metric(r#"bluetick_job_duration_seconds{job="backup"}"#) > 0.0);
        assert_eq!(server.metric(r#"bluetick_job_last_run_ok{job="backup"}"#), 1.0);

        // While someone else holds the job, a run by hand says so and fails.
        while !store.try_lease("backup", "an operator elsewhere", 60_000).unwrap() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let busy = server.operator(&["job", "run", "backup"]);
        assert!(!busy.status.success());
        let said = String::from_utf8_lossy(&busy.stderr);
        assert!(said.contains("running elsewhere") && said.contains("an operator elsewhere"), "{said}");
        store.release_lease("backup", "an operator elsewhere").unwrap();
    }

    async fn cleanup_deletes_expired_tokens_old_dead_letters_and_dead_nodes_sessions_only(backend) {
        let server = Server::start(backend);
        let alice = server.register("alice");
        let store = server.store();
        let name = protocol::UserName::parse("alice").unwrap();
        store.issue_token(&name, Duration::ZERO).unwrap();
        store.transaction(|tx| tx.dead_letter("alice", "u/alice/send", b"{", "malformed_json", "test")).unwrap();
        let ghost = store::sessions::Session {
            connection_id: "ghost:1".into(),
            user_name: "alice".into(),
            client_id: "alice.old".into(),
            node: "ghost".into(),
            connected_at: 1,
        };
        store.open_session(&ghost).unwrap();
        let live = mqtt::connect(server.mqtt, "alice.phone", Some(("alice", &alice))).await.expect_connected();
        assert!(eventually(TIMEOUT, || store.user_sessions("alice").unwrap().len() == 2).await);
        let last_seen = store.presence_of("alice").unwrap().1;

        let run_at = |retention: &str, skew_secs: &str| {
            let output = common::bluetick()
                .args(["job", "run", "cleanup", "--database-url", &server.database.url])
                .arg("--data-dir").arg(server.data_dir.path())
                .env("BLUETICK_JOBS__DEAD_LETTER_RETENTION_DAYS", retention)
                .env(store::clock::SKEW_VAR, skew_secs)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let out = String::from_utf8_lossy(&output.stdout).into_owned();
            let counts = out.split_once(": ").map(|(_, c)| c.trim().to_owned()).unwrap();
            serde_json::from_str::<Value>(&counts).unwrap()
        };
        let run = |retention: &str| run_at(retention, "0");
        let first = run("30");
        assert_eq!((first["tokens"].as_u64(), first["sessions"].as_u64(), first["dead_letters"].as_u64()), (Some(1), Some(1), Some(0)), "{first}");
        let second = run("0");
        assert_eq!((second["tokens"].as_u64(), second["sessions"].as_u64(), second["dead_letters"].as_u64()), (Some(0), Some(0), Some(1)), "{second}");
        let third = run("0");
        assert!(third.as_object().unwrap().values().all(|v| v == 0), "a second run deletes nothing: {third}");

        let sessions = store.user_sessions("alice").unwrap();
        assert_eq!(sessions.len(), 1, "the live connection's row stays");
        assert_eq!(sessions[0].client_id, "alice.phone");
        assert_eq!(store.authenticate_token(&alice).unwrap().user, name, "unexpired tokens stay");
        assert_eq!(store.presence_of("alice").unwrap().1, last_seen);
        live.disconnect().await;
        let runs = operator_ok(&server, &["job", "runs", "--job", "cleanup"]);
        assert_eq!(runs.lines().filter(|l| l.contains("\tok\t")).count(), 3, "{runs}");

        // A logout's record stays a day, for every server to follow.
        let laptop = server.login("alice", "alice-password");
        assert_eq!(request(server.http, "DELETE", "/v1/tokens/current", None, Some(&laptop)).status, 204);
        assert_eq!(run("30")["token_revocations"].as_u64(), Some(0));
        assert_eq!(run_at("30", "90000")["token_revocations"].as_u64(), Some(1));
    }

    async fn a_user_export_holds_their_messages_in_clear_and_device_backups_keep_the_newest(backend) {
        let server = Server::start_with(backend, Options::default()
            .env("BLUETICK_JOBS__DEVICE_BACKUPS_KEPT", "2")
            .env("BLUETICK_JOBS__DEVICE_BACKUP_MAX_BYTES", "1000"));
        let alice = server.register("alice");
        let bob = server.register("bob");
        send_http(&server, &alice, "a-1", "bob", "for bob's eyes");
        send_http(&server, &bob, "b-1", "alice", "and back");
        let document = b"%PDF-1.4 for alice";
        let media_id = common::media::upload_ok(server.http, &bob, "application/pdf", document);
        let with_media = json!({ "id": "b-2", "to": "alice", "media": { "id": media_id } }).to_string();
        let sent = request(server.http, "POST", "/v1/messages", Some(&with_media), Some(&bob));
        assert_eq!(sent.status, 201, "{}", sent.body);
        for i in 0..3 {
            let put = request(server.http, "PUT", "/v1/me/backup", Some(&format!("backup {i}")), Some(&alice));
            assert_eq!(put.status, 201, "{}", put.body);
        }
        assert_eq!(server.store().device_backups("alice").unwrap().len(), 2);
        let latest = request(server.http, "GET", "/v1/me/backup", None, Some(&alice));
        assert_eq!(latest.body, "backup 2");
        let too_big = request(server.http, "PUT", "/v1/me/backup", Some(&"x".repeat(1001)), Some(&alice));
        assert_eq!((too_big.status, too_big.error_code().as_str()), (413, "too_large"));
        let none = request(server.http, "GET", "/v1/me/backup", None, Some(&bob));
        assert_eq!(none.status, 404);
        let anonymous = request(server.http, "PUT", "/v1/me/backup", Some("x"), None);
        assert_eq!(anonymous.status, 401);

        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("alice.zip");
        let printed = operator_ok(&server, &["user", "export", "alice", "--output", path.to_str().unwrap()]);
        assert_eq!(printed.trim(), path.display().to_string());
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut read = |name: &str| {
            let mut text = String::new();
            zip.by_name(name).unwrap().read_to_string(&mut text).unwrap();
            serde_json::from_str::<Value>(&text).unwrap()
        };
        assert_eq!(read("user.json")["name"], "alice");
        let messages = read("messages.json");
        let bodies: Vec<&str> = messages.as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
        assert_eq!(bodies, ["for bob's eyes", "and back", ""]);
        let media = read("media.json");
        assert_eq!(media.as_array().unwrap().len(), 1, "{media}");
        assert_eq!(media[0]["media_id"], media_id.as_str());
        assert_eq!(media[0]["owner"], "bob");
        assert_eq!(media[0]["sha256"], common::media::sha256_hex(document));
        assert_eq!(read("device_backups.json").as_array().unwrap().len(), 2);
        assert_eq!(server.store().presence_of("alice").unwrap(), (false, None), "nothing here moved last seen");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_each_fire_the_schedule_and_each_slot_runs_once() {
    let key = "ab".repeat(32);
    let options = |node: &str| {
        Options::default()
            .env("BLUETICK_NODE", node)
            .env("BLUETICK_MESSAGES__KEY", &key)
            .env("BLUETICK_JOBS__SCHEDULES__CLEANUP", "* * * * * *")
            .env("BLUETICK_JOBS__SCHEDULES__BACKUP", "*/2 * * * * *")
    };
    let mut a = Server::start_with(Backend::Postgres, options("node-a"));
    let mut b = Server::start_on(a.database.share(), options("node-b"));
    a.register("alice");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(a.metric(r#"bluetick_job_last_success_timestamp_seconds{job="cleanup"}"#) > 0.0);
    assert!(b.metric(r#"bluetick_job_last_success_timestamp_seconds{job="backup"}"#) > 0.0);
    assert!(b.metric(r#"bluetick_job_duration_seconds{job="backup"}"#) > 0.0);
    assert!(a.terminate().success() && b.terminate().success());

    // Which slots each server fired, from its log (colours removed).
    let fired = |log: &str, job: &str| -> BTreeSet<i64> {
        strip_colours(log)
            .lines()
            .filter(|l| l.contains("tick ") && l.contains(&format!("job=\"{job}\"")))
            .filter_map(|l| {
                l.split("slot=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let store = {
        let url = a.database.url.clone();
        store::Store::open(&url, &Default::default()).unwrap()
    };
    let runs = store.job_runs(None, 1000).unwrap();
    for job in ["cleanup", "backup"] {
        let (by_a, by_b) = (fired(&a.log(), job), fired(&b.log(), job));
        let both: Vec<i64> = by_a.intersection(&by_b).copied().collect();
        let per_slot = |slot: i64| {
            runs.iter()
                .filter(|r| r.job == job && r.slot == Some(slot))
                .collect::<Vec<_>>()
        };
        let nodes: BTreeSet<&str> = runs
            .iter()
            .filter(|r| r.job == job)
            .map(|r| r.node.as_str())
            .collect();
        eprintln!(
            "{job}: {} slots fired by both servers, runs by {nodes:?}",
            both.len()
        );
        assert!(
            both.len() >= if job == "cleanup" { 4 } else { 2 },
            "{job}: a fired {by_a:?}, b fired {by_b:?}"
        );
        for slot in both {
            let ran = per_slot(slot);
            assert_eq!(
                ran.len(),
                1,
                "{job} slot {slot} ran {} times: {ran:?}",
                ran.len()
            );
            assert_eq!(ran[0].status, "ok", "{:?}", ran[0]);
        }
    }
    assert!(runs.iter().all(|r| r.slot.is_some()), "only scheduled runs");
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_is_refused_before_anything_is_loaded() {
    let mut server = Server::start(Backend::Sqlite);
    server.register("alice");
    operator_ok(&server, &["job", "run", "backup"]);
    let key = newest_backup(&server);
    assert!(server.terminate().success());

    // Same manifest, one changed byte in the users table.
    let original = server.data_dir.path().join("media").join(&key);
    let damaged = server.data_dir.path().join("damaged.zip");
    rewrite_archive(&original, &damaged, Manifest::Keep, |name, bytes| {
        if name == "tables/users.jsonl" {
            unchanged(
                String::from_utf8(bytes)
                    .unwrap()
                    .replace("alice", "mallory")
                    .into_bytes(),
            )
        } else {
            unchanged(bytes)
        }
    });

    let said = restore_refused(&mut server, &damaged);
    assert!(said.contains("tables/users.jsonl is damaged"), "{said}");
    // The intact backup still restores.
    let restored = operator_ok(&server, &["restore", &key]);
    assert!(restored.contains("restored users: 1 rows"), "{restored}");
}

/// What [`rewrite_archive`] does with the manifest of an edited archive.
enum Manifest<'a> {
    /// Leave it (and its tag) as they were: the edit shows as damage.
    Keep,
    /// Update each edited table's SHA-256 and row count to match, as a
    /// forger would, but keep the old tag, having no key.
    Forge,
    /// Update it and sign it again with the real backup key, as the server
    /// would have if the database had held these rows.
    Sign(&'a jobs::authentication::BackupKey),
}

/// Copies the archive at `from` to `to`, passing every table file through
/// `edit` (name, bytes → what to write instead, streamed, so an edit can
/// be far larger than memory) and handling the manifest as `manifest` says.
fn rewrite_archive(
    from: &std::path::Path,
    to: &std::path::Path,
    manifest: Manifest,
    mut edit: impl FnMut(&str, Vec<u8>) -> Box<dyn Read>,
) {
    use sha2::Digest;
    let mut source = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let options = zip::write::SimpleFileOptions::default().large_file(true);
    let mut members = BTreeMap::new();
    for i in 0..source.len() {
        let mut member = source.by_index(i).unwrap();
        let mut bytes = Vec::new();
        member.read_to_end(&mut bytes).unwrap();
        members.insert(member.name().to_owned(), bytes);
    }
    let mut listed: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    for (name, bytes) in &mut members {
        if !name.starts_with("tables/") {
            continue;
        }
        let mut edited = edit(name, std::mem::take(bytes));
        out.start_file(name.as_str(), options).unwrap();
        let (mut hasher, mut rows, mut chunk) = (sha2::Sha256::new(), 0u64, vec![0u8; 1 << 20]);
        loop {
            let n = edited.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&chunk[..n]);
            rows += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            std::io::Write::write_all(&mut out, &chunk[..n]).unwrap();
        }
        let entry = listed["tables"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["file"] == name.as_str())
            .unwrap();
        entry["rows"] = json!(rows);
        entry["sha256"] = json!(store::tokens::hex(&hasher.finalize()));
    }
    let manifest_bytes = match manifest {
        Manifest::Keep => members["manifest.json"].clone(),
        Manifest::Forge | Manifest::Sign(_) => serde_json::to_vec_pretty(&listed).unwrap(),
    };
    let tag = match manifest {
        Manifest::Keep | Manifest::Forge => members["manifest.hmac"].clone(),
        Manifest::Sign(key) => key.sign(&manifest_bytes).into_bytes(),
    };
    for (name, bytes) in [("manifest.json", manifest_bytes), ("manifest.hmac", tag)] {
        out.start_file(name, options).unwrap();
        std::io::Write::write_all(&mut out, &bytes).unwrap();
    }
    out.finish().unwrap();
}

/// Wipes `server`'s database, restores `archive` into it, and returns what
/// restore said on stderr, failing the test unless the restore was refused
/// with nothing loaded.
fn restore_refused(server: &mut Server, archive: &std::path::Path) -> String {
    server.database.wipe();
    let refused = server.operator(&["restore", archive.to_str().unwrap()]);
    assert!(
        !refused.status.success(),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert_nothing_loaded(server);
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

/// Every table of `server`'s database (if any was created) is empty.
fn assert_nothing_loaded(server: &Server) {
    let store = server.store();
    for table in store.tables().unwrap() {
        let rows = store.row_count(&table.name).unwrap();
        assert_eq!(rows, 0, "{} was loaded", table.name);
    }
}

/// A table file unchanged, for [`rewrite_archive`].
fn unchanged(bytes: Vec<u8>) -> Box<dyn Read> {
    Box::new(std::io::Cursor::new(bytes))
}

/// A table file with `row` appended.
fn with_row(bytes: Vec<u8>, row: impl Read + 'static) -> Box<dyn Read> {
    Box::new(std::io::Cursor::new(bytes).chain(row).chain(&b"\n"[..]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_backup_with_a_planted_token_is_refused_and_nothing_is_loaded() {
    let mut server = Server::start(Backend::Sqlite);
    let alice = server.register("alice");
    operator_ok(&server, &["job", "run", "backup"]);
    let key = newest_backup(&server);
    assert!(server.terminate().success());

    // A token row for alice whose token the forger knows, with the
    // manifest's checksums and row counts updated to match: everything
    // restore used to check is consistent, only the tag is old.
    let original = server.data_dir.path().join("media").join(&key);
    let edited = server.data_dir.path().join("edited.zip");
    let planted = "planted-token-0123456789";
    let row = json!({
        "id": 9999, "user_id": 1, "token_hash": store::tokens::token_hash(planted),
        "created_at": 0, "expires_at": i64::MAX / 2,
    });
    rewrite_archive(&original, &edited, Manifest::Forge, |name, bytes| {
        if name == "tables/tokens.jsonl" {
            with_row(bytes, std::io::Cursor::new(row.to_string()))
        } else {
            unchanged(bytes)
        }
    });

    let said = restore_refused(&mut server, &edited);
    assert!(
        said.contains("not authenticated by this server's backup key"),
        "{said}"
    );

    // The untouched backup restores; alice's token works, the planted one
    // never existed.
    operator_ok(&server, &["restore", &key]);
    server.start_again();
    let mine = request(server.http, "GET", "/v1/me/privacy", None, Some(&alice));
    assert_eq!(mine.status, 200, "{}", mine.body);
    let forged = request(server.http, "GET", "/v1/me/privacy", None, Some(planted));
    assert_eq!(forged.status, 401, "{}", forged.body);
}

/// Runs `bluetick ARGS` against `server` and returns its output with the
/// peak resident memory of that process (`ru_maxrss` from `wait4`), in
/// bytes. An upper bound: Linux also counts the peak of this test process
/// at the moment of the spawn, whose memory the child starts in.
// The child is reaped by `wait4`, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn operator_with_peak_memory(server: &Server, args: &[&str]) -> (std::process::Output, u64) {
    use std::process::Stdio;
    let mut child = server
        .operator_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bluetick");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps our own child, which
    // `child` then never waits for again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let status = std::os::unix::process::ExitStatusExt::from_raw(status);
    let output = std::process::Output {
        status,
        stdout,
        stderr,
    };
    (output, usage.ru_maxrss as u64 * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_a_256_mb_row_is_refused_in_bounded_memory_and_loads_nothing() {
    let message_key = "ef".repeat(32);
    let mut server = Server::start_with(
        Backend::Sqlite,
        Options::default().env("BLUETICK_MESSAGES__KEY", &message_key),
    );
    server.register("alice");
    operator_ok(&server, &["job", "run", "backup"]);
    let key = newest_backup(&server);
    assert!(server.terminate().success());

    // A row of 256 MiB that deflates to a few hundred KiB, in an archive
    // signed with the real key: size alone must stop it. It is streamed,
    // never held: the restore process starts as a copy of this one, and
    // its peak memory must be its own.
    let signing =
        jobs::authentication::BackupKey::of(&server.store_with_key(&message_key)).unwrap();
    let original = server.data_dir.path().join("media").join(&key);
    let bomb = server.data_dir.path().join("bomb.zip");
    rewrite_archive(&original, &bomb, Manifest::Sign(&signing), |name, bytes| {
        if name != "tables/users.jsonl" {
            return unchanged(bytes);
        }
        let huge = (&br#"{"id":2,"name":""#[..])
            .chain(std::io::repeat(b'a').take(256 << 20))
            .chain(&br#"","password_hash":"x","created_at":0}"#[..]);
        with_row(bytes, huge)
    });
    let archive_bytes = std::fs::metadata(&bomb).unwrap().len();

    server.database.wipe();
    let (refused, peak) = operator_with_peak_memory(&server, &["restore", bomb.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&refused.stderr);
    eprintln!(
        "a {} KiB archive with a 256 MiB row: restore refused it with a peak RSS of {:.1} MiB",
        archive_bytes / 1024,
        peak as f64 / (1 << 20) as f64
    );
    assert!(
        archive_bytes < 2 << 20,
        "the bomb is small: {archive_bytes} bytes"
    );
    assert!(
        !refused.status.success(),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(
        said.contains("row 2 of tables/users.jsonl is longer than"),
        "{said}"
    );
    assert!(peak < 128 << 20, "restore peaked at {peak} bytes");
    assert_nothing_loaded(&server);
    // The same archive without the bomb still restores.
    let restored = operator_ok(&server, &["restore", &key]);
    assert!(restored.contains("archive authenticated"), "{restored}");
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
    assert_eq!(media::sha256_hex(&download.body), media::sha256_hex(&photo));
    bucket.delete(&key).await.unwrap();
}
