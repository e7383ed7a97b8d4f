//! Accounts, tokens and sessions, on SQLite and on a real PostgreSQL.

use std::time::Duration;
use store::on_both_backends;
use store::sessions::Session;
use store::testing::TestDatabase;
use store::{Backend, Store, StoreError, StoreOptions};

/// A fresh database gets every migration once; a second run applies none.
fn migrations_apply_once(backend: Backend) {
    let db = TestDatabase::new(backend);
    let store = Store::open(&db.url, &StoreOptions::default()).expect("open store");
    assert!(
        !store.migrate().expect("migrate").is_empty(),
        "a fresh database gets migrations"
    );
    assert!(
        store.migrate().expect("migrate again").is_empty(),
        "migrations apply once"
    );
}

#[test]
fn sqlite_migrations_apply_once() {
    migrations_apply_once(Backend::Sqlite);
}

#[test]
fn postgres_migrations_apply_once() {
    migrations_apply_once(Backend::Postgres);
}

on_both_backends! {
    registered_user_logs_in_with_the_right_password_only(store) {
        let alice = store.create_user("alice", "correct horse").unwrap();
        assert_eq!(store.verify_password("alice", "correct horse").unwrap(), alice);
        assert!(matches!(store.verify_password("alice", "wrong horse"), Err(StoreError::BadCredentials)));
        assert!(matches!(store.verify_password("nobody", "correct horse"), Err(StoreError::BadCredentials)));
    }

    duplicate_and_malformed_registrations_are_refused(store) {
        store.create_user("alice", "correct horse").unwrap();
        assert!(matches!(store.create_user("alice", "another one"), Err(StoreError::NameTaken)));
        assert!(matches!(store.create_user("Alice!", "correct horse"), Err(StoreError::Invalid(_))));
        assert!(matches!(store.create_user("bob", "short"), Err(StoreError::Invalid(_))));
    }

    passwords_are_stored_as_argon2_hashes(store) {
        store.create_user("alice", "correct horse").unwrap();
        let mut conn = store.conn().unwrap();
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Row { #[diesel(sql_type = diesel::sql_types::Text)] password_hash: String }
        let rows: Vec<Row> = store::on_backend!(&mut *conn, c => diesel::sql_query("SELECT password_hash FROM users").load(c)).unwrap();
        assert!(rows[0].password_hash.starts_with("$argon2id$"), "{}", rows[0].password_hash);
        assert!(!rows[0].password_hash.contains("correct horse"));
    }

    tokens_authenticate_until_revoked_or_expired(store) {
        let alice = store.create_user("alice", "correct horse").unwrap();
        let issued = store.issue_token(&alice, Duration::from_secs(60)).unwrap();
        assert!(issued.token.starts_with("bt_") && issued.token.len() == 67);
        assert_eq!(store.authenticate_token(&issued.token).unwrap().user, alice);
        assert!(matches!(store.authenticate_token("bt_nope"), Err(StoreError::BadCredentials)));

        store.revoke_token(&issued.token).unwrap();
        assert!(matches!(store.authenticate_token(&issued.token), Err(StoreError::BadCredentials)));
        assert!(matches!(store.revoke_token(&issued.token), Err(StoreError::BadCredentials)));

        let short = store.issue_token(&alice, Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(store.authenticate_token(&short.token), Err(StoreError::BadCredentials)));
    }

    tokens_are_stored_only_as_hashes(store) {
        let alice = store.create_user("alice", "correct horse").unwrap();
        let issued = store.issue_token(&alice, Duration::from_secs(60)).unwrap();
        let mut conn = store.conn().unwrap();
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Row { #[diesel(sql_type = diesel::sql_types::Text)] token_hash: String }
        let rows: Vec<Row> = store::on_backend!(&mut *conn, c => diesel::sql_query("SELECT token_hash FROM tokens").load(c)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_ne!(rows[0].token_hash, issued.token);
        assert_eq!(rows[0].token_hash, store::tokens::token_hash(&issued.token));
    }

    sessions_follow_connects_and_node_restarts(store) {
        let session = |id: &str, node: &str| Session {
            connection_id: id.into(), user_name: "alice".into(), client_id: "alice.phone".into(),
            node: node.into(), connected_at: 1,
        };
        store.open_session(&session("n1:1", "n1")).unwrap();
        store.open_session(&session("n1:2", "n1")).unwrap();
        store.open_session(&session("n2:1", "n2")).unwrap();
        assert_eq!(store.user_sessions("alice").unwrap().len(), 3);
        store.close_session("n1:1").unwrap();
        assert_eq!(store.user_sessions("alice").unwrap().len(), 2);
        assert_eq!(store.clear_node_sessions("n1").unwrap(), 1);
        assert_eq!(store.user_sessions("alice").unwrap(), vec![session("n2:1", "n2")]);
    }
}
