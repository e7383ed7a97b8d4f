//! The backup schedule: backups on time with the newest kept and shown in
//! metrics, and two servers on one PostgreSQL running each slot once.

mod common;

use common::{eventually, Backend, Options, Server};
use std::collections::BTreeSet;
use std::time::Duration;
use store::on_both_backends;

on_both_backends! {
    async fn the_scheduler_runs_backups_on_schedule_keeps_the_newest_and_metrics_show_them(backend) {
        let server = Server::start_with(backend, Options::default()
            .env("BLUETICK_JOBS__SCHEDULES__BACKUP", "* * * * * *")
            // Only backups run: expiry fires every minute, which a run
            // crossing a minute boundary would otherwise see.
            .env("BLUETICK_JOBS__SCHEDULES__CLEANUP", "off")
            .env("BLUETICK_JOBS__SCHEDULES__EXPIRY", "off")
            .env("BLUETICK_JOBS__SCHEDULES__ARCHIVAL", "off")
            .env("BLUETICK_JOBS__BACKUP_KEEP", "2"));
        server.register("alice");
        let store = server.store();
        assert!(eventually(Duration::from_secs(15), || {
            store.job_runs(Some("backup"), 10).unwrap().iter().filter(|r| r.status == "ok").count() >= 3
        }).await, "three scheduled backups within 15 s");
        let runs = store.job_runs(None, 100).unwrap();
        assert!(runs.iter().all(|r| r.job == "backup" && r.slot.is_some()), "only backups are scheduled: {runs:?}");
        assert!(runs.iter().all(|r| r.slot.unwrap() % 1000 == 0), "slots are whole seconds");
        let kept = || std::fs::read_dir(server.data_dir.path().join("media").join("backups")).unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".zip"))
            .count();
        // A backup writes its file, then deletes the oldest: between the
        // two there is one more, so look until retention has run.
        assert!(eventually(Duration::from_secs(5), || kept() == 2).await,
            "only the newest jobs.backup_keep backups stay: {}", kept());
        let last_success = server.metric(r#"bluetick_job_last_success_timestamp_seconds{job="backup"}"#);
        assert!((last_success * 1000.0 - store::clock::now_ms() as f64).abs() < 10_000.0, "{last_success}");
        assert!(server.metric(r#"bluetick_job_duration_seconds{job="backup"}"#) > 0.0);
        assert_eq!(server.metric(r#"bluetick_job_last_run_ok{job="backup"}"#), 1.0);

        // While someone else holds the job, a run by hand says so and fails.
        while !store.try_lease("backup", "an operator elsewhere", 60_000).unwrap() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let busy = server.operator(&["job", "run", "backup"]);
        assert!(!busy.status.success());
        let said = String::from_utf8_lossy(&busy.stderr);
        assert!(said.contains("running elsewhere") && said.contains("an operator elsewhere"), "{said}");
        store.release_lease("backup", "an operator elsewhere").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_each_fire_the_schedule_and_each_slot_runs_once() {
    let key = "ab".repeat(32);
    let options = |node: &str| {
        Options::default()
            .env("BLUETICK_NODE", node)
            .env("BLUETICK_MESSAGES__KEY", &key)
            .env("BLUETICK_JOBS__SCHEDULES__CLEANUP", "* * * * * *")
            .env("BLUETICK_JOBS__SCHEDULES__BACKUP", "*/2 * * * * *")
    };
    let mut a = Server::start_with(Backend::Postgres, options("node-a"));
    let mut b = Server::start_on(a.database.share(), options("node-b"));
    a.register("alice");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(a.metric(r#"bluetick_job_last_success_timestamp_seconds{job="cleanup"}"#) > 0.0);
    assert!(b.metric(r#"bluetick_job_last_success_timestamp_seconds{job="backup"}"#) > 0.0);
    assert!(b.metric(r#"bluetick_job_duration_seconds{job="backup"}"#) > 0.0);
    assert!(a.terminate().success() && b.terminate().success());

    // Which slots each server fired, from its log (plain text in a file:
    // a_log_written_to_a_file_has_no_colour_codes).
    let fired = |log: &str, job: &str| -> BTreeSet<i64> {
        log.lines()
            .filter(|l| l.contains("tick ") && l.contains(&format!("job=\"{job}\"")))
            .filter_map(|l| {
                l.split("slot=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let store = {
        let url = a.database.url.clone();
        store::Store::open(&url, &Default::default()).unwrap()
    };
    let runs = store.job_runs(None, 1000).unwrap();
    for job in ["cleanup", "backup"] {
        let (by_a, by_b) = (fired(&a.log(), job), fired(&b.log(), job));
        let both: Vec<i64> = by_a.intersection(&by_b).copied().collect();
        let per_slot = |slot: i64| {
            runs.iter()
                .filter(|r| r.job == job && r.slot == Some(slot))
                .collect::<Vec<_>>()
        };
        let nodes: BTreeSet<&str> = runs
            .iter()
            .filter(|r| r.job == job)
            .map(|r| r.node.as_str())
            .collect();
        eprintln!(
            "{job}: {} slots fired by both servers, runs by {nodes:?}",
            both.len()
        );
        assert!(
            both.len() >= if job == "cleanup" { 4 } else { 2 },
            "{job}: a fired {by_a:?}, b fired {by_b:?}"
        );
        for slot in both {
            let ran = per_slot(slot);
            assert_eq!(
                ran.len(),
                1,
                "{job} slot {slot} ran {} times: {ran:?}",
                ran.len()
            );
            assert_eq!(ran[0].status, "ok", "{:?}", ran[0]);
        }
    }
    assert!(runs.iter().all(|r| r.slot.is_some()), "only scheduled runs");
}
