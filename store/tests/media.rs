//! Media rows on SQLite and on a real PostgreSQL: deduplication, the access
//! rule, and the orphan query the cleanup job relies on.

use store::on_both_backends;

use protocol::messages::MediaRef;
use store::media::Recorded;
use store::Store;

fn upload(store: &Store, owner: &str, sha256: &str) -> Recorded {
    store::testing::record_upload(store, owner, sha256)
}

fn new_id(recorded: Recorded) -> String {
    match recorded {
        Recorded::New(media) => media.id,
        Recorded::Existing(media) => panic!("expected a new row, got {media:?}"),
    }
}

/// Alice sends `media` to Bob in a message.
fn send(store: &Store, client_id: &str, media: &str) {
    store
        .transaction(|tx| {
            let reference = MediaRef {
                id: media.to_owned(),
                mime: "image/png".into(),
                size: 10,
                caption: "c".into(),
            };
            tx.store_message(&store::messages::NewMessage {
                sender: "alice",
                recipient: "bob",
                client_id,
                body: "",
                media: Some(&reference),
                sent_at: 1,
                expires_at: None,
            })
        })
        .unwrap();
}

on_both_backends! {
    the_same_bytes_from_one_owner_are_one_row(store) {
        let first = new_id(upload(&store, "alice", "aa"));
        match upload(&store, "alice", "aa") {
            Recorded::Existing(media) => assert_eq!(media.id, first),
            other => panic!("expected the existing row, got {other:?}"),
        }
        assert_ne!(new_id(upload(&store, "bob", "aa")), first);
    }

    owners_and_recipients_may_read_strangers_may_not(store) {
        let id = new_id(upload(&store, "alice", "aa"));
        assert!(store.readable_media(&id, "alice").unwrap().is_some());
        assert!(store.readable_media(&id, "bob").unwrap().is_none());
        send(&store, "m1", &id);
        assert!(store.readable_media(&id, "bob").unwrap().is_some());
        assert!(store.readable_media(&id, "carol").unwrap().is_none());
    }

    only_old_unreferenced_media_are_orphans(store) {
        let sent = new_id(upload(&store, "alice", "aa"));
        let unsent = new_id(upload(&store, "alice", "bb"));
        send(&store, "m1", &sent);
        let later = store::clock::now_ms() + 1;
        assert!(store.media_orphans(0, 10).unwrap().is_empty(), "nothing is old enough");
        let orphans: Vec<String> = store.media_orphans(later, 10).unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(orphans, std::slice::from_ref(&unsent));
        assert!(!store.delete_orphan(&sent).unwrap(), "referenced media stays");
        assert!(store.delete_orphan(&unsent).unwrap());
        assert!(store.media_orphans(later, 10).unwrap().is_empty());
        assert!(store.readable_media(&sent, "bob").unwrap().is_some());
    }
}
