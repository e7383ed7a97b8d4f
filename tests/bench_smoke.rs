//! A 10-second `bluetick bench` against a real server: nothing lost,
//! duplicated or reordered. It asserts nothing about speed; the figures
//! are in docs/performance.md.

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
        // The bench's clients send as fast as they can and never resend, so
        // its server (which inherits this) must not hold them to the
        // per-user send quota.
        .env("BLUETICK_QUOTAS__SENDS_PER_SECOND", "1000000")
        .env("BLUETICK_QUOTAS__SEND_BURST", "1000000")
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
