//! SQLite's dedicated writer: transactions run on one connection outside
//! the pool, so readers keep their connections while a write is open, and a
//! transaction that panics does not wedge the writer.

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
