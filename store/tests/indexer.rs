//! The search indexer on SQLite and on a real PostgreSQL: a backlog is
//! worked off in short passes, and the cursor covers every message once.

use store::on_both_backends;

use store::messages::NewMessage;

on_both_backends! {
    a_backlog_is_indexed_in_short_passes_until_every_message_is_searchable(store) {
        store.create_user("alice", "correct horse").unwrap();
        store.create_user("bob", "correct horse").unwrap();
        assert_eq!(store.start_search_cursor().unwrap(), 0);
        // 1,000 messages of eight distinct words: 16 index rows each.
        store.transaction(|tx| {
            for n in 0..1_000 {
                tx.store_message(&NewMessage {
                    sender: "alice",
                    recipient: "bob",
                    client_id: &format!("m-{n}"),
                    body: &format!("one two three four five six seven w{n}"),
                    media: None,
                    sent_at: 1,
                    expires_at: None,
                })?;
            }
            Ok::<_, store::StoreError>(())
        }).unwrap();

        let first = store.index_pass(10_000).unwrap();
        assert!(first.indexed >= 1 && first.indexed <= 250, "one pass writes at most 4,000 rows: {first:?}");
        assert!(first.more());
        let mut passes = 1;
        let mut pass = first;
        while pass.more() {
            pass = store.index_pass(10_000).unwrap();
            passes += 1;
            assert!(passes < 100, "the indexer does not converge");
        }
        assert_eq!(pass.through, pass.newest);
        let found = store.search("bob", "w999", store::search::Scope::All, None, 10).unwrap().unwrap();
        assert_eq!(found.items.len(), 1);
        let all = store.search("alice", "seven", store::search::Scope::All, None, 2_000).unwrap().unwrap();
        assert_eq!(all.items.len(), 1_000, "every message once");
        assert_eq!(store.index_pass(10_000).unwrap().indexed, 0, "caught up: nothing more");
    }

    an_index_pass_never_waits_for_the_writer_that_commits_sends(store) {
        store.create_user("alice", "correct horse").unwrap();
        store.create_user("bob", "correct horse").unwrap();
        store.start_search_cursor().unwrap();
        let id = send(&store, 1, "the pangolin manifesto");
        // The pass runs while a send's transaction holds the writer: on
        // SQLite the index is written in a file of its own, by a
        // connection of its own (on the writer it would wait forever here).
        let pass = store.transaction(|_tx| store.index_pass(100)).unwrap();
        assert_eq!((pass.indexed, pass.through), (1, id));
        let found = store.search("bob", "pangolin", store::search::Scope::All, None, 10).unwrap().unwrap();
        assert_eq!(found.items.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
    }

    a_member_of_600_groups_finds_words_in_every_one_of_them(store) {
        store.create_user("alice", "correct horse").unwrap();
        store.create_user("bob", "correct horse").unwrap();
        store.start_search_cursor().unwrap();
        let mut conn = store.conn().unwrap();
        for group in 1..=600 {
            for sql in [
                format!("INSERT INTO chat_groups (name, created_by, client_id, created_at) VALUES ('g', 'alice', 'c{group}', 1)"),
                format!("INSERT INTO group_members (group_id, user_name, joined_at, after_message, delivered_up_to, read_up_to, sender_delivered, sender_read) \
                         SELECT id, 'bob', 1, 0, 0, 0, 0, 0 FROM chat_groups WHERE client_id = 'c{group}'"),
            ] {
                store::on_backend!(&mut *conn, c => diesel::RunQueryDsl::execute(diesel::sql_query(sql), c)).unwrap();
            }
        }
        drop(conn);
        let groups = store.groups_of("bob").unwrap();
        assert_eq!(groups.len(), 600);
        let first = send_to(&store, &format!("#{}", groups[0]), 1, "a quoll in the first group");
        let last = send_to(&store, &format!("#{}", groups[599]), 2, "a quoll in the last group");
        while store.index_pass(100).unwrap().more() {}
        let found = store.search("bob", "quoll", store::search::Scope::All, None, 10).unwrap().unwrap();
        assert_eq!(found.items.iter().map(|m| m.id).collect::<Vec<_>>(), [last, first]);
    }
}

/// Alice's message `n` to Bob, committed alone.
fn send(store: &store::Store, n: usize, body: &str) -> i64 {
    send_to(store, "bob", n, body)
}

/// Stores alice's message `n` to `recipient` (a user, or a group as `#17`).
fn send_to(store: &store::Store, recipient: &str, n: usize, body: &str) -> i64 {
    store
        .transaction(|tx| {
            tx.store_message(&NewMessage {
                sender: "alice",
                recipient,
                client_id: &format!("m-{n}"),
                body,
                media: None,
                sent_at: 1,
                expires_at: None,
            })
        })
        .map(|stored| match stored {
            store::messages::Stored::New { id } | store::messages::Stored::Duplicate { id, .. } => id,
        })
        .unwrap()
}


/// A SQLite store with alice and bob, its indexer's cursor made.
fn alice_and_bob_on_sqlite() -> (store::testing::TestDatabase, store::Store) {
    let (db, store) = store::testing::open(store::Backend::Sqlite);
    store.create_user("alice", "correct horse").unwrap();
    store.create_user("bob", "correct horse").unwrap();
    store.start_search_cursor().unwrap();
    (db, store)
}

/// The store of `db` opened again, as a restarted server opens it.
fn reopen(db: &store::testing::TestDatabase) -> store::Store {
    let store = store::Store::open(&db.url, &Default::default())
        .unwrap()
        .with_sealer(store::Sealer::from_hex(store::testing::TEST_KEY_HEX).unwrap());
    store.migrate().unwrap();
    store
}

#[test]
fn a_lost_search_file_is_written_again_from_every_message() {
    let (db, store) = alice_and_bob_on_sqlite();
    let first = send(&store, 1, "a wombat in the garden");
    while store.index_pass(100).unwrap().more() {}
    let second = send(&store, 2, "the wombat again");
    drop(store);
    let path = db.url.trim_start_matches("sqlite://");
    let search = store::db::search_path(path);
    assert!(std::path::Path::new(&search).exists(), "the index has a file of its own: {search}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{search}{suffix}"));
    }

    let store = reopen(&db);
    assert_eq!(store.start_search_cursor().unwrap(), 0, "a new file starts from the first message");
    while store.index_pass(100).unwrap().more() {}
    let found = store.search("alice", "wombat", store::search::Scope::All, None, 10).unwrap().unwrap();
    assert_eq!(found.items.iter().map(|m| m.id).collect::<Vec<_>>(), [second, first]);
}

