//! The differential conformance suite (`mosquitto-compat/`): every scenario
//! played against a stock Mosquitto and against `bluetick serve --dev-open`.
//! Each must behave the same on both, or be listed with its reason in
//! `mosquitto-compat/DIFFERENCES.md` (at most five may be).

mod common;

use common::{Backend, Options, Server};
use mosquitto_compat::{mosquitto::Mosquitto, suite};
use std::path::Path;

/// Issue 14: the suite covers at least this many scenarios.
const MIN_SCENARIOS: usize = 60;

#[test]
fn every_scenario_behaves_as_on_mosquitto_or_is_listed_with_its_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("mosquitto-compat");
    let scenarios = suite::load(&root.join("scenarios")).expect("scenarios parse");
    assert!(
        scenarios.len() >= MIN_SCENARIOS,
        "only {} scenarios",
        scenarios.len()
    );
    let differences = std::fs::read_to_string(root.join("DIFFERENCES.md")).expect("DIFFERENCES.md");
    let listed = suite::listed(&differences);
    // Filter by name, as cargo does for tests: COMPAT_ONLY=connect- plays
    // the matching scenarios only (and skips the count checks).
    let only = std::env::var("COMPAT_ONLY").ok();
    let scenarios: Vec<_> = scenarios
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|only| s.name.contains(only)))
        .collect();

    let mosquitto = Mosquitto::start().expect("start mosquitto");
    let server = Server::start_with(Backend::Sqlite, Options::default().arg("--dev-open"));
    let outcomes = suite::run(scenarios, mosquitto.addr, server.mqtt, &listed);
    let (report, ok) = suite::report(&outcomes, &listed);
    println!("{report}");
    // COMPAT_VERBOSE=1 shows what Mosquitto answered in every scenario,
    // for writing expectations into a new one, and what bluetick logged
    // above INFO while the suite ran.
    if std::env::var_os("COMPAT_VERBOSE").is_some() {
        for outcome in &outcomes {
            println!("{}: {:?}", outcome.scenario.name, outcome.mosquitto.lines);
        }
        let log = server.log();
        let loud = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR"));
        println!("--- bluetick WARN/ERROR ---\n{}", loud.collect::<Vec<_>>().join("\n"));
    }
    if only.is_some() {
        assert!(
            outcomes.iter().all(|o| !matches!(
                o.verdict,
                suite::Verdict::Differs | suite::Verdict::WrongScenario(_)
            )),
            "{report}"
        );
        return;
    }
    assert!(
        ok,
        "{report}\n--- bluetick log (tail) ---\n{}",
        tail(&server.log(), 60)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
