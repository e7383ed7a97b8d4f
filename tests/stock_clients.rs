//! Stock MQTT tools against the embedded defaults: Debian's mosquitto
//! clients over TCP and over TLS, and Eclipse paho over WebSocket. Nothing
//! of ours runs on the client side.

mod common;

use common::tools::tool;
use common::{Backend, Options, Server};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use store::on_both_backends;

fn mosquitto_args(server: &Server, user: &str, token: &str, client_id: &str) -> Vec<String> {
    mosquitto_args_at(server.mqtt, user, token, client_id)
}

fn mosquitto_args_at(addr: SocketAddr, user: &str, token: &str, client_id: &str) -> Vec<String> {
    vec![
        "-h".into(),
        addr.ip().to_string(),
        "-p".into(),
        addr.port().to_string(),
        "-u".into(),
        user.into(),
        "-P".into(),
        token.into(),
        "-i".into(),
        client_id.into(),
        "-V".into(),
        "mqttv311".into(),
    ]
}

on_both_backends! {
    async fn mosquitto_clients_use_their_own_topics_over_tcp(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let stdout = note_to_self(server.mqtt, &token, &[]).await;
        // A note to self: the inbox gets the message (and its ack).
        let first = stdout.lines().next().unwrap_or_default();
        assert!(first.starts_with("u/alice/inbox {"), "{stdout}");
        assert!(first.contains(r#""body":"hello from mosquitto""#), "{stdout}");
    }

    async fn mosquitto_clients_are_refused_outside_their_topics_and_without_a_token(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        server.register("bob");
        let denied = tool("mosquitto_sub")
            .args(mosquitto_args(&server, "alice", &token, "alice.snoop"))
            .args(["-t", "u/bob/#", "-C", "1", "-W", "3"])
            .output()
            .expect("mosquitto_sub");
        let said = String::from_utf8_lossy(&denied.stderr).to_string() + &String::from_utf8_lossy(&denied.stdout);
        assert!(said.contains("denied"), "mosquitto_sub should report the denied subscription: {said}");

        let refused = tool("mosquitto_pub")
            .args(mosquitto_args(&server, "alice", "bt_wrong", "alice"))
            .args(["-t", "u/alice/send", "-m", "x"])
            .output()
            .expect("mosquitto_pub");
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("bad user name or password"), "{said}");
    }

    async fn paho_uses_its_own_topics_over_websocket(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/paho_ws.py");
        let has_paho = Command::new("python3").args(["-c", "import paho.mqtt"]).status().map(|s| s.success());
        assert!(has_paho.unwrap_or(false), "paho-mqtt is not installed: run scripts/test, which installs it");
        let output = Command::new("python3")
            .args([script, &server.ws.ip().to_string(), &server.ws.port().to_string(), "alice", &token])
            .output()
            .expect("run paho client");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "paho over WebSocket failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(stdout.trim(), "received u/alice/inbox hello over websocket");

        let refused = Command::new("python3")
            .args([script, &server.ws.ip().to_string(), &server.ws.port().to_string(), "alice", "bt_wrong"])
            .output()
            .expect("run paho client");
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stdout).contains("connect refused"));
    }
}

/// One silent client must not block the WebSocket listener for others
/// (rumqttd's own WebSocket accept loop would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_client_does_not_block_others() {
    let server = Server::start(Backend::Sqlite);
    let token = server.register("alice");
    let _silent = std::net::TcpStream::connect(server.ws).expect("open a socket and say nothing");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/paho_ws.py");
    let output = Command::new("python3")
        .args([
            script,
            &server.ws.ip().to_string(),
            &server.ws.port().to_string(),
            "alice",
            &token,
        ])
        .output()
        .expect("run paho client");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Alice sends herself a message with mosquitto_pub and reads her inbox
