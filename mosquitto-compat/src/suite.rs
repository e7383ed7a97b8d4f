//! The whole suite: every scenario against both brokers, judged against
//! the differences we list on purpose.
//!
//! **Invariant:** a scenario either behaves as on Mosquitto, or it is listed
//! in `DIFFERENCES.md` with its reason; a listed scenario that starts
//! passing must be unlisted, so the list never hides a fixed difference.

use crate::play::{self, Transcript};
use crate::script::{ParseError, Scenario};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

/// The most scenarios `DIFFERENCES.md` may list (issue 14).
pub const MAX_LISTED: usize = 5;

/// How many scenarios play at once. They share nothing (see `@`), and most
/// of their time is spent waiting on sockets.
const PARALLEL: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Reads every `*.mqtt` file in `dir`, sorted by name.
pub fn load(dir: &Path) -> Result<Vec<Scenario>, LoadError> {
    let io = |e| LoadError::Io(dir.display().to_string(), e);
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "mqtt"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| LoadError::Io(path.display().to_string(), e))?;
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            Ok(Scenario::parse(&name, &text)?)
        })
        .collect()
}

/// The listed differences: scenario name → reason. Each is a list item
/// `` - `name`: reason `` in `DIFFERENCES.md`; the reason may continue on
/// indented lines.
pub fn listed(differences_md: &str) -> BTreeMap<String, String> {
    let mut listed = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in differences_md.lines() {
        if let Some((name, reason)) = line
            .strip_prefix("- `")
            .and_then(|rest| rest.split_once('`'))
        {
            listed.extend(current.take());
            current = Some((
                name.to_owned(),
                reason.trim_start_matches(':').trim().to_owned(),
            ));
        } else if let (Some((_, reason)), true) = (&mut current, line.starts_with(' ')) {
            reason.push(' ');
            reason.push_str(line.trim());
        } else {
            listed.extend(current.take());
        }
    }
    listed.extend(current);
    listed
}

/// How one scenario came out.
#[derive(Debug)]
pub enum Verdict {
    Same,
    /// Differs, and is listed with this reason.
    Listed(String),
    /// Differs and is not listed.
    Differs,
    /// Listed, yet now behaves the same.
    StaleListing,
    /// Mosquitto itself breaks an expectation the scenario states: the
    /// scenario is wrong, not a broker.
    WrongScenario(Vec<String>),
}

pub struct Outcome {
    pub scenario: Scenario,
    pub mosquitto: Transcript,
    pub bluetick: Transcript,
    pub verdict: Verdict,
}

/// Plays every scenario against both brokers.
pub fn run(
    scenarios: Vec<Scenario>,
    mosquitto: SocketAddr,
    bluetick: SocketAddr,
    listed: &BTreeMap<String, String>,
) -> Vec<Outcome> {
    let queue = Mutex::new(scenarios.into_iter().enumerate().collect::<Vec<_>>());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((index, scenario)) = next else { break };
                let outcome = judge(scenario, mosquitto, bluetick, listed);
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((index, outcome));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, outcome)| outcome).collect()
}

fn judge(
    scenario: Scenario,
    mosquitto: SocketAddr,
    bluetick: SocketAddr,
    listed: &BTreeMap<String, String>,
) -> Outcome {
    let on_mosquitto = play::play(&scenario, mosquitto);
    let on_bluetick = play::play(&scenario, bluetick);
    let broken = broken_expectations(&scenario, &on_mosquitto);
    let same = on_mosquitto == on_bluetick;
    let verdict = match (broken.is_empty(), same, listed.get(&scenario.name)) {
        (false, _, _) => Verdict::WrongScenario(broken),
        (true, true, None) => Verdict::Same,
        (true, true, Some(_)) => Verdict::StaleListing,
        (true, false, Some(reason)) => Verdict::Listed(reason.clone()),
        (true, false, None) => Verdict::Differs,
    };
    Outcome {
        scenario,
        mosquitto: on_mosquitto,
        bluetick: on_bluetick,
        verdict,
    }
}

/// The `recv C = EXPECTED` lines the transcript does not match.
fn broken_expectations(scenario: &Scenario, transcript: &Transcript) -> Vec<String> {
    let mut broken = Vec::new();
    if let Some(failure) = &transcript.failure {
        broken.push(failure.clone());
    }
    let recorded = scenario.steps.iter().filter(|step| {
        matches!(
            step,
            crate::script::Step::Recv(..) | crate::script::Step::Quiet(..)
        )
    });
    for (step, line) in recorded.zip(&transcript.lines) {
        if let crate::script::Step::Recv(conn, Some(expected)) = step {
            let wanted = format!("{conn}: {expected}");
            if *line != wanted {
                broken.push(format!("expected `{wanted}`, got `{line}`"));
            }
        }
    }
    broken
}

/// A readable report; the second value is whether the suite passes.
pub fn report(outcomes: &[Outcome], listed: &BTreeMap<String, String>) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let mut counts = BTreeMap::<&str, usize>::new();
    for outcome in outcomes {
        let name = &outcome.scenario.name;
        let label = match &outcome.verdict {
            Verdict::Same => "same",
            Verdict::Listed(_) => "listed",
            Verdict::Differs => "DIFFERS",
            Verdict::StaleListing => "STALE LISTING",
            Verdict::WrongScenario(_) => "WRONG SCENARIO",
        };
        *counts.entry(label).or_default() += 1;
        let _ = writeln!(out, "{label:>14}  {name}");
        match &outcome.verdict {
            Verdict::Same => {}
            Verdict::Listed(reason) => {
                let _ = writeln!(out, "                {reason}");
                let _ = writeln!(
                    out,
                    "                mosquitto: {:?}",
                    outcome.mosquitto.lines
                );
                let _ = writeln!(
                    out,
                    "                bluetick:  {:?}",
                    outcome.bluetick.lines
                );
            }
            Verdict::StaleListing => {
                ok = false;
                let _ = writeln!(
                    out,
                    "                behaves as Mosquitto now: remove it from DIFFERENCES.md"
                );
            }
            Verdict::WrongScenario(broken) => {
                ok = false;
                for line in broken {
                    let _ = writeln!(out, "                mosquitto: {line}");
                }
            }
            Verdict::Differs => {
                ok = false;
                let _ = writeln!(out, "                about: {}", outcome.scenario.about);
                let _ = writeln!(out, "                mosquitto: {:?}", outcome.mosquitto);
                let _ = writeln!(out, "                bluetick:  {:?}", outcome.bluetick);
            }
        }
    }
    for name in listed.keys() {
        if !outcomes.iter().any(|o| &o.scenario.name == name) {
            ok = false;
            let _ = writeln!(
                out,
                "DIFFERENCES.md lists `{name}`, which is not a scenario"
            );
        }
    }
    if listed.len() > MAX_LISTED {
        ok = false;
        let _ = writeln!(
            out,
            "DIFFERENCES.md lists {} scenarios; at most {MAX_LISTED} may be",
            listed.len()
        );
    }
    let _ = writeln!(out, "{} scenarios: {counts:?}", outcomes.len());
    (out, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_reason_may_span_indented_lines() {
        let md = "# Title\n\nSome text.\n\n- `a`: first\n  and more.\n- `b`: second\n\nAfter.\n";
        let listed = listed(md);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed["a"], "first and more.");
        assert_eq!(listed["b"], "second");
    }
}
