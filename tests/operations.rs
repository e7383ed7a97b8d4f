//! What operators see: health, readiness, metrics, configuration, and a
//! clean stop on SIGTERM.

mod common;

use common::http::request;
use common::mqtt::{self, TIMEOUT};
use common::{eventually, Backend, Server};
use std::time::Duration;
use store::on_both_backends;

on_both_backends! {
    async fn health_readiness_and_metrics_answer_and_counters_move(backend) {
        let server = Server::start(backend);
        let health = request(server.http, "GET", "/healthz", None, None);
        assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));
        let ready = request(server.http, "GET", "/readyz", None, None);
        assert_eq!((ready.status, ready.json()["status"].as_str()), (200, Some("ready")));

        let metrics = request(server.metrics, "GET", "/metrics", None, None);
        assert_eq!(metrics.status, 200);
        assert!(metrics.header("content-type").is_some_and(|t| t.starts_with("text/plain")), "{:?}", metrics.headers);
        assert_eq!(server.metric(&format!(r#"bluetick_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"))), 1.0);

        let token = server.register("alice");
        let before = server.metric("bluetick_mqtt_connects_total");
        let client = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
        assert_eq!(server.metric("bluetick_mqtt_connects_total"), before + 1.0);
        assert_eq!(server.metric("bluetick_mqtt_connected_clients"), 1.0);
        let _ = mqtt::connect(server.mqtt, "alice", Some(("alice", "bt_wrong"))).await.refusal();
        let _ = mqtt::connect(server.mqtt, "x/y", Some(("alice", &token))).await.refusal();
        assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="bad_credentials"}"#), 1.0);
        assert_eq!(server.metric(r#"bluetick_mqtt_refusals_total{reason="bad_client_id"}"#), 1.0);
        client.disconnect().await;
        assert!(eventually(TIMEOUT, || server.metric("bluetick_mqtt_connected_clients") == 0.0).await);
    }

    async fn sigterm_stops_accepting_closes_the_store_and_exits_cleanly(backend) {
        let mut server = Server::start(backend);
        let token = server.register("alice");
        let _client = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
        let store = server.store();
        assert!(eventually(TIMEOUT, || store.user_sessions("alice").unwrap().len() == 1).await);

        let status = server.terminate();
        assert!(status.success(), "exit status {status:?}\n{}", server.log());
        assert!(server.log().contains("store closed"), "{}", server.log());
        assert!(std::net::TcpStream::connect_timeout(&server.mqtt, Duration::from_secs(1)).is_err(), "MQTT still accepting");
        assert!(std::net::TcpStream::connect_timeout(&server.http, Duration::from_secs(1)).is_err(), "HTTP still accepting");
        // The sessions of the stopped node are gone with it.
        assert!(store.user_sessions("alice").unwrap().is_empty());
        // And what was stored survives a restart on the same database.
        assert!(store.verify_password("alice", "alice-password").is_ok());
    }
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_redacted() {
    let output = common::bluetick()
        .args([
            "config",
            "--database-url",
            "postgres://bt:hunter2@db.internal/bt",
            "--mqtt-addr",
            "127.0.0.1:1999",
        ])
        .env("BLUETICK_MQTT__MAX_CONNECTIONS", "1234")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("postgres://bt:***@db.internal/bt"),
        "{shown}"
    );
    assert!(shown.contains("addr = \"127.0.0.1:1999\""), "{shown}");
    assert!(shown.contains("max_connections = 1234"), "{shown}");
}

#[test]
fn a_typo_in_the_configuration_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bluetick.toml");
    std::fs::write(&file, "[mqtt]\nmax_conections = 10\n").unwrap();
    let output = common::bluetick()
        .args(["config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_conections"));
}

#[test]
fn migrate_applies_the_schema_once() {
    let db = common::TestDatabase::new(Backend::Sqlite);
    let first = common::bluetick()
        .args(["migrate", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(first.status.success());
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied"));
    let second = common::bluetick()
        .args(["migrate", "--database-url", &db.url])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "schema is up to date"
    );
}

#[test]
fn a_log_written_to_a_file_has_no_colour_codes() {
    let server = Server::start(Backend::Sqlite);
    server.register("alice");
    let log = server.log();
    assert!(log.contains("INFO"), "the server logs at INFO by default: {log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a log file: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_key_and_data_dir_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let mut server = Server::start_with(Backend::Sqlite, common::Options::default().umask(0o022));
    let token = server.register("alice");
    let database = std::path::PathBuf::from(server.database.url.trim_start_matches("sqlite://"));
    let with_suffix = |suffix: &str| {
        let mut name = database.clone().into_os_string();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let key = server.data_dir.path().join("message.key");
    for file in [
        database.clone(),
        with_suffix("-wal"),
        with_suffix("-shm"),
        key,
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(server.data_dir.path()), 0o700);
    // Media objects and backups in the local store, and their directories.
    common::media::upload_ok(server.http, &token, "application/pdf", b"%PDF-1.4 private");
    let backup = server.operator(&["job", "run", "backup"]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let mut pending = vec![server.data_dir.path().join("media")];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(files >= 2, "the upload and the backup");

    // A data directory and database left readable by others are narrowed
    // on the next start.
    assert!(server.terminate().success());
    for (path, loose) in [
        (server.data_dir.path().to_owned(), 0o755),
        (database.clone(), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
    }
    server.start_again();
    assert_eq!(mode(server.data_dir.path()), 0o700);
    assert_eq!(mode(&database), 0o600);
}
