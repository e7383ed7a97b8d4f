//! Job runs, slot claims and leases, on SQLite and on a real PostgreSQL.

use store::on_both_backends;

use store::job_runs::{FAILED, OK, RUNNING};

on_both_backends! {
    a_slot_is_claimed_by_one_node_only(store) {
        let first = store.claim_slot("backup", 1_000, "a").unwrap();
        assert!(first.is_some());
        assert_eq!(store.claim_slot("backup", 1_000, "b").unwrap(), None);
        assert!(store.claim_slot("cleanup", 1_000, "b").unwrap().is_some(), "slots are per job");
        assert!(store.claim_slot("backup", 2_000, "b").unwrap().is_some());
        // Runs by hand have no slot and never collide.
        store.start_run("backup", "a/cli").unwrap();
        store.start_run("backup", "a/cli").unwrap();
        store.finish_run(first.unwrap(), OK, r#"{"rows":3}"#, None).unwrap();
        let runs = store.job_runs(Some("backup"), 10).unwrap();
        assert_eq!(runs.len(), 4);
        let (finished, succeeded) = store.last_runs("backup").unwrap();
        assert_eq!(finished.unwrap().counts, r#"{"rows":3}"#);
        assert_eq!(succeeded.unwrap().slot, Some(1_000));
    }

    a_lease_has_one_holder_until_released_or_expired(store) {
        assert!(store.try_lease("backup", "a", 60_000).unwrap());
        assert!(!store.try_lease("backup", "b", 60_000).unwrap(), "held by a");
        assert!(store.try_lease("backup", "a", 60_000).unwrap(), "a renews its own");
        assert!(store.try_lease("cleanup", "b", 60_000).unwrap(), "leases are per job");
        assert_eq!(store.lease_holder("backup").unwrap().unwrap().0, "a");
        store.release_lease("backup", "b").unwrap();
        assert!(!store.try_lease("backup", "b", 60_000).unwrap(), "only the holder releases");
        store.release_lease("backup", "a").unwrap();
        assert!(store.try_lease("backup", "b", 1).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(store.try_lease("backup", "a", 60_000).unwrap(), "an expired lease is free");
    }

    a_restarted_node_marks_its_unfinished_runs_failed(store) {
        let mine = store.claim_slot("backup", 1, "a").unwrap().unwrap();
        let theirs = store.claim_slot("backup", 2, "b").unwrap().unwrap();
        assert_eq!(store.abandon_runs("a").unwrap(), 1);
        let runs = store.job_runs(None, 10).unwrap();
        let status = |id| runs.iter().find(|r| r.id == id).unwrap().status.clone();
        assert_eq!((status(mine), status(theirs)), (FAILED.to_owned(), RUNNING.to_owned()));
    }
}
