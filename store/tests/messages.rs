//! Storing a batch of messages and applying a batch of inbox acks in one
//! go, on SQLite and on a real PostgreSQL: ids in list order, resends
//! answered with the first copy; acks that mark delivered once, emit one
//! receipt per sender and prune only below every device.

use store::on_both_backends;

use store::inbox::{Delivered, InboxAck, NewEvent};
use store::messages::{NewMessage, Stored};

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

    an_ack_batch_delivers_once_and_prunes_only_below_every_device(store) {
        for name in ["alice", "carol", "bob"] {
            store.create_user(name, "password-1").unwrap();
        }
        let mut ids = Vec::new();
        store.transaction(|tx| {
            for (sender, client_id) in [("alice", "a1"), ("carol", "c1"), ("alice", "a2")] {
                let mut m = message(client_id, "hi", 1);
                m.sender = sender;
                let Stored::New { id } = tx.store_message(&m)? else { panic!("new") };
                ids.push(id);
            }
            let events: Vec<NewEvent> = ids.iter().map(|&id| NewEvent::Message { message_id: id }).collect();
            tx.append("bob", &events)
        }).unwrap();
        // Bob's phone and laptop both ack; the laptop only the first event.
        let acks = [
            InboxAck { user: "bob", device: "phone", up_to: 99 },
            InboxAck { user: "bob", device: "laptop", up_to: 1 },
        ];
        let mut receipts = store.transaction(|tx| tx.ack_inboxes(&acks, 5)).unwrap().delivered;
        receipts.sort_by(|a, b| a.sender.cmp(&b.sender));
        assert_eq!(receipts, vec![
            Delivered { sender: "alice".into(), reader: "bob".into(), up_to: ids[2] },
            Delivered { sender: "carol".into(), reader: "bob".into(), up_to: ids[1] },
        ]);
        // Pruned at the laptop's position, not the phone's.
        assert_eq!(store.prune_floor("bob").unwrap(), 1);
        assert_eq!(store.inbox_after("bob", 0, 10).unwrap().len(), 2);
        // The cleanup job's prune finds nothing more: the ack pruned all it
        // could, and what the laptop has not stored stays.
        assert_eq!(store.prune_inbox("bob").unwrap(), 0);
        assert_eq!(store.inbox_after("bob", 0, 10).unwrap().len(), 2);
        // Acking again changes nothing and emits nothing.
        assert!(store.transaction(|tx| tx.ack_inboxes(&acks, 6)).unwrap().delivered.is_empty());
        // The laptop catches up: the rest is pruned, with no new receipts.
        let caught_up = [InboxAck { user: "bob", device: "laptop", up_to: 3 }];
        assert!(store.transaction(|tx| tx.ack_inboxes(&caught_up, 7)).unwrap().delivered.is_empty());
        assert!(store.inbox_after("bob", 0, 10).unwrap().is_empty());
    }
}
