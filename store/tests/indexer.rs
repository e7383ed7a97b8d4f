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
}
