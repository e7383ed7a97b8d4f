//! Shared by the store's integration tests: a fresh, migrated store on
//! either backend, and a macro that runs each test on both.

use store::testing::TestDatabase;
use store::{Backend, Sealer, Store, StoreOptions};

/// A migrated store with a fixed message key, on an empty database that
/// lives as long as the returned [`TestDatabase`].
pub fn open(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend);
    let store = Store::open(&db.url, &StoreOptions::default()).expect("open store");
    store.migrate().expect("migrate");
    let store = store.with_sealer(Sealer::from_hex(&"42".repeat(32)).unwrap());
    (db, store)
}

/// Runs each `name(store) { … }` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident($store:ident) $body:block)*) => {
        mod sqlite { use super::*; $(#[test] fn $name() { let (_db, $store) = common::open(store::Backend::Sqlite); $body })* }
        mod postgres { use super::*; $(#[test] fn $name() { let (_db, $store) = common::open(store::Backend::Postgres); $body })* }
    };
}
