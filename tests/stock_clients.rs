//! Stock MQTT tools against the embedded defaults: Debian's mosquitto
//! clients over TCP, and Eclipse paho over WebSocket. Nothing of ours runs
//! on the client side.

mod common;

use common::{Backend, Server};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success());
    assert!(
        found.unwrap_or(false),
        "{name} is not installed: run the README's test command (scripts/test), which installs it"
    );
    Command::new(name)
}

fn mosquitto_args(server: &Server, user: &str, token: &str, client_id: &str) -> Vec<String> {
    vec![
        "-h".into(),
        server.mqtt.ip().to_string(),
        "-p".into(),
        server.mqtt.port().to_string(),
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
        let mut subscriber = tool("mosquitto_sub")
            .args(mosquitto_args(&server, "alice", &token, "alice.sub"))
            .args(["-t", "u/alice/inbox", "-q", "1", "-C", "1", "-W", "20", "-v"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub");
        // Publish until the subscriber has seen one message: its SUBSCRIBE
        // may not have landed before the first publish.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = tool("mosquitto_pub")
                .args(mosquitto_args(&server, "alice", &token, "alice.pub"))
                .args(["-t", "u/alice/send", "-q", "1"])
                .args(["-m", r#"{"id":"mosq-1","to":"alice","body":"hello from mosquitto"}"#])
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
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "mosquitto_sub failed: {}", String::from_utf8_lossy(&output.stderr));
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