#[test]
fn a_search_file_of_the_row_per_term_version_is_written_again_as_documents() {
    let (db, store) = alice_and_bob_on_sqlite();
    let first = send(&store, 1, "a numbat by the river");
    while store.index_pass(100).unwrap().more() {}
    // The file as the previous version left it: a `search_terms` B-tree
    // and a cursor past every message.
    {
        let mut conn = store.conn().unwrap();
        store::on_backend!(&mut *conn, c => diesel::connection::SimpleConnection::batch_execute(c,
            "DROP TABLE search.search_index;
             CREATE TABLE search.search_terms (user_name TEXT NOT NULL, term BLOB NOT NULL, message_id BIGINT NOT NULL, peer TEXT NOT NULL, PRIMARY KEY (user_name, term, message_id)) WITHOUT ROWID;")).unwrap();
    }
    drop(store);

    let store = reopen(&db);
    assert_eq!(store.start_search_cursor().unwrap(), 0, "the index is written again from the first message");
    let second = send(&store, 2, "the numbat again");
    while store.index_pass(100).unwrap().more() {}
    let found = store.search("bob", "numbat", store::search::Scope::All, None, 10).unwrap().unwrap();
    assert_eq!(found.items.iter().map(|m| m.id).collect::<Vec<_>>(), [second, first]);
    let found = store.search("bob", "numbat", store::search::Scope::Peer("alice"), None, 10).unwrap().unwrap();
    assert_eq!(found.items.len(), 2, "scoped to the chat with alice");
    let found = store.search("bob", "numbat", store::search::Scope::Peer("carol"), None, 10).unwrap().unwrap();
    assert!(found.items.is_empty(), "nothing in a chat with carol");
}

