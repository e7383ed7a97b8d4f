//! Group membership windows and receipts in the store, on SQLite and on a
//! real PostgreSQL: aggregate receipts per sender, read privacy, and the
//! per-member detail.

use protocol::messages::ReceiptStatus;
use store::group_receipts::{Aggregate, Position};
use store::groups::{recipient_of, Created};
use store::messages::{NewMessage, Stored};
use store::on_both_backends;

fn position(group: i64, user: &str, up_to: i64) -> Position {
    Position { group, user: user.to_owned(), up_to }
}

on_both_backends! {
    aggregates_wait_for_every_other_member_and_the_detail_says_when_each_got_there(store) {
        for name in ["alice", "bob", "carol"] {
            store.create_user(name, "long enough password").unwrap();
        }
        let (group, id) = store
            .transaction(|tx| {
                let Created::New(group) = tx.create_group("alice", "c1", "Crew", 1)? else { panic!("new") };
                let newest = tx.newest_message_id()?;
                tx.open_windows(group, &[("alice", true), ("bob", false), ("carol", false)], 1, newest)?;
                let recipient = recipient_of(group);
                let stored = tx.store_messages(&[NewMessage {
                    sender: "alice",
                    recipient: &recipient,
                    client_id: "m1",
                    body: "hi",
                    media: None,
                    sent_at: 2,
                    expires_at: None,
                }])?;
                let Stored::New { id } = stored[0] else { panic!("{stored:?}") };
                Ok::<_, store::StoreError>((group, id))
            })
            .unwrap();
        let step = |user: &str, status: ReceiptStatus, at: i64| {
            store
                .transaction(|tx| {
                    let touched = tx.advance_group_members(status, vec![position(group, user, id)], at)?;
                    let newest = tx.newest_message_id()?;
                    tx.aggregate_receipts(&touched, newest, at)
                })
                .unwrap()
        };
        assert_eq!(step("bob", ReceiptStatus::Delivered, 10), vec![], "carol has not got it");
        let delivered = Aggregate { sender: "alice".into(), group, status: ReceiptStatus::Delivered, up_to: id };
        assert_eq!(step("carol", ReceiptStatus::Delivered, 11), vec![delivered]);
        assert_eq!(step("carol", ReceiptStatus::Delivered, 12), vec![], "once only");
        assert_eq!(step("bob", ReceiptStatus::Read, 13), vec![]);
        let read = Aggregate { sender: "alice".into(), group, status: ReceiptStatus::Read, up_to: id };
        assert_eq!(step("carol", ReceiptStatus::Read, 14), vec![read]);

        let detail = store.group_receipt_detail(group, id, "alice").unwrap();
        let times: Vec<(&str, Option<i64>, Option<i64>)> =
            detail.iter().map(|d| (d.user.as_str(), d.delivered_at, d.read_at)).collect();
        assert_eq!(times, [("bob", Some(10), Some(13)), ("carol", Some(11), Some(14))]);
        assert!(detail.iter().all(|d| d.shares_read_receipts));
    }
}
