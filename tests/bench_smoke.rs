//! A 10-second `bluetick bench` against a real server: nothing lost,
//! duplicated or reordered. It asserts nothing about speed; the figures
//! are in docs/performance.md.

mod common;

use std::process::Command;

#[test]
fn a_ten_second_bench_loses_duplicates_and_reorders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .args([
            "bench",
            "--users",
            "10",
            "--duration",
            "10",
            "--warmup",
            "1",
            "--relay-seconds",
            "0",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(dir.path().join("bench.svg"))
        .current_dir(dir.path())
        .output()
        .expect("run bluetick bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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
    assert!(std::fs::read_to_string(dir.path().join("bench.svg"))
        .unwrap()
        .starts_with("<svg"));
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
    let json = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .args(["bench", "--users", "4", "--duration", "3", "--warmup", "1", "--rate", "100"])
        .args(["--relay-seconds", "0"])
        .args(["--target", &server.mqtt.to_string()])
        .args(["--target-http", &server.http.to_string()])
        .arg("--credentials")
        .arg(&credentials)
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(dir.path().join("bench.svg"))
        .current_dir(dir.path())
        .output()
        .expect("run bluetick bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["sent"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["sent"], report["received"], "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["store"].as_str().unwrap().contains(&server.mqtt.to_string()), "{report}");
    assert!(server.metric("bluetick_messages_stored_total") >= report["sent"].as_f64().unwrap(), "the running server stored them");
}
