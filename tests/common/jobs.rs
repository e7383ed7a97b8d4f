//! What the operations jobs' tests share: operator commands that must
//! succeed, the newest backup, a message sent over HTTP.

use serde_json::json;

use super::http::request;
use super::Server;

/// Runs an operator command against `server` and returns its stdout,
/// failing the test with its stderr if it failed.
pub fn operator_ok(server: &Server, args: &[&str]) -> String {
    let output = server.operator(args);
    assert!(
        output.status.success(),
        "bluetick {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The key of the newest backup in the server's object store (the media
/// directory, on the default local store).
pub fn newest_backup(server: &Server) -> String {
    let dir = server.data_dir.path().join("media").join("backups");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("backups directory")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".zip"))
        .collect();
    names.sort();
    format!("backups/{}", names.last().expect("a backup"))
}
/// Sends `body` from the token's owner to `to` over HTTP, asserting it
/// was stored (201).
pub fn send_http(server: &Server, token: &str, id: &str, to: &str, body: &str) {
    let sent = request(
        server.http,
        "POST",
        "/v1/messages",
        Some(&json!({ "id": id, "to": to, "body": body }).to_string()),
        Some(token),
    );
    assert_eq!(sent.status, 201, "send {id}: {}", sent.body);
}
