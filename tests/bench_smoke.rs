//! A 10-second `bluetick bench` against a real server: nothing lost,
//! duplicated or reordered. It asserts nothing about speed; the figures
//! are in docs/performance.md.

mod common;

use std::process::Command;

/// Runs `bluetick bench ARGS` in `dir`, asserts it succeeded, and returns
/// what it printed and its JSON report.
fn bench(dir: &std::path::Path, args: &[&str]) -> (String, serde_json::Value) {
    let json = dir.join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(dir.join("bench.svg"))
        .current_dir(dir)
        .output()
        .expect("run bluetick bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (stdout, report)
}

#[test]
fn a_ten_second_bench_loses_duplicates_and_reorders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, report) = bench(
        dir.path(),
        &["--users", "10", "--duration", "10", "--warmup", "1", "--relay-seconds", "0"],
    );
    assert!(report["sent"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["sent"], report["received"], "{report}");
    assert_eq!(
        (
            report["lost"].as_u64(),
            report["duplicates"].as_u64(),
            report["order_violations"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(stdout.contains("send → ✓✓ at sender"), "{stdout}");
    assert!(stdout.contains("CPU while measuring"), "{stdout}");
    let svg = std::fs::read_to_string(dir.path().join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("messages/s") && svg.contains("latency (ms"), "axes carry units");
}

/// `--pattern groups`: 12 users in 3 groups of 4, created over HTTP; every
/// message reaches the 3 other members of its group once and in order,
/// and each of those deliveries is counted.
#[test]
fn a_groups_bench_delivers_every_message_to_every_other_member_once() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, report) = bench(
        dir.path(),
        &[
            "--pattern", "groups", "--group-size", "4", "--users", "12", "--duration", "5",
            "--warmup", "1", "--rate", "60", "--relay-seconds", "0",
        ],
    );
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report}");
    assert_eq!(report["group_size"], 4, "{report}");
    assert_eq!(report["expected"].as_u64(), Some(sent * 3), "{report}");
    assert_eq!(report["received"], report["expected"], "every delivery counted: {report}");
    assert_eq!(
        (
            report["lost"].as_u64(),
            report["duplicates"].as_u64(),
            report["order_violations"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{report}"
    );
    assert!(report["deliveries_per_second"].as_f64().unwrap() > 0.0, "{report}");
    assert!(stdout.contains("deliveries/s"), "{stdout}");
}

/// `--target`: the bench measures a server it did not start, logging in
/// the users of a credentials file over that server's HTTP API.
#[test]
fn a_bench_against_a_running_server_logs_in_its_users_and_loses_nothing() {
    let server = common::Server::start(common::Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("users.txt");
    let mut lines = String::from("# name:password\n");
    for name in ["ann", "ben", "cat", "dan"] {
        server.register(name);
        lines.push_str(&format!("{name}:{name}-password\n"));
    }
    std::fs::write(&credentials, lines).unwrap();
    let (mqtt, http) = (server.mqtt.to_string(), server.http.to_string());
    let (_, report) = bench(
        dir.path(),
        &[
            "--users", "4", "--duration", "3", "--warmup", "1", "--rate", "100",
            "--relay-seconds", "0", "--target", &mqtt, "--target-http", &http,
            "--credentials", credentials.to_str().unwrap(),
        ],
    );
    assert!(report["sent"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["sent"], report["received"], "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["store"].as_str().unwrap().contains(&mqtt), "{report}");
    assert!(
        server.metric("bluetick_messages_stored_total") >= report["sent"].as_f64().unwrap(),
        "the running server stored them"
    );
}

/// `bench connections` opens real clients: each its own user, logged in
/// with its token, subscribed to its inbox (the bench counts a refused
/// CONNACK or SUBACK as a failure), at a fixed rate, and reports connect
/// times. Through the broker's lean buffers and wide listen backlog,
/// every one of them gets in.
#[test]
fn a_connection_storm_logs_in_and_subscribes_every_client() {
    let output = Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .args(["bench", "connections", "--count", "300", "--rate", "300", "--hold", "0"])
        .output()
        .expect("run bluetick bench connections");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON report in {stdout}"));
    assert_eq!(
        (report["connected"].as_u64(), report["failed"].as_u64()),
        (Some(300), Some(0)),
        "{report}\n{stderr}"
    );
    assert_eq!(report["subscribed_time"]["count"], 300, "{report}");
    assert!(stdout.contains("connect → SUBACK"), "{stdout}");
}
