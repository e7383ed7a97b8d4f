//! Storing a batch of messages in one go, on SQLite and on a real
//! PostgreSQL: ids in list order, resends (earlier, or earlier in the same
//! list) answered with the first copy, nothing stored twice.

use store::messages::{NewMessage, Stored};
use store::testing::TestDatabase;
use store::{Backend, Sealer, Store, StoreOptions};

fn open(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend);
    let store = Store::open(&db.url, &StoreOptions::default()).expect("open store");
    store.migrate().expect("migrate");
    let store = store.with_sealer(Sealer::from_hex(&"42".repeat(32)).unwrap());
    (db, store)
}

macro_rules! on_both_backends {
    ($($name:ident($store:ident) $body:block)*) => {
        mod sqlite { use super::*; $(#[test] fn $name() { let (_db, $store) = open(Backend::Sqlite); $body })* }
        mod postgres { use super::*; $(#[test] fn $name() { let (_db, $store) = open(Backend::Postgres); $body })* }
    };
}

fn message<'a>(client_id: &'a str, body: &'a str, sent_at: i64) -> NewMessage<'a> {
    NewMessage {
        sender: "alice",
        recipient: "bob",
        client_id,
        body,
        media: None,
        sent_at,
        expires_at: None,
    }
}

on_both_backends! {
    a_batch_stores_each_client_id_once_and_answers_resends_with_the_first_copy(store) {
        let first = store
            .transaction(|tx| tx.store_messages(&[message("a", "first a", 1)]))
            .unwrap();
        let Stored::New { id: a } = first[0] else { panic!("{first:?}") };
        let batch = [
            message("b", "b", 2),
            message("a", "a again", 2),
            message("c", "c", 2),
            message("b", "b again", 2),
        ];
        let stored = store.transaction(|tx| tx.store_messages(&batch)).unwrap();
        let (b, c) = match (&stored[0], &stored[2]) {
            (Stored::New { id: b }, Stored::New { id: c }) => (*b, *c),
            other => panic!("{other:?}"),
        };
        assert!(a < b && b < c, "ids follow the list: {a} {b} {c}");
        match &stored[1] {
            Stored::Duplicate { id, body, sent_at, .. } => assert_eq!((*id, body.as_str(), *sent_at), (a, "first a", 1)),
            other => panic!("{other:?}"),
        }
        match &stored[3] {
            Stored::Duplicate { id, body, .. } => assert_eq!((*id, body.as_str()), (b, "b")),
            other => panic!("{other:?}"),
        }
    }
}
