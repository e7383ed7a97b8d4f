//! Issue 14 with real third-party MQTT clients (nothing of ours on the
//! client side): paho with keep-alive 0 (over MQTT 3.1.1 and 5), MQTT.js
//! over WebSocket with keep-alive 0 and over MQTT 5, mosquitto_pub/sub at
//! QoS 2, paho resuming a persistent session, stock tsung 1.7 (MQTT 3.1)
//! running a publish/subscribe scenario; and what operators see of it
//! (metrics by real reason, no ERROR for a clean disconnect).

mod common;

use common::{Backend, Options, Server};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;
use store::on_both_backends;

const PAHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/paho_tcp.py");

fn dev_open_server() -> Server {
    Server::start_with(Backend::Sqlite, Options::default().arg("--dev-open"))
}

fn host_port(addr: SocketAddr) -> [String; 2] {
    [addr.ip().to_string(), addr.port().to_string()]
}

/// A plain TCP connection for raw packets, with a generous read deadline.
fn raw_socket(addr: SocketAddr) -> TcpStream {
    let socket = TcpStream::connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    socket
}

/// What the server sent before it closed the socket.
fn read_until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    // A reset or the deadline ends the read as a close does; the caller
    // judges what arrived.
    let _ = socket.read_to_end(&mut answer);
    answer
}

