//! `bluetick chat` between two terminals, as the README shows it.

mod common;

use common::{Backend, Options, Server};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use store::on_both_backends;

fn chat(server: &Server, args: &[&str]) -> Command {
    chat_at(server, server.mqtt, args)
}

/// `bluetick chat ARGS` against `server`'s database, connecting to `mqtt`.
fn chat_at(server: &Server, mqtt: std::net::SocketAddr, args: &[&str]) -> Command {
    let mut command = common::bluetick();
    command
        .arg("chat")
        .args(args)
        .args([
            "--server",
            &mqtt.to_string(),
            "--database-url",
            &server.database.url,
        ])
        .arg("--data-dir")
        .arg(server.data_dir.path());
    command
}

/// Lines a child prints, readable with a timeout.
fn lines_of(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns every line seen.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!("no line with {needle:?}; saw {seen:#?}");
}

/// An interactive `bluetick chat ARGS`: its stdin, and its lines.
fn terminal(server: &Server, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = chat(server, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bluetick chat");
    let lines = lines_of(child.stdout.take().unwrap());
    (child, lines)
}

fn interactive(server: &Server, me: &str, peer: &str) -> (Child, mpsc::Receiver<String>) {
    terminal(server, &["--as", me, "--to", peer])
}

/// `bluetick chat --group NAME` in one of `me`'s groups, looking the name
/// up on `server`'s HTTP API.
fn in_group(server: &Server, me: &str, group: &str) -> (Child, mpsc::Receiver<String>) {
    terminal(server, &["--as", me, "--group", group, "--http", &format!("http://{}", server.http)])
}

on_both_backends! {
    async fn two_terminals_chat_with_ticks(backend) {
        let server = Server::start(backend);
        server.register("alice");
        server.register("bob");
        let (mut alice, alice_out) = interactive(&server, "alice", "bob");
        let (mut bob, bob_out) = interactive(&server, "bob", "alice");
        let (mut alice_seen, mut bob_seen) = (Vec::new(), Vec::new());
        wait_for_line(&alice_out, "chatting with bob", &mut alice_seen);
        wait_for_line(&bob_out, "chatting with alice", &mut bob_seen);

        writeln!(alice.stdin.as_mut().unwrap(), "lunch at noon?").unwrap();
        wait_for_line(&alice_out, "lunch at noon?  ✓", &mut alice_seen);
        wait_for_line(&bob_out, "alice: lunch at noon?", &mut bob_seen);
        // Bob's terminal showed it, so it counts as read.
        wait_for_line(&alice_out, "lunch at noon?  ✓✓ read", &mut alice_seen);

        writeln!(bob.stdin.as_mut().unwrap(), "sure").unwrap();
        wait_for_line(&alice_out, "bob: sure", &mut alice_seen);

        // Ctrl-D ends each session cleanly.
        drop(alice.stdin.take());
        drop(bob.stdin.take());
        assert!(alice.wait().unwrap().success());
        assert!(bob.wait().unwrap().success());
    }

    async fn scripted_send_and_json_listen(backend) {
        let server = Server::start(backend);
        server.register("alice");
        server.register("bob");
        let mut listener = chat(&server, &["listen", "--as", "bob", "--json", "--count", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let listened = lines_of(listener.stdout.take().unwrap());
        let sent = chat(&server, &["send", "--as", "alice", "--to", "bob", "hello from a script"]).output().unwrap();
        assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
        let said = String::from_utf8_lossy(&sent.stdout);
        assert!(said.starts_with("✓ stored as message "), "{said}");

        let event = loop {
            let line = listened.recv_timeout(Duration::from_secs(30)).expect("bob's listener prints the message");
            let event: serde_json::Value = serde_json::from_str(&line).expect("every line is JSON");
            if event["event"] != "connection" {
                break event;
            }
        };
        assert_eq!((event["event"].as_str(), event["from"].as_str()), (Some("message"), Some("alice")));
        assert_eq!(event["body"], "hello from a script");
        assert!(listener.wait().unwrap().success(), "--count 1 exits after one message");

        let refused = chat(&server, &["send", "--as", "alice", "--to", "nobody", "hi"]).output().unwrap();
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown_recipient"));
    }

    async fn terminals_chat_in_a_group_found_by_its_name(backend) {
        let server = Server::start(backend);
        let alice_token = server.register("alice");
        server.register("bob");
        server.register("carol");
        common::groups::create_group(&server, &alice_token, "Lunch", &["bob", "carol"]);
        let (mut alice, alice_out) = in_group(&server, "alice", "Lunch");
        let (mut bob, bob_out) = in_group(&server, "bob", "Lunch");
        let (mut alice_seen, mut bob_seen) = (Vec::new(), Vec::new());
        wait_for_line(&alice_out, "chatting in the group Lunch", &mut alice_seen);
        wait_for_line(&bob_out, "chatting in the group Lunch", &mut bob_seen);

        writeln!(alice.stdin.as_mut().unwrap(), "pizza at one?").unwrap();
        wait_for_line(&alice_out, "you: pizza at one?  ✓", &mut alice_seen);
        wait_for_line(&bob_out, "alice: pizza at one?", &mut bob_seen);

        // A script writes to the group by name too; both terminals show
        // who wrote it.
        let http = format!("http://{}", server.http);
        let sent = chat(&server, &["send", "--as", "carol", "--group", "Lunch", "--http", &http, "me too"])
            .output()
            .unwrap();
        assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
        wait_for_line(&alice_out, "carol: me too", &mut alice_seen);
        wait_for_line(&bob_out, "carol: me too", &mut bob_seen);

        let unknown = chat(&server, &["send", "--as", "carol", "--group", "Dinner", "--http", &http, "hi"])
            .output()
            .unwrap();
        assert!(!unknown.status.success());
        let error = String::from_utf8_lossy(&unknown.stderr);
        assert!(error.contains("no group called \"Dinner\""), "{error}");

        drop(alice.stdin.take());
        drop(bob.stdin.take());
        assert!(alice.wait().unwrap().success());
        assert!(bob.wait().unwrap().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_terminal_escapes_is_shown_escaped_not_obeyed() {
    let server = Server::start(Backend::Sqlite);
    server.register("alice");
    server.register("bob");
    let mut listener = chat(&server, &["listen", "--as", "bob", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = listener.stdout.take().unwrap();
    let hostile = "clear\x1b[2Jscreen\nbob: a forged line\u{202e}";
    let sent = chat(&server, &["send", "--as", "alice", "--to", "bob", hostile])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        listener.wait().unwrap().success(),
        "--count 1 exits after one message"
    );
    let mut shown = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut shown).unwrap();
    let shown = String::from_utf8(shown).unwrap();
    assert!(
        shown.contains(r"alice: clear\u{1b}[2Jscreen\nbob: a forged line\u{202e}"),
        "{shown:?}"
    );
    assert!(
        !shown.contains('\x1b') && !shown.contains('\u{202e}'),
        "{shown:?}"
    );
    assert_eq!(
        shown.lines().filter(|l| !l.is_empty()).count(),
        1,
        "{shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_send_speaks_tls_to_the_tls_listener_and_checks_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::tools::private_ca(dir.path());
    let server = Server::start_with(
        Backend::Sqlite,
        Options::default()
            .env("BLUETICK_MQTT__TLS_ADDR", "127.0.0.1:0")
            .env("BLUETICK_MQTT__TLS_CERT_FILE", cert.to_str().unwrap())
            .env("BLUETICK_MQTT__TLS_KEY_FILE", key.to_str().unwrap()),
    );
    let tls = server.tls.expect("the server prints its TLS address");
    server.register("alice");
    server.register("bob");
    let ca = ca.to_str().unwrap();
    let sent = chat_at(
        &server,
        tls,
        &[
            "send",
            "--as",
            "alice",
            "--to",
            "bob",
            "over tls",
            "--ca-file",
            ca,
        ],
    )
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(said.starts_with("✓ stored as message "), "{said}");

    // A certificate nobody vouched for is refused: the system's roots do
    // not include this private CA.
    let untrusted = chat_at(
        &server,
        tls,
        &[
            "send", "--as", "alice", "--to", "bob", "x", "--tls", "--device", "other",
        ],
    )
    .output()
    .unwrap();
    assert!(!untrusted.status.success());
    let error = String::from_utf8_lossy(&untrusted.stderr);
    assert!(error.contains("invalid peer certificate"), "{error}");
}
