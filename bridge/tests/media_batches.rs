//! Media sends in a committed batch, on SQLite and on a real PostgreSQL:
//! text is applied first, each pair keeps its order, and media that is not
//! the sender's is refused.

use bridge::batch::commit;
use bridge::{Outcome, Request};
use protocol::messages::{MediaRef, SendRequest};
use protocol::{ErrorCode, UserName};
use store::{on_both_backends, Store};

/// Registers the four people the batch is between.
fn register_everyone(store: &Store) {
    for name in ["alice", "bob", "carol", "dave"] {
        store.create_user(name, "correct horse").unwrap();
    }
}

fn uploaded_by(store: &Store, owner: &str) -> String {
    // A fresh hash each time, so no upload is a duplicate of another.
    let sha256 = store::media::new_media_id();
    match store::testing::record_upload(store, owner, &sha256) {
        store::media::Recorded::New(media) => media.id,
        store::media::Recorded::Existing(media) => panic!("a fresh hash was a duplicate: {media:?}"),
    }
}

fn send(from: &str, to: &str, id: &str, media: Option<&str>) -> Request {
    Request::Send {
        sender: UserName::parse(from).unwrap(),
        to: UserName::parse(to).unwrap(),
        send: SendRequest {
            id: id.into(),
            to: Some(to.into()),
            group: None,
            body: if media.is_some() { "" } else { "text" }.into(),
            media: media.map(|m| MediaRef {
                id: m.into(),
                mime: "text/claimed-by-client".into(),
                size: 1,
                caption: "look".into(),
            }),
        },
    }
}

fn stored_id(outcome: &Outcome) -> i64 {
    match outcome {
        Outcome::Stored(ack) => ack.id,
        other => panic!("expected a stored message, got {other:?}"),
    }
}

on_both_backends! {
    text_goes_first_and_foreign_media_is_refused(store) {
        register_everyone(&store);
        let photo = uploaded_by(&store, "alice");
        let batch = [
            send("alice", "bob", "a-photo", Some(&photo)),
            send("carol", "dave", "c-text", None),
            send("alice", "bob", "a-text-after-photo", None),
            send("bob", "alice", "b-steals", Some(&photo)),
        ];
        let committed = commit(&store, &batch).unwrap();
        let ids: Vec<i64> = committed.outcomes[..3].iter().map(stored_id).collect();
        let (a_photo, c_text, a_text) = (ids[0], ids[1], ids[2]);
        assert!(c_text < a_photo, "text is stored before media");
        assert!(a_photo < a_text, "Alice's text to Bob stays after her photo");
        match &committed.outcomes[3] {
            Outcome::Refused(rejection) => assert_eq!(rejection.code, ErrorCode::UnknownMedia),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let first_published = serde_json::to_value(&committed.events[0].1).unwrap();
        assert_eq!(first_published["client_id"], "c-text", "text events go out first");

        // Bob's inbox shows the server's type and size, not the sender's claim.
        let inbox = store.inbox_after("bob", 0, 10).unwrap();
        let message = serde_json::to_value(&inbox[0]).unwrap();
        assert_eq!(message["media"]["id"], photo.as_str());
        assert_eq!(message["media"]["mime"], "image/png");
        assert_eq!(message["media"]["size"], 10);
        assert_eq!(message["media"]["caption"], "look");
    }
}