/// Whether `bluetick_mqtt_refusals_total{reason}` reaches 1 in time.
async fn counted_once(server: &Server, reason: &str) -> bool {
    let sample = format!(r#"bluetick_mqtt_refusals_total{{reason="{reason}"}}"#);
    common::eventually(Duration::from_secs(20), || server.metric(&sample) == 1.0).await
}

fn paho(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command.arg(PAHO).args(args);
    command
}

/// Runs a mosquitto client tool to completion; (success, stdout + stderr).
fn mosquitto_tool(name: &str, addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let output = Command::new(name)
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-V",
            "mqttv311",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} is not installed (scripts/test installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const MQTTJS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mqttjs_ws.mjs");

/// Runs MQTT.js (`tests/clients/mqttjs_ws.mjs MODE`) against the server's
/// WebSocket listener as `user`; returns what it printed, or panics with it.
fn mqttjs(server: &Server, mode: &str, user: &str, token: &str) -> String {
    let modules = common::tools::node_modules();
    assert!(
        modules.join("mqtt").is_dir(),
        "MQTT.js is not in {}: run scripts/test, which installs it (or set BT_WEB_NODE_MODULES)",
        modules.display()
    );
    let url = format!("ws://{}/mqtt", server.ws);
    let output = common::tools::tool("node")
        .arg(MQTTJS)
        .args([mode, &url, user, token])
        .env("BT_WEB_NODE_MODULES", &modules)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "MQTT.js ({mode}) failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.trim().to_owned()
}

on_both_backends! {
    async fn paho_with_keepalive_zero_chats(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let [host, port] = host_port(server.mqtt);
        let output = paho(&["chat", &host, &port, "alice", &token]).output().expect("run paho");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "paho with keepalive 0 failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout.trim(), "received u/alice/inbox hello with keepalive 0");
    }

    async fn paho_over_mqtt5_is_refused_a_forbidden_filter_with_0x87_and_chats(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        server.register("bob");
        let [host, port] = host_port(server.mqtt);
        let output = paho(&["chat5", &host, &port, "alice", &token]).output().expect("run paho");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "paho over MQTT 5 failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout.trim(), "forbidden filter: 135; received u/alice/inbox hello with keepalive 0");
    }
    async fn mqttjs_over_websocket_with_keepalive_zero_chats(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        let seen = mqttjs(&server, "chat", "alice", &token);
        assert_eq!(seen, "received u/alice/inbox hello from MQTT.js with keepalive 0");
    }

    async fn mqttjs_over_mqtt5_is_refused_a_forbidden_filter_with_0x87_and_chats(backend) {
        let server = Server::start(backend);
        let token = server.register("alice");
        server.register("bob");
        let seen = mqttjs(&server, "chat5", "alice", &token);
        assert_eq!(
            seen,
            "forbidden filter: 135; received u/alice/inbox hello from MQTT.js over MQTT 5"
        );
    }
}

#[test]
fn mosquitto_clients_complete_qos2_exactly_once() {
    let server = dev_open_server();
    // The subscriber holds a QoS 2 subscription and exits after three
    // messages; -d prints the packets it exchanges, on stdout, which
    // stdbuf makes line-buffered so we see its SUBACK when it comes.
    let mut subscriber = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args([
            "-h",
            &server.mqtt.ip().to_string(),
            "-p",
            &server.mqtt.port().to_string(),
        ])
        .args([
            "-V", "mqttv311", "-i", "q2sub", "-t", "q2/t", "-q", "2", "-C", "3", "-W", "60", "-d",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is not installed (scripts/test installs it)");
    let mut lines = BufReader::new(subscriber.stdout.take().expect("stdout")).lines();
    let mut log = String::new();
    // Publish only once the subscription is in place.
    for line in lines.by_ref() {
        let line = line.expect("mosquitto_sub output");
        log += &format!("{line}\n");
        if line.starts_with("Subscribed") {
            break;
        }
    }
    assert!(log.contains("received SUBACK"), "{log}");
    for n in 1..=3 {
        let (ok, publisher) = mosquitto_tool(
            "mosquitto_pub",
            server.mqtt,
            &[
                "-i",
                &format!("q2pub{n}"),
                "-t",
                "q2/t",
                "-q",
                "2",
                "-m",
                &format!("m{n}"),
                "-d",
            ],
        );
        assert!(ok, "mosquitto_pub at QoS 2 failed: {publisher}");
        assert!(publisher.contains("received PUBREC"), "{publisher}");
        assert!(publisher.contains("received PUBCOMP"), "{publisher}");
    }
    for line in lines {
        log += &format!("{}\n", line.expect("mosquitto_sub output"));
    }
    assert!(
        subscriber.wait().expect("mosquitto_sub exits").success(),
        "{log}"
    );
    let messages: Vec<&str> = log.lines().filter(|l| l.starts_with('m')).collect();
    assert_eq!(
        messages,
        ["m1", "m2", "m3"],
        "each exactly once, in order: {log}"
    );
    assert_eq!(log.matches("received PUBREL").count(), 3, "{log}");
    assert_eq!(log.matches("sending PUBCOMP").count(), 3, "{log}");
}

#[test]
fn a_resumed_session_gets_its_unacked_qos1_message_again_with_dup() {
    let server = dev_open_server();
    let [host, port] = host_port(server.mqtt);
    let mut hold = paho(&["hold", &host, &port, "phone1", "dup/t"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run paho");
    let mut lines = BufReader::new(hold.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "subscribed");
    let (ok, log) = mosquitto_tool(
        "mosquitto_pub",
        server.mqtt,
        &["-t", "dup/t", "-q", "1", "-m", "unacked"],
    );
    assert!(ok, "{log}");
    let received = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(received, "received dup=0 unacked");
    // The holder died without acknowledging: its session keeps the message.
    assert!(hold.wait().expect("paho exits").success());

    let output = paho(&["resume", &host, &port, "phone1"])
        .output()
        .expect("run paho");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "resume failed: {stdout}");
    assert_eq!(
        stdout.lines().next(),
        Some("received dup=1 unacked"),
        "{stdout}"
    );
}

#[test]
fn a_clean_disconnect_logs_no_error() {
    let server = dev_open_server();
    for n in 0..3 {
        let (ok, log) = mosquitto_tool(
            "mosquitto_pub",
            server.mqtt,
            &["-i", &format!("p{n}"), "-t", "x/y", "-m", "hi"],
        );
        assert!(ok, "{log}");
    }
    // The disconnects are handled asynchronously; give them time to log.
    std::thread::sleep(Duration::from_secs(1));
    let log = server.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "a clean DISCONNECT is not an error:\n{}",
        errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_before_connect_is_counted_as_such_not_as_a_forbidden_publish() {
    let server = Server::start(Backend::Sqlite);
    // A QoS 0 PUBLISH to "a/b" on a fresh socket, as tsung sends it.
    let mut socket = raw_socket(server.mqtt);
    socket
        .write_all(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'])
        .expect("write");
    let answer = read_until_closed(&mut socket);
    assert!(answer.is_empty(), "closed without an answer: {answer:?}");
    assert!(
        counted_once(&server, "not_connected").await,
        "a packet before CONNECT is counted as not_connected"
    );
    assert_eq!(
        server.metric(r#"bluetick_mqtt_refusals_total{reason="forbidden_publish"}"#),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_the_connection_and_is_counted_as_malformed() {
    let server = dev_open_server();
    let mut socket = raw_socket(server.mqtt);
    // CONNECT: MQTT 3.1.1, clean session, keep-alive 60, empty client id.
    socket
        .write_all(&[
            0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 0,
        ])
        .expect("write CONNECT");
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0, 0]);
    // PUBLISH to "a/+": a wildcard in a topic name (MQTT-3.3.2-2).
    socket
        .write_all(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+'])
        .expect("write PUBLISH");
    let answer = read_until_closed(&mut socket);
    assert!(answer.is_empty(), "closed without an answer: {answer:?}");
    assert!(
        counted_once(&server, "malformed").await,
        "the refusal is counted as malformed"
    );
}

const TSUNG_SCENARIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/tsung_mqtt31.xml");

/// The cumulative total of each counter in tsung's own report
/// (`stats: NAME INTERVAL TOTAL …` lines; the last line of a name wins).
fn tsung_totals(log: &str) -> std::collections::HashMap<String, u64> {
    let mut totals = std::collections::HashMap::new();
    for line in log.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("stats:") {
            continue;
        }
        let (Some(name), Some(_), Some(total)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if let Ok(total) = total.parse::<f64>() {
            totals.insert(name.to_owned(), total as u64);
        }
    }
    totals
}

#[test]
fn stock_tsung_speaking_mqtt31_completes_a_publish_subscribe_run_without_errors() {
    let server = dev_open_server();
    let work = tempfile::tempdir().expect("tsung dir");
    let scenario = work.path().join("scenario.xml");
    let template = std::fs::read_to_string(TSUNG_SCENARIO).expect("scenario");
    std::fs::write(&scenario, template.replace("{PORT}", &server.mqtt.port().to_string()))
        .expect("write scenario");
    let logs = work.path().join("log");
    let run = common::tools::tool("tsung")
        .env("HOME", work.path())
        .arg("-f")
        .arg(&scenario)
        .arg("-l")
        .arg(&logs)
        .arg("start")
        .output()
        .expect("tsung");
    assert!(
        run.status.success(),
        "tsung failed: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // tsung writes its report into a directory named after the start time.
    let report = std::fs::read_dir(&logs)
        .expect("tsung log dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("tsung.log"))
        .find(|path| path.exists())
        .expect("tsung.log");
    let log = std::fs::read_to_string(report).expect("read tsung.log");
    let totals = tsung_totals(&log);
    let total = |name: &str| totals.get(name).copied().unwrap_or(0);
    let errors: Vec<_> = totals
        .iter()
        .filter(|(name, count)| name.starts_with("error") && **count > 0)
        .collect();
    assert!(errors.is_empty(), "tsung counted errors: {errors:?}\n{log}");
    let users = total("users_count");
    assert!(users > 3, "no publisher ran:\n{log}");
    assert_eq!(total("mqtt_connected"), users, "every user connects:\n{log}");
    assert_eq!(total("mqtt_disconnected"), users, "every user ends cleanly:\n{log}");
    let published = total("mqtt_published");
    assert_eq!(published, (users - 3) * 10, "each publisher sends 10:\n{log}");
    assert_eq!(total("mqtt_server_pubacked"), published, "each publish is acknowledged:\n{log}");
    assert_eq!(
        total("mqtt_server_published"),
        3 * published,
        "each of the 3 subscribers receives every message:\n{log}"
    );
}