/// with mosquitto_sub, both at `addr` with `extra` arguments (TLS options).
/// Returns what mosquitto_sub printed.
async fn note_to_self(addr: SocketAddr, token: &str, extra: &[String]) -> String {
    let mut subscriber = tool("mosquitto_sub")
        .args(mosquitto_args_at(addr, "alice", token, "alice.sub"))
        .args(extra)
        .args([
            "-t",
            "u/alice/inbox",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "20",
            "-v",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    // Publish until the subscriber has seen one message: its SUBSCRIBE
    // may not have landed before the first publish.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = tool("mosquitto_pub")
            .args(mosquitto_args_at(addr, "alice", token, "alice.pub"))
            .args(extra)
            .args(["-t", "u/alice/send", "-q", "1"])
            .args([
                "-m",
                r#"{"id":"mosq-1","to":"alice","body":"hello from mosquitto"}"#,
            ])
            .status()
            .expect("mosquitto_pub");
        assert!(status.success(), "mosquitto_pub with a valid token failed");
        let exited = subscriber.try_wait().expect("poll mosquitto_sub").is_some();
        if exited || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let output = subscriber.wait_with_output().expect("mosquitto_sub output");
    assert!(
        output.status.success(),
        "mosquitto_sub failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_talk_over_tls_and_plain_mqtt_is_refused_there() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::tools::self_signed(dir.path());
    let options = Options::default()
        .env("BLUETICK_MQTT__TLS_ADDR", "127.0.0.1:0")
        .env("BLUETICK_MQTT__TLS_CERT_FILE", cert.to_str().unwrap())
        .env("BLUETICK_MQTT__TLS_KEY_FILE", key.to_str().unwrap());
    let server = Server::start_with(Backend::Sqlite, options);
    let tls = server.tls.expect("the server prints its TLS address");
    let token = server.register("alice");
    let trust = ["--cafile".to_owned(), cert.display().to_string()];

    let stdout = note_to_self(tls, &token, &trust).await;
    assert!(
        stdout.contains(r#""body":"hello from mosquitto""#),
        "{stdout}"
    );

    // The guard still decides behind TLS: a wrong token is refused.
    let refused = tool("mosquitto_pub")
        .args(mosquitto_args_at(tls, "alice", "bt_wrong", "alice.pub"))
        .args(&trust)
        .args(["-t", "u/alice/send", "-m", "{}"])
        .output()
        .expect("mosquitto_pub");
    assert!(
        !refused.status.success(),
        "a wrong token over TLS is refused"
    );
    // Plain MQTT on the TLS port gets no CONNACK, and a client that trusts
    // another certificate does not connect.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = common::tools::self_signed(other.path());
    for extra in [
        vec![],
        vec!["--cafile".to_owned(), other_cert.display().to_string()],
    ] {
        let plain = tool("mosquitto_pub")
            .args(mosquitto_args_at(tls, "alice", &token, "alice.pub"))
            .args(&extra)
            .args(["-t", "u/alice/send", "-m", "{}"])
            .output()
            .expect("mosquitto_pub");
        assert!(!plain.status.success(), "{extra:?} must not connect");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_files_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let database = format!("sqlite://{}", dir.path().join("bluetick.db").display());
    let mut launch = launch::Launch::serve(common::bluetick(), dir.path(), &database, [any; 3]);
    launch
        .command()
        .env("BLUETICK_MQTT__TLS_ADDR", "127.0.0.1:0")
        .env("BLUETICK_MQTT__TLS_CERT_FILE", &missing)
        .env("BLUETICK_MQTT__TLS_KEY_FILE", &missing);
    let Err(launch::LaunchError::NotReady { log: stderr, .. }) =
        launch.start(Duration::from_secs(60))
    else {
        panic!("a server with unusable TLS files must not start");
    };
    assert!(
        stderr.contains("TLS") && stderr.contains("missing.pem"),
        "{stderr}"
    );
    let half = common::bluetick()
        .args(["config"])
        .env("BLUETICK_MQTT__TLS_CERT_FILE", &missing)
        .output()
        .expect("run bluetick");
    assert!(
        !half.status.success(),
        "a certificate without a key is a config error"
    );
    assert!(String::from_utf8_lossy(&half.stderr).contains("tls_key_file"));
}
