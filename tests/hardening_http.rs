//! The HTTP server under abuse (issue 12): password guessing, argon2
//! floods, mass registration, silent and trickling sockets, connection
//! floods, wrong methods, and what `/metrics` may tell. Each test plays
//! the attack against a real server and checks what the attacker gets (a
//! clear refusal), what everyone else gets (service), and what the server
//! keeps (bounded memory, no open sockets).

mod common;

use common::http::{post_from, request, Response};
use common::media::proc_kib;
use common::mqtt::{self, TIMEOUT};
use common::{eventually, Backend, Options, Server};
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A `POST` from another client's address (loopback answers all of
/// 127.0.0.0/8; every other request comes from 127.0.0.1).
async fn post_from_elsewhere(server: &Server, path: &str, body: &str) -> Response {
    let elsewhere: IpAddr = "127.0.0.2".parse().unwrap();
    post_from(elsewhere, server.http, path, body).await
}

fn credentials(name: &str, password: &str) -> String {
    json!({ "name": name, "password": password }).to_string()
}

fn post(server: &Server, path: &str, body: &str) -> Response {
    request(server.http, "POST", path, Some(body), None)
}

/// Sends `bodies` to `path` all at once, one thread each, and returns the
/// answers in order.
fn burst(http: SocketAddr, path: &'static str, bodies: Vec<String>) -> Vec<Response> {
    let start = Arc::new(Barrier::new(bodies.len()));
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                request(http, "POST", path, Some(&body), None)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// A 429 or 503 refusal as the docs promise it: the error JSON with
/// `code` and a whole number of seconds in `Retry-After`.
fn assert_refusal_with_retry_after(response: &Response, status: u16, code: &str) {
    assert_eq!(
        (response.status, response.error_code().as_str()),
        (status, code),
        "{}",
        response.body
    );
    let retry = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", response.headers));
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After: {retry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_logins_check_no_more_than_the_limit_and_floods_give_memory_back() {
    let server = Server::start(Backend::Sqlite);
    server.register("alice");
    let started_kib = proc_kib(server.pid(), "VmRSS");

    // 40 guesses at once: exactly max_login_failures (10) are checked, the
    // rest are refused without running argon2.
    let guesses = vec![credentials("alice", "wrong guess"); 40];
    let answers = burst(server.http, "/v1/tokens", guesses);
    let checked = answers.iter().filter(|a| a.status == 401).count();
    let throttled: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        (checked, throttled.len()),
        (10, 30),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_refusal_with_retry_after(throttled[0], 429, "rate_limited");

    // 2,000 registrations from 8 parallel clients.
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let http = server.http;
            std::thread::spawn(move || {
                for i in 0..250 {
                    let name = format!("user_{client}_{i}");
                    let created = request(
                        http,
                        "POST",
                        "/v1/users",
                        Some(&credentials(&name, "a long password")),
                        None,
                    );
                    assert_eq!(created.status, 201, "{name}: {}", created.body);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(
        request(server.http, "GET", "/healthz", None, None).status,
        200
    );
    let ended_kib = proc_kib(server.pid(), "VmRSS");
    eprintln!(
        "VmRSS at start {started_kib} KiB, after the floods {ended_kib} KiB, peak {} KiB",
        proc_kib(server.pid(), "VmHWM")
    );
    assert!(
        ended_kib <= started_kib + 100 * 1024,
        "RSS grew from {started_kib} KiB to {ended_kib} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_guesses_spread_over_many_names_are_throttled_per_source_address() {
    let server = Server::start_with(
        Backend::Sqlite,
        Options::default().env("BLUETICK_AUTH__MAX_LOGIN_FAILURES_PER_ADDRESS", "5"),
    );
    server.register("bob");
    let answers: Vec<Response> = (0..30)
        .map(|i| {
            post(
                &server,
                "/v1/tokens",
                &credentials(&format!("victim_{i}"), "guess guess"),
            )
        })
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_refusal_with_retry_after(&answers[29], 429, "rate_limited");
    // A name no user can have is a wrong guess too, never a throttle key.
    let huge = post(
        &server,
        "/v1/tokens",
        &credentials(&"x".repeat(200_000), "guess guess"),
    );
    assert_eq!(huge.status, 429);

    // Someone on another address logs in as usual.
    let login =
        post_from_elsewhere(&server, "/v1/tokens", &credentials("bob", "bob-password")).await;
    assert_eq!(login.status, 201, "{}", login.body);
    assert!(server.metric(r#"bluetick_http_refusals_total{reason="login_throttled"}"#) >= 25.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_source_address() {
    let server = Server::start_with(
        Backend::Sqlite,
        Options::default().env("BLUETICK_AUTH__MAX_REGISTRATIONS_PER_ADDRESS", "3"),
    );
    for name in ["ann", "ben", "cat"] {
        assert_eq!(
            post(&server, "/v1/users", &credentials(name, "a long password")).status,
            201
        );
    }
    let refused = post(&server, "/v1/users", &credentials("dan", "a long password"));
    assert_refusal_with_retry_after(&refused, 429, "rate_limited");
    let secs: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        secs > 3000 && secs <= 3600,
        "the default window is an hour: {secs}"
    );
    // Another address is not affected.
    let other =
        post_from_elsewhere(&server, "/v1/users", &credentials("dan", "a long password")).await;
    assert_eq!(other.status, 201, "{}", other.body);
    assert_eq!(
        server.metric(r#"bluetick_http_refusals_total{reason="registration_throttled"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_beyond_the_gate_and_its_queue_get_503_with_retry_after() {
    let server = Server::start_with(
        Backend::Sqlite,
        Options::default()
            .env("BLUETICK_AUTH__PASSWORD_HASH_CONCURRENCY", "1")
            .env("BLUETICK_AUTH__PASSWORD_HASH_QUEUE", "1"),
    );
    let bodies = (0..12)
        .map(|i| credentials(&format!("user_{i}"), "a long password"))
        .collect();
    let answers = burst(server.http, "/v1/users", bodies);
    let created = answers.iter().filter(|a| a.status == 201).count();
    let busy: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(
        created + busy.len(),
        12,
        "{:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    assert!(
        created >= 1 && !busy.is_empty(),
        "created {created}, busy {}",
        busy.len()
    );
    assert_refusal_with_retry_after(busy[0], 503, "unavailable");
    // Once the burst is over, registration works again.
    assert_eq!(
        post(
            &server,
            "/v1/users",
            &credentials("late", "a long password")
        )
        .status,
        201
    );
    assert!(server.metric(r#"bluetick_http_refusals_total{reason="password_gate_full"}"#) >= 1.0);
}

/// Whether the server has closed `stream` (EOF or reset); reads and drops
/// anything it sent.
fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_trickling_and_idle_http_sockets_are_closed_after_the_header_timeout() {
    let server = Server::start_with(
        Backend::Sqlite,
        Options::default().env("BLUETICK_HTTP__HEADER_TIMEOUT_SECS", "2"),
    );
    let http = server.http;
    let connect = || TcpStream::connect(http).expect("connect");
    let silent: Vec<TcpStream> = (0..200).map(|_| connect()).collect();
    let mut trickling: Vec<TcpStream> = (0..200).map(|_| connect()).collect();
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = connect();
            write!(stream, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
            stream
        })
        .collect();
    let opened = Instant::now();
    // Meanwhile, ordinary requests are served.
    assert_eq!(request(http, "GET", "/healthz", None, None).status, 200);

    let mut open: Vec<(bool, TcpStream)> = silent
        .into_iter()
        .map(|s| (false, s))
        .chain(idle.into_iter().map(|s| (false, s)))
        .collect();
    for stream in &mut trickling {
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    }
    open.extend(trickling.into_iter().map(|s| (true, s)));
    for (_, stream) in &open {
        stream.set_nonblocking(true).unwrap();
    }
    let deadline = opened + Duration::from_secs(30);
    while !open.is_empty() && Instant::now() < deadline {
        // A trickler sends one more header byte a round, never the end.
        open.retain_mut(|(trickles, stream)| {
            if *trickles {
                let _ = stream.write_all(b"X");
            }
            !is_closed(stream)
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        open.is_empty(),
        "{} of 450 sockets still open after 30 s",
        open.len()
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "closed by the timeout, not at once"
    );
    assert_eq!(request(http, "GET", "/healthz", None, None).status, 200);
    assert!(server.metric(r#"bluetick_http_refusals_total{reason="header_timeout"}"#) >= 400.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503_and_service_returns_when_they_close() {
    let server = Server::start_with(
        Backend::Sqlite,
        Options::default()
            .env("BLUETICK_HTTP__MAX_CONNECTIONS", "20")
            .env("BLUETICK_HTTP__HEADER_TIMEOUT_SECS", "3"),
    );
    let hogs: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.http).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = request(server.http, "GET", "/healthz", None, None);
    assert_refusal_with_retry_after(&refused, 503, "unavailable");
    // The metrics listener has its own limit and still answers.
    assert!(server.metric(r#"bluetick_http_refusals_total{reason="connection_limit"}"#) >= 1.0);
    // The hogs time out; then everyone is served again.
    assert!(
        eventually(Duration::from_secs(30), || request(
            server.http,
            "GET",
            "/healthz",
            None,
            None
        )
        .status
            == 200)
        .await
    );
    drop(hogs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_gets_405_with_the_error_json() {
    let server = Server::start(Backend::Sqlite);
    // Routes of the main router, and routes merged into it with their own
    // body limits (backups, uploads).
    for (method, path) in [
        ("PUT", "/healthz"),
        ("GET", "/v1/users"),
        ("POST", "/v1/me/backup"),
        ("GET", "/v1/media"),
    ] {
        let answer = request(server.http, method, path, None, None);
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (405, "method_not_allowed"),
            "{method} {path}: {}",
            answer.body
        );
        assert!(
            answer.header("allow").is_some(),
            "{method} {path} names the allowed methods: {:?}",
            answer.headers
        );
    }
    // An unknown route is still 404.
    assert_eq!(
        request(server.http, "GET", "/nowhere", None, None).error_code(),
        "not_found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_private_and_typing_to_a_hidden_user_moves_no_metric() {
    let server = Server::start(Backend::Sqlite);
    let public = request(server.http, "GET", "/metrics", None, None);
    assert_eq!(
        (public.status, public.error_code().as_str()),
        (404, "not_found")
    );
    let private = request(server.metrics, "GET", "/metrics", None, None);
    assert_eq!(private.status, 200);
    assert!(private.body.contains("bluetick_build_info"));

    let (alice_token, bob_token) = (server.register("alice"), server.register("bob"));
    let hidden = request(
        server.http,
        "PUT",
        "/v1/me/privacy",
        Some(r#"{"last_seen":"nobody"}"#),
        Some(&bob_token),
    );
    assert_eq!(hidden.status, 200, "{}", hidden.body);
    let alice = mqtt::connect(server.mqtt, "alice", Some(("alice", &alice_token)))
        .await
        .expect_connected();
    let samples = || {
        let text = request(server.metrics, "GET", "/metrics", None, None).body;
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains("typing"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let typing = || alice.publish("u/alice/typing", r#"{"to":"bob","state":"typing"}"#);
    let before = samples();
    typing().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let while_offline = samples();
    let mut bob = mqtt::connect(server.mqtt, "bob", Some(("bob", &bob_token)))
        .await
        .expect_connected();
    bob.subscribe_ok("u/bob/live").await;
    let store = server.store();
    assert!(eventually(TIMEOUT, || store.is_online("bob").unwrap()).await);
    // The bridge learns that bob is online a moment after the store says
    // so (its presence tracker re-reads the store after the connect
    // event), and typing to a user it still thinks offline is dropped: so
    // alice keeps typing, twice a second (under the rate limit), until bob
    // gets one.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut delivered = false;
    while !delivered && tokio::time::Instant::now() < deadline {
        typing().await;
        delivered = bob.next_message(Duration::from_millis(500)).await.is_some();
    }
    assert!(delivered, "bob online gets the typing event");
    let while_online = samples();
    assert_eq!(
        before, while_offline,
        "typing to offline bob shows in /metrics"
    );
    assert_eq!(
        while_offline, while_online,
        "typing to online bob shows in /metrics"
    );
}
