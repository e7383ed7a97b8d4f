//! SQLite's dedicated writer: transactions run on one connection outside
//! the pool, so readers keep their connections while a write is open, and a
//! transaction that panics does not wedge the writer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use store::testing::open_with;
use store::{Backend, StoreError, StoreOptions};

#[test]
fn a_reader_is_not_kept_waiting_by_an_open_write_transaction() {
    // One pooled connection: before the writer had its own, an open
    // transaction held it and every reader waited the acquire timeout.
    let (_db, store) = open_with(
        Backend::Sqlite,
        &StoreOptions {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(30),
            ..StoreOptions::default()
        },
    );
    let read_took = store
        .transaction(|_tx| {
            let reader = store.clone();
            let started = Instant::now();
            std::thread::spawn(move || reader.ping().map(|()| started.elapsed()))
                .join()
                .expect("reader thread")
        })
        .expect("read while the writer is held");
    assert!(
        read_took < Duration::from_secs(20),
        "the reader waited {read_took:?}"
    );
}

#[test]
fn a_transaction_that_panics_leaves_the_writer_usable() {
    let (_db, store) = open_with(Backend::Sqlite, &StoreOptions::default());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ =
            store.transaction(|_tx| -> Result<(), StoreError> { panic!("a bug mid-transaction") });
    }));
    assert!(panicked.is_err());
    store
        .create_user("alice", "correct horse")
        .expect("the store still writes");
    store
        .transaction(|_tx| Ok::<_, StoreError>(()))
        .expect("and still opens transactions");
}

/// Bytes of message bodies the steady writer commits.
const WRITTEN: usize = 48 << 20;

#[test]
fn under_steady_commits_checkpoints_start_the_wal_over() {
    // The server's set-up: commits never checkpoint, a task does.
    let (db, store) = open_with(
        Backend::Sqlite,
        &StoreOptions {
            background_checkpoints: true,
            ..StoreOptions::default()
        },
    );
    store.create_user("alice", "correct horse").unwrap();
    store.create_user("bob", "correct horse").unwrap();
    let wal = std::path::PathBuf::from(format!("{}-wal", db.url.trim_start_matches("sqlite://")));
    // Commits back to back, as under load: a checkpoint beside the writer
    // always has one landing while it runs, so it never copies every frame
    // and, before checkpoints could finish holding the writer, the WAL
    // grew by all that was written (to 164 MB here, for 48 MiB of bodies).
    let written = std::sync::Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, written) = (store.clone(), written.clone());
        std::thread::spawn(move || {
            let body = "x".repeat(2_000);
            let mut n = 0;
            while written.load(Ordering::Relaxed) < WRITTEN {
                store
                    .transaction(|tx| {
                        for _ in 0..20 {
                            n += 1;
                            tx.store_message(&store::messages::NewMessage {
                                sender: "alice",
                                recipient: "bob",
                                client_id: &format!("m-{n}"),
                                body: &body,
                                media: None,
                                sent_at: 1,
                                expires_at: None,
                            })?;
                        }
                        Ok::<_, StoreError>(())
                    })
                    .unwrap();
                written.fetch_add(20 * body.len(), Ordering::Relaxed);
                // The bridge gathers its next batch between commits; a loop
                // with no gap at all would starve anyone else waiting for
                // the writer's (unfair) lock.
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    // Meanwhile a checkpoint every 20 ms, as the server's task does every
    // 250 ms.
    let mut largest = 0;
    while !writer.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        store.checkpoint().unwrap();
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    writer.join().unwrap();
    let written = written.load(Ordering::Relaxed);
    assert!(
        largest < 32 << 20,
        "the WAL grew to {largest} bytes while {written} bytes of messages were committed"
    );
}
