//! What the store's integration tests share: a fresh, migrated store on
//! either backend, and a macro that runs a test body on both.
#![allow(dead_code)]

use store::testing::TestDatabase;
use store::{Backend, Sealer, Store, StoreOptions};

/// A fresh database on `backend` and a migrated store on it, sealing with
/// a fixed test key.
pub fn open(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend);
    let store = Store::open(&db.url, &StoreOptions::default())
        .expect("open store")
        .with_sealer(Sealer::from_hex(&"ab".repeat(32)).expect("key"));
    store.migrate().expect("migrate");
    (db, store)
}

/// Runs each listed test body once on SQLite and once on PostgreSQL, with
/// `$store` opened by [`open`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident($store:ident) $body:block)*) => {
        mod sqlite { use super::*; $(#[test] fn $name() { let (_db, $store) = common::open(store::Backend::Sqlite); $body })* }
        mod postgres { use super::*; $(#[test] fn $name() { let (_db, $store) = common::open(store::Backend::Postgres); $body })* }
    };
}
