//! Accounts over HTTP and the operator CLI: registration, login, logout,
//! and the refusals a client gets for bad input.

mod common;

use common::http::request;
use common::mqtt;
use common::{Backend, Server};
use rumqttc::ConnectReturnCode;
use store::on_both_backends;

fn post(server: &Server, path: &str, body: &str) -> common::http::Response {
    request(server.http, "POST", path, Some(body), None)
}

on_both_backends! {
    async fn a_user_registers_logs_in_and_connects(backend) {
        let server = Server::start(backend);
        let created = post(&server, "/v1/users", r#"{"name":"alice","password":"correct horse"}"#);
        assert_eq!(created.status, 201);
        assert_eq!(created.json()["name"], "alice");
        let issued = post(&server, "/v1/tokens", r#"{"name":"alice","password":"correct horse"}"#);
        assert_eq!(issued.status, 201);
        let token = issued.json()["token"].as_str().unwrap().to_owned();
        let expires_at = issued.json()["expires_at"].as_i64().unwrap();
        let now = store::clock::now_ms();
        assert!(expires_at > now + 29 * 86_400_000 && expires_at <= now + 30 * 86_400_000 + 60_000, "default TTL is 30 days");
        mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
    }

    async fn bad_registrations_get_clear_json_errors(backend) {
        let server = Server::start(backend);
        assert_eq!(post(&server, "/v1/users", r#"{"name":"alice","password":"correct horse"}"#).status, 201);
        let cases = [
            (r#"{"name":"alice","password":"another one"}"#, 409, "name_taken"),
            (r#"{"name":"al","password":"correct horse"}"#, 400, "invalid_name"),
            (r#"{"name":"Alice","password":"correct horse"}"#, 400, "invalid_name"),
            (r#"{"name":"a_very_long_name_that_is_too_long_x","password":"correct horse"}"#, 400, "invalid_name"),
            (r#"{"name":"bob","password":"short"}"#, 400, "invalid_password"),
            (r#"{"name":"bob"}"#, 400, "bad_request"),
            (r#"{"name":"bob","password":"#, 400, "bad_request"),
            ("not json at all", 400, "bad_request"),
        ];
        for (body, status, code) in cases {
            let response = post(&server, "/v1/users", body);
            assert_eq!((response.status, response.error_code().as_str()), (status, code), "{body}");
            assert!(response.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let huge = format!(r#"{{"name":"bob","password":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
        let response = post(&server, "/v1/users", &huge);
        assert_eq!((response.status, response.error_code().as_str()), (413, "too_large"));
        let missing = request(server.http, "GET", "/v1/nowhere", None, None);
        assert_eq!((missing.status, missing.error_code().as_str()), (404, "not_found"));
        // The server keeps serving after all of that.
        assert_eq!(post(&server, "/v1/users", r#"{"name":"carol","password":"correct horse"}"#).status, 201);
    }

    async fn wrong_passwords_and_unknown_users_get_no_token(backend) {
        let server = Server::start(backend);
        server.register("alice");
        for body in [r#"{"name":"alice","password":"wrong password"}"#, r#"{"name":"nobody","password":"whatever1"}"#] {
            let response = post(&server, "/v1/tokens", body);
            assert_eq!((response.status, response.error_code().as_str()), (401, "unauthorized"), "{body}");
        }
    }

    async fn logout_revokes_the_token_for_http_and_mqtt(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let other_token = server.login("alice", "alice-password");
        let mut live = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await.expect_connected();
        let mut other = mqtt::connect(server.mqtt, "alice.laptop", Some(("alice", &other_token)))
            .await
            .expect_connected();
        assert!(live.is_alive("u/alice/inbox").await);
        let logout = request(server.http, "DELETE", "/v1/tokens/current", None, Some(&token));
        assert_eq!(logout.status, 204);
        let again = request(server.http, "DELETE", "/v1/tokens/current", None, Some(&token));
        assert_eq!((again.status, again.error_code().as_str()), (401, "unauthorized"));
        let anonymous = request(server.http, "DELETE", "/v1/tokens/current", None, None);
        assert_eq!((anonymous.status, anonymous.error_code().as_str()), (401, "unauthorized"));
        let refused = mqtt::connect(server.mqtt, "alice", Some(("alice", &token))).await;
        assert_eq!(refused.refusal(), ConnectReturnCode::BadUserNamePassword);
        // The connection that logged in with the token is closed on its next
        // packet; the device with its own token carries on.
        assert!(!live.is_alive("u/alice/inbox").await, "a revoked token's connection is closed");
        assert!(other.is_alive("u/alice/inbox").await);
        assert_eq!(server.metric("bluetick_mqtt_refusals_total{reason=\"revoked_token\"}"), 1.0);
    }

    async fn operators_add_users_and_issue_tokens_from_the_cli(backend) {
        let server = Server::start(backend);
        let url = server.database.url.clone();
        let added = common::bluetick()
            .args(["user", "add", "dave", "--password", "correct horse", "--database-url", &url])
            .output()
            .unwrap();
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
        let duplicate = common::bluetick()
            .args(["user", "add", "dave", "--password", "correct horse", "--database-url", &url])
            .output()
            .unwrap();
        assert!(!duplicate.status.success());
        assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already taken"));

        let issued = common::bluetick().args(["user", "token", "dave", "--database-url", &url]).output().unwrap();
        assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
        let stdout = String::from_utf8(issued.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "the token alone on stdout: {stdout:?}");
        let token = stdout.trim();
        let mut client = mqtt::connect(server.mqtt, "dave", Some(("dave", token))).await.expect_connected();
        assert!(client.is_alive("u/dave/inbox").await);
        // The CLI's token works for HTTP too.
        let logout = request(server.http, "DELETE", "/v1/tokens/current", None, Some(token));
        assert_eq!(logout.status, 204);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_are_throttled_per_name() {
    let server = Server::start_with(
        Backend::Sqlite,
        common::Options::default()
            .env("BLUETICK_AUTH__MAX_LOGIN_FAILURES", "3")
            .env("BLUETICK_AUTH__LOGIN_WINDOW_SECS", "2"),
    );
    server.register("alice");
    server.register("bob");
    for _ in 0..3 {
        let wrong = post(
            &server,
            "/v1/tokens",
            r#"{"name":"alice","password":"guess guess"}"#,
        );
        assert_eq!(
            (wrong.status, wrong.error_code().as_str()),
            (401, "unauthorized")
        );
    }
    // Now even the right password waits: guessing is capped per name.
    let throttled = post(
        &server,
        "/v1/tokens",
        r#"{"name":"alice","password":"alice-password"}"#,
    );
    assert_eq!(
        (throttled.status, throttled.error_code().as_str()),
        (429, "rate_limited")
    );
    assert!(throttled.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("retry in"));
    // Other users are unaffected, and the limit lifts once the window passes.
    assert_eq!(
        post(
            &server,
            "/v1/tokens",
            r#"{"name":"bob","password":"bob-password"}"#
        )
        .status,
        201
    );
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(
        post(
            &server,
            "/v1/tokens",
            r#"{"name":"alice","password":"alice-password"}"#
        )
        .status,
        201
    );
}

#[test]
fn cli_token_for_an_unknown_user_fails_clearly() {
    let db = common::TestDatabase::new(Backend::Sqlite);
    let output = common::bluetick()
        .args(["user", "token", "nobody", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no token may be printed");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no such user"));
}

/// Two servers on one PostgreSQL: a logout on one closes the other's
/// connections that used the token, and the other admits it no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_server_closes_the_tokens_connections_on_another() {
    let first = Server::start(Backend::Postgres);
    let second = Server::start_on(first.database.share(), common::Options::default());
    let token = first.register("alice");
    let other_token = first.login("alice", "alice-password");
    let mut phone = mqtt::connect(second.mqtt, "alice.phone", Some(("alice", &token)))
        .await
        .expect_connected();
    let mut laptop = mqtt::connect(second.mqtt, "alice.laptop", Some(("alice", &other_token)))
        .await
        .expect_connected();
    assert!(phone.is_alive("u/alice/inbox").await);

    let logout = request(
        first.http,
        "DELETE",
        "/v1/tokens/current",
        None,
        Some(&token),
    );
    assert_eq!(logout.status, 204);
    // The second server reads logouts every 2 s; the phone's next packet
    // after that finds its connection closed.
    let mut closed = false;
    for _ in 0..20 {
        if !phone.is_alive("u/alice/inbox").await {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        closed,
        "the phone's connection on the second server is closed within 10 s"
    );
    assert_eq!(
        second.metric("bluetick_mqtt_refusals_total{reason=\"revoked_token\"}"),
        1.0
    );
    assert!(
        laptop.is_alive("u/alice/inbox").await,
        "the laptop's own token still works"
    );
    let refused = mqtt::connect(second.mqtt, "alice.phone", Some(("alice", &token))).await;
    assert_eq!(refused.refusal(), ConnectReturnCode::BadUserNamePassword);
}
