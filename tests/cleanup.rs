//! The cleanup job: expired tokens, old dead letters and the sessions of
//! dead nodes go; everything else stays.

mod common;

use common::http::request;
use common::jobs::operator_ok;
use common::mqtt::{self, TIMEOUT};
use common::{eventually, Server};
use serde_json::Value;
use std::time::Duration;
use store::on_both_backends;

on_both_backends! {
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
}
